"""Ring buffer and rate limiter (unit tier)."""
import numpy as np
import pytest

from hacray.algo.replay import RateLimiter, RingBuffer
from hacray.types import Transitions


def batch(values):
    v = np.asarray(values, np.float32)
    col = v[:, None]
    return Transitions(obs=col, goal=col, action=col, reward=v, discount=v, next_obs=col)


def test_ring_buffer_overwrites_oldest_first():
    buf = RingBuffer(capacity=5, obs_dim=1, goal_dim=1, act_dim=1)
    buf.add(batch([0, 1, 2]))
    buf.add(batch([3, 4, 5, 6]))
    assert len(buf) == 5 and buf.cursor == 2
    assert sorted(buf.data["reward"]) == [2, 3, 4, 5, 6]


def test_batch_larger_than_capacity_keeps_its_newest_rows():
    buf = RingBuffer(capacity=3, obs_dim=1, goal_dim=1, act_dim=1)
    buf.add(batch([0, 1, 2, 3, 4, 5, 6]))
    assert sorted(buf.data["reward"]) == [4, 5, 6] and len(buf) == 3


def test_sampling_draws_only_filled_rows_with_the_given_rng():
    buf = RingBuffer(capacity=100, obs_dim=1, goal_dim=1, act_dim=1)
    buf.add(batch([7, 8, 9]))
    a = buf.sample(500, np.random.default_rng(0))
    b = buf.sample(500, np.random.default_rng(0))
    assert set(a.reward) == {7, 8, 9}
    assert np.array_equal(a.reward, b.reward)
    assert np.array_equal(a.obs[:, 0], a.reward)  # rows stay aligned across columns


def test_rate_limiter_holds_the_replay_ratio():
    limiter = RateLimiter(ratio=0.5, tolerance=2)
    assert limiter.can_update() and limiter.can_insert()  # may run 2 updates ahead
    limiter.env_steps = 10  # 5 updates owed: more than 2 behind, so inserts wait
    assert limiter.owed() == 5 and limiter.can_update() and not limiter.can_insert()
    limiter.updates = 3
    assert limiter.can_insert()
    limiter.updates = 6
    assert limiter.can_update()  # the 7th update puts it exactly 2 ahead
    limiter.updates = 7
    assert not limiter.can_update() and limiter.can_insert()


@pytest.mark.parametrize("env_steps, updates, limit, allowed", [
    (0, 0, 4, 2),     # empty: the tolerance alone
    (10, 0, 4, 4),    # 5 owed + 2: the limit
    (10, 0, 9, 7),    # 5 owed + 2 of tolerance
    (10, 6, 4, 1),    # the 7th puts it exactly 2 ahead
    (10, 7, 4, 0),    # already 2 ahead
    (10, 9, 4, 0),    # further ahead than the tolerance (a resumed run): none, not negative
    (11, 0, 9, 7),    # 5.5 owed + 2: whole updates only
])
def test_the_limiter_allows_whole_updates_up_to_a_limit(env_steps, updates, limit, allowed):
    limiter = RateLimiter(ratio=0.5, tolerance=2)
    limiter.env_steps, limiter.updates = env_steps, updates
    assert limiter.updates_allowed(limit) == allowed
    assert limiter.can_update() == (allowed > 0)


