"""Hindsight goals drawn at sample time (replay.her_at_sample): the stored rows of hand-written
segments, the draws, the recomputed rewards, ring wrap-around, snapshots, and the same mix of
goals as insert-time relabelling (unit tier)."""
import numpy as np
import pytest

from hacray.algo import her_sample
from hacray.algo.her_sample import KEEP, MAY, MUST
from hacray.algo.replay import HierarchicalReplay, LevelSpec, RingBuffer
from hacray.goals import distance_reached
from hacray.types import Episode, EpisodeStats
from tests.test_relabel import GAMMA, H, REACHED, segment


def rows_of(seg, keep_original=True, terminate=True):
    return her_sample.base_rows(seg, reached=REACHED, gamma=GAMMA, horizon=H,
                                terminate_on_goal=terminate, keep_original=keep_original,
                                rng=np.random.default_rng(0))


def test_each_action_is_stored_once_then_its_penalty_with_hindsight_columns():
    seg = segment([0, 1, 2, 3], goal=9, tested=[False, True, False], missed=[False, True, False])
    rows, hs = rows_of(seg)
    # originals (hindsight actions 20+t, the original goal 9), then the penalty (-H, proposed 11)
    assert rows.action[:, 0].tolist() == [20, 21, 22, 11]
    assert rows.reward.tolist() == [-1, -1, -1, -H]
    assert hs.achieved_next[:, 0].tolist() == [1, 2, 3, 2]
    assert hs.ahead.tolist() == [2, 1, 0, 0]
    assert hs.mode.tolist() == [MAY, MAY, MAY, KEEP]
    _, degenerate = rows_of(seg, keep_original=False)
    assert degenerate.mode.tolist() == [MUST, MUST, MUST, KEEP]


@pytest.mark.parametrize("scheme,k,share", [("future", 4, 0.8), ("hac", 4, 0.8),
                                            ("final", 4, 0.5), ("future", 1, 0.5)])
def test_draws_relabel_the_insert_time_share_within_the_segment(scheme, k, share):
    rng = np.random.default_rng(1)
    ahead = rng.integers(0, 10, 20000).astype(np.float32)
    mode = np.full(20000, MAY, np.float32)
    offsets = her_sample.draw_offsets(ahead, mode, scheme, k, rng)
    chosen = offsets >= 0
    assert chosen.mean() == pytest.approx(share, abs=0.01)
    assert (offsets[chosen] <= ahead[chosen]).all() and (offsets[chosen] >= 0).all()
    final = offsets[chosen] == ahead[chosen]
    if scheme == "final":
        assert final.all()
    if scheme == "hac":  # the last achieved state at least 1/k of the time
        assert final.mean() >= 1 / k - 0.02


def test_keep_rows_are_never_relabelled_and_must_rows_always():
    rng = np.random.default_rng(2)
    ahead = np.full(1000, 3, np.float32)
    assert (her_sample.draw_offsets(ahead, np.full(1000, KEEP, np.float32), "future", 4,
                                    rng) == -1).all()
    assert (her_sample.draw_offsets(ahead, np.full(1000, MUST, np.float32), "future", 4,
                                    rng) >= 0).all()


def test_relabelled_rows_get_rewards_and_discounts_of_their_new_goal():
    seg = segment([0, 1, 2, 3], goal=9)
    rows, hs = rows_of(seg)
    goals = np.array([[3.0], [2.0], [9.0]], np.float32)
    out = her_sample.relabelled(rows, hs.achieved_next, goals, np.array([True, True, False]),
                                reached=REACHED, gamma=GAMMA, terminate_on_goal=True)
    assert out.goal[:, 0].tolist() == [3, 2, 9]
    assert out.reward.tolist() == [-1, 0, -1] and out.discount.tolist() == [GAMMA, 0, GAMMA]
    kept = her_sample.relabelled(rows, hs.achieved_next, goals, np.array([False, True, False]),
                                 reached=REACHED, gamma=GAMMA, terminate_on_goal=False)
    assert kept.reward.tolist() == [-1, 0, -1] and kept.discount.tolist() == [GAMMA] * 3


def test_actual_goals_replace_the_given_share_of_the_hindsight_goals_only():
    rng = np.random.default_rng(4)
    chosen = rng.random(20000) < 0.8
    assert not her_sample.draw_actual(chosen, 0.0, rng).any()
    actual = her_sample.draw_actual(chosen, 0.5, rng)
    assert not actual[~chosen].any()
    assert actual[chosen].mean() == pytest.approx(0.5, abs=0.02)
    assert her_sample.draw_actual(chosen, 1.0, rng).tolist() == chosen.tolist()


def one_level_replay(capacity, her_at_sample, scheme="future", k=4, seed=0, her_actual=0.0):
    spec = LevelSpec(horizon=50, goal_dim=1, act_dim=1, reached=distance_reached(0.5),
                     scheme=scheme, terminate_on_goal=True)
    return HierarchicalReplay([spec], obs_dim=1, capacity=capacity, gamma=GAMMA, k=k,
                              drop_degenerate=True, obs_clip=200.0,
                              rng=np.random.default_rng(seed), her_at_sample=her_at_sample,
                              her_actual=her_actual)


