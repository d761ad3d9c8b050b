"""replay.lift_priority: an episode's weight by how high its achieved goal rose, and rows drawn
in proportion to their weights (unit tier), stored beside the top level's rows of a played
episode (component tier, the point mass)."""
import numpy as np
import pytest

from hacray.algo.priority import LiftPriority, lift_weight, weighted_rows
from hacray.algo.replay import RingBuffer
from hacray.types import Transitions

LIFT = LiftPriority(index=2, full=0.05, scale=4.0)


@pytest.mark.parametrize("heights,expected", [
    ([0.42, 0.42, 0.42], 1.0),           # lay still
    ([0.42, 0.445, 0.43], 3.0),          # rose half of `full` at its highest: 1 + 4 * 0.5
    ([0.42, 0.60, 0.42], 5.0),           # more than `full`: the full weight, no more
    ([0.42, 0.30, 0.30], 1.0),           # fell off the table: no rise, no weight
    ([0.50, 0.45, 0.47], 1.0),           # only below where it started
])
def test_an_episode_weighs_by_how_high_its_goal_rose_above_its_start(heights, expected):
    achieved = np.zeros((len(heights), 3), np.float32)
    achieved[:, 2] = heights
    assert lift_weight(achieved, LIFT) == pytest.approx(expected)


def test_rows_are_drawn_in_proportion_to_their_weights_and_only_from_filled_rows():
    weights = np.array([1.0, 3.0, 5.0, 5.0], np.float32)   # the last row is not filled
    rng = np.random.default_rng(0)
    rows = weighted_rows(weights, 3, 40_000, 5.0, rng)
    assert rows.shape == (40_000,) and rows.min() >= 0 and rows.max() <= 2
    share = np.bincount(rows, minlength=3) / len(rows)
    np.testing.assert_allclose(share, [1 / 9, 3 / 9, 5 / 9], atol=0.01)


def test_equal_weights_draw_uniformly():
    rows = weighted_rows(np.full(4, 2.0, np.float32), 4, 40_000, 2.0,
                         np.random.default_rng(1))
    np.testing.assert_allclose(np.bincount(rows) / len(rows), 0.25, atol=0.01)


def _rows(values):
    v = np.asarray(values, np.float32)
    return Transitions(obs=v[:, None], goal=v[:, None], action=v[:, None], reward=v,
                       discount=v, next_obs=v[:, None])


def test_a_weighted_ring_buffer_keeps_each_rows_weight_and_samples_by_it():
    buf = RingBuffer(capacity=4, obs_dim=1, goal_dim=1, act_dim=1, max_weight=5.0)
    buf.add(_rows([0, 1]), weight=1.0)
    buf.add(_rows([2, 3, 4]), weight=5.0)        # overwrites row 0's slot
    assert list(buf.data["weight"]) == [5.0, 1.0, 5.0, 5.0]
    sample = buf.sample(20_000, np.random.default_rng(2)).obs[:, 0]
    assert np.mean(sample == 1) == pytest.approx(1 / 16, abs=0.01)
    assert "weight" not in RingBuffer(4, 1, 1, 1).data   # uniform buffers keep no weights


def _played_replay(*overrides):
    from hacray.algo.rollout import run_episode
    from hacray.blueprint import Blueprint
    from hacray.config import load_config
    from hacray.envs import make_env
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]", "agent.levels=2",
                                "agent.horizons=[5,6]", *overrides))
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    replay = blueprint.replay()
    episodes = [run_episode(env, policy, config.agent, seed, np.random.default_rng(seed), True)
                for seed in range(6)]
    for episode in episodes:
        replay.add_episode(episode)
    return replay, episodes


def test_the_top_levels_rows_carry_their_episodes_rise_and_the_level_below_none():
    """The point mass's goal coordinate 1 (y) stands in for height: each episode's top-level
    rows carry 1 + 3 * min(rise of y / 0.2, 1), its level-0 rows no weights at all."""
    replay, episodes = _played_replay("replay.lift_priority=3", "replay.lift_index=1",
                                      "replay.lift_full=0.2")
    assert "weight" not in replay.buffers[0].data
    top = replay.buffers[1]
    expected = set()
    for episode in episodes:
        achieved = np.vstack([s.achieved for s in episode.segments[1]])
        rise = achieved[:, 1].max() - achieved[0, 1]
        expected.add(round(1 + 3 * min(max(rise / 0.2, 0), 1), 5))
    weights = top.data["weight"][:len(top)]
    assert set(np.round(weights, 5).tolist()) == expected
    assert len(set(np.round(weights, 5))) > 1   # the six episodes did not all rise alike


def test_lift_priority_outside_the_goal_is_one_line_and_off_leaves_sampling_as_it_was():
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match=r"replay.lift_index 2 is not a coordinate of "
                                          r"PointMass-v0's goal \(0-1\)"):
        _played_replay("replay.lift_priority=3")
    plain, _ = _played_replay()
    zero, _ = _played_replay("replay.lift_priority=0", "replay.lift_index=7")
    for a, b in zip(plain.sample(64), zero.sample(64)):
        np.testing.assert_array_equal(a.obs, b.obs)