def test_a_ring_buffer_restored_at_the_same_capacity_samples_as_the_original():
    buf = RingBuffer(capacity=5, obs_dim=1, goal_dim=1, act_dim=1)
    buf.add(batch([0, 1, 2, 3, 4, 5, 6]))  # wrapped: the cursor is not at 0
    copy = RingBuffer(capacity=5, obs_dim=1, goal_dim=1, act_dim=1)
    copy.load_state_dict(buf.state_dict())
    assert (copy.size, copy.cursor) == (buf.size, buf.cursor) == (5, 2)
    a, b = buf.sample(50, np.random.default_rng(3)), copy.sample(50, np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    buf.add(batch([7])), copy.add(batch([7]))  # the next row overwrites the same oldest one
    assert np.array_equal(buf.data["reward"], copy.data["reward"])


@pytest.mark.parametrize("saved, capacity, expected_oldest_first", [
    ([0, 1, 2], 10, [0, 1, 2]),                   # not wrapped, more room
    ([0, 1, 2, 3, 4, 5, 6], 10, [2, 3, 4, 5, 6]),  # wrapped: oldest is at the cursor
    ([0, 1, 2, 3, 4, 5, 6], 3, [4, 5, 6]),         # less room: the newest rows stay
    ([0, 1, 2], 2, [1, 2]),
])
def test_a_ring_buffer_restored_at_another_capacity_keeps_the_newest_rows_in_order(
        saved, capacity, expected_oldest_first):
    buf = RingBuffer(capacity=5, obs_dim=1, goal_dim=1, act_dim=1)
    buf.add(batch(saved))
    copy = RingBuffer(capacity=capacity, obs_dim=1, goal_dim=1, act_dim=1)
    copy.load_state_dict(buf.state_dict())
    assert len(copy) == len(expected_oldest_first)
    assert list(oldest_first(copy, "reward")) == expected_oldest_first
    assert np.array_equal(oldest_first(copy, "obs")[:, 0], oldest_first(copy, "reward"))
    copy.add(batch([9]))  # and the ring goes on from there
    assert list(oldest_first(copy, "reward"))[-2:] == [expected_oldest_first[-1], 9]


def oldest_first(buf, name):
    rows = buf.data[name][:len(buf)]
    return np.roll(rows, -buf.cursor, axis=0) if len(buf) == buf.capacity else rows


def test_a_snapshot_with_other_row_shapes_is_refused():
    buf = RingBuffer(capacity=5, obs_dim=1, goal_dim=1, act_dim=1)
    buf.add(batch([0, 1]))
    other = RingBuffer(capacity=5, obs_dim=2, goal_dim=1, act_dim=1)
    with pytest.raises(ValueError, match="obs rows have shape"):
        other.load_state_dict(buf.state_dict())


def test_the_top_level_can_be_trained_with_flat_hers_recipe():
    """agent.top_relabel=future with top_terminate_on_goal=false: the top level's transitions
    bootstrap through a reached goal (discount gamma, not 0) and take k future goals instead of
    HAC's final + k-1 future; the level below keeps HAC's transitions, row for row."""
    from hacray.algo.rollout import run_episode
    from hacray.blueprint import Blueprint
    from hacray.config import load_config
    from hacray.envs import make_env
    base = ("env.id=PointMass-v0", "learner.hidden=[16]", "agent.levels=2",
            "agent.horizons=[5,6]", "agent.relabel=hac", "agent.terminate_on_goal=true")
    flat_top = ("agent.top_relabel=future", "agent.top_terminate_on_goal=false")
    replays = {}
    for name, extra in (("hac", ()), ("flat_top", flat_top)):
        config = load_config(None, base + extra)
        env = make_env(config.env)
        blueprint = Blueprint.of(config, env.spec)
        policy = blueprint.policy()
        policy.set_weights(blueprint.learner().weights())
        episode = run_episode(env, policy, config.agent, 3, np.random.default_rng(3), True)
        replay = blueprint.replay()
        specs = [(lv.scheme, lv.terminate_on_goal) for lv in replay.levels]
        replay.add_episode(episode)
        replays[name] = (replay, specs)
    (hac, hac_specs), (flat, flat_specs) = replays["hac"], replays["flat_top"]
    assert hac_specs == [("hac", True), ("hac", True)]
    assert flat_specs == [("hac", True), ("future", False)]
    for column in hac.buffers[0].data:  # level 0: the same rows
        assert np.array_equal(hac.buffers[0].data[column], flat.buffers[0].data[column])
    gamma = 0.98
    for replay, discount_at_goal in ((hac, 0.0), (flat, gamma)):
        top = replay.buffers[1]
        reward, discount = top.data["reward"][:len(top)], top.data["discount"][:len(top)]
        hit = reward == 0.0
        assert hit.any() and np.allclose(discount[hit], discount_at_goal)
    assert len(hac.buffers[1]) == len(flat.buffers[1])  # n originals + n k hindsight goals


def test_a_bad_top_relabel_scheme_is_refused():
    from hacray.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="agent.top_relabel must be one of"):
        load_config(None, ("agent.top_relabel=sometimes",))