def episode_of(achieved, goal):
    seg = segment(achieved, goal=goal, level=0)
    stats = EpisodeStats(0.0, len(achieved) - 1, -1.0, False, (float("nan"),),
                         (float("nan"),), 0.0)
    return Episode(segments=((seg,),), stats=stats, policy_version=0, worker_id=0)


def test_wrapped_ring_draws_goals_from_the_sampled_rows_own_segment():
    """Segments of values 100s, 200s, ...: every hindsight goal comes from the row's own."""
    replay = one_level_replay(capacity=17, her_at_sample=True)
    for e in range(1, 9):  # 8 segments of 5 actions into 17 rows: the ring wraps
        replay.add_episode(episode_of([100 * e + t for t in range(6)], goal=-1))
    batch, = replay.sample(4000)
    relabelled = batch.goal[:, 0] != -1
    assert 0.7 < relabelled.mean() < 0.9
    own = batch.goal[relabelled, 0] // 100 == batch.obs[relabelled, 0] // 100
    later = batch.goal[relabelled, 0] > batch.obs[relabelled, 0]  # future: after the action
    assert own.all() and later.all()


def test_actual_goals_are_other_rows_original_goals_with_their_own_rewards():
    """Episode e achieves 100e .. 100e+5 and sets the goal 100(e+1)+2.75, which episode e+1
    reaches (0.25 from its 100(e+1)+3): with her_actual 0.5 a sample holds 0.2 own goals, 0.4
    future achieved goals and 0.4 stored original goals (any episode's, so sometimes its own),
    rewarded where reached."""
    replay = one_level_replay(capacity=1000, her_at_sample=True, her_actual=0.5)
    originals = [100.0 * (e + 1) + 2.75 for e in range(1, 5)]
    for e, goal in zip(range(1, 5), originals):
        replay.add_episode(episode_of([100 * e + t for t in range(6)], goal=goal))
    batch, = replay.sample(40_000)
    goal, obs, after = batch.goal[:, 0], batch.obs[:, 0], batch.next_obs[:, 0]
    future = goal == np.round(goal)  # achieved goals are whole numbers, originals not
    assert future.mean() == pytest.approx(0.4, abs=0.02)
    assert np.isin(goal[~future], originals).all()
    own = goal == 100 * (obs // 100 + 1) + 2.75
    assert (~future & ~own).mean() == pytest.approx(0.4 * 3 / 4, abs=0.02)  # another's
    hit = np.abs(goal - after) < 0.5
    assert hit[~future].any()  # episode e+1 rows ending at episode e's goal
    assert (batch.reward == hit.astype(np.float32) - 1).all()


def test_the_same_mix_of_goals_as_insert_time_relabelling():
    """One random walk stored both ways: the share of rewarded samples agrees."""
    walk = np.cumsum(np.random.default_rng(3).choice([-1.0, 1.0], 50))
    shares = []
    for her_at_sample in (False, True):
        replay = one_level_replay(10_000, her_at_sample)
        replay.add_episode(episode_of(np.concatenate([[0.0], walk]), goal=99))
        batch, = replay.sample(40_000)
        shares.append((batch.reward == 0).mean())
    assert replay.sizes() == [50]  # stored once (insert time: 50 x (1 + 4))
    assert shares[1] == pytest.approx(shares[0], abs=0.02), shares


def test_a_hindsight_buffer_snapshot_round_trips_and_refuses_a_plain_one():
    replay = one_level_replay(capacity=17, her_at_sample=True)
    for e in range(1, 5):
        replay.add_episode(episode_of([100 * e + t for t in range(6)], goal=-1))
    copy = one_level_replay(capacity=40, her_at_sample=True)
    copy.load_state_dict(replay.state_dict())  # another capacity: re-added oldest first
    assert copy.sizes() == [17]
    batch, = copy.sample(2000)
    chosen = batch.goal[:, 0] != -1
    assert (batch.goal[chosen, 0] // 100 == batch.obs[chosen, 0] // 100).all()
    plain = one_level_replay(capacity=17, her_at_sample=False)
    with pytest.raises(ValueError, match="her_at_sample"):
        plain.load_state_dict(replay.state_dict())


def test_plain_ring_buffers_sample_as_before():
    """Without hindsight columns the buffer and its draws are what they always were."""
    buf = RingBuffer(capacity=5, obs_dim=1, goal_dim=1, act_dim=1)
    assert set(buf.data) == {"obs", "goal", "action", "reward", "discount", "next_obs"}


def test_the_normaliser_statistics_are_those_of_insert_time_relabelling():
    """What the replay feeds the normaliser does not depend on when goals are drawn."""
    stats = []
    for her_at_sample in (False, True):
        replay = one_level_replay(100, her_at_sample)
        for e in range(1, 4):
            replay.add_episode(episode_of([10.0 * e + t for t in range(6)], goal=-1))
        stats.append(replay.normalizer_stats())
    (obs_a, (goal_a,)), (obs_b, (goal_b,)) = stats
    assert goal_a.count == goal_b.count == 3 * 7 and obs_a.count == obs_b.count == 3 * 6
    assert np.array_equal(goal_a.sum, goal_b.sum) and np.array_equal(obs_a.sum, obs_b.sum)
