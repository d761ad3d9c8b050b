"""Replay shards' pure helpers: which worker writes where, the run's totals over shards, the
merged normaliser statistics, and the checkpoint's snapshot of N shards (unit tier)."""
import numpy as np
import pytest

from hacray.algo import normalizer
from hacray.runners import shards
from hacray.types import EpisodeStats, ReplayStatus


def stats(success: float) -> EpisodeStats:
    return EpisodeStats(success, 50, -10.0, False, (1.0,), (float("nan"),), 0.0)


def status(env_steps, episodes, sizes, from_worker, recent, version, granted, rng="r0"):
    return ReplayStatus(env_steps=env_steps, episodes=episodes, sizes=sizes,
                        episodes_from_worker=from_worker, degenerate_episodes=1,
                        rejected_episodes=0, recent=recent, mean_policy_version=version,
                        rng_state={"name": rng}, updates_granted=granted)


def test_workers_spread_over_shards_and_shard_0_keeps_the_one_replay_name():
    assert [shards.shard_of(w, 3) for w in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [shards.role(s) for s in range(3)] == ["replay", "replay1", "replay2"]


def test_one_shards_status_is_the_runs_status():
    one = status(100, 2, [90, 10], {0: 2}, [stats(1.0)], 3.0, 40)
    assert shards.merge_statuses([one]) is one
    assert shards.shard_metrics([one]) == {}


def test_shards_statuses_add_up_to_the_runs():
    a = status(100, 2, [90, 10], {0: 2}, [stats(1.0)] * 2, 3.0, 40, rng="r0")
    b = status(300, 6, [270, 30], {1: 6}, [stats(0.0)] * 6, 5.0, 120, rng="r1")
    merged = shards.merge_statuses([a, b])
    assert (merged.env_steps, merged.episodes, merged.sizes) == (400, 8, [360, 40])
    assert merged.episodes_from_worker == {0: 2, 1: 6}
    assert merged.degenerate_episodes == 2 and merged.updates_granted == 160
    assert len(merged.recent) == 8
    assert merged.mean_policy_version == pytest.approx((2 * 3.0 + 6 * 5.0) / 8)
    assert merged.rng_state == {"name": "r0"}  # the run's "replay" stream is shard 0's
    assert shards.shard_metrics([a, b]) == {
        "replay/shard0_env_steps": 100.0, "replay/shard0_updates_granted": 40.0,
        "replay/shard1_env_steps": 300.0, "replay/shard1_updates_granted": 120.0}


def test_merged_statistics_are_those_of_all_the_data_together():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((30, 3)) + 2
    g, h = rng.standard_normal((20, 2)), rng.standard_normal((30, 2))
    per_shard = [(normalizer.stats_of(x, 200.0), (normalizer.stats_of(g, 200.0),)),
                 (normalizer.stats_of(y, 200.0), (normalizer.stats_of(h, 200.0),))]
    obs, (goal,) = shards.merge_stats(per_shard)
    both = normalizer.stats_of(np.vstack([x, y]), 200.0)
    assert obs.count == 50 and np.allclose(obs.sum, both.sum) and np.allclose(obs.sumsq, both.sumsq)
    assert goal.count == 50


@pytest.mark.parametrize("count", [1, 3])
def test_snapshots_of_n_shards_round_trip(count):
    parts = [{"buffers": [s]} for s in range(count)]
    joined = shards.join_snapshots(parts)
    assert ("shards" in joined) == (count > 1)  # one shard: the format it always had
    assert shards.split_snapshot(joined, count) == (parts, None)


def test_a_snapshot_of_another_shard_count_restarts_the_replay_empty_and_says_so():
    parts, note = shards.split_snapshot(shards.join_snapshots([{"a": 1}, {"b": 2}]), 3)
    assert parts == [None, None, None]
    assert note == "the replay snapshot holds 2 shard(s), this run has 3: the replay restarts empty"
    assert shards.split_snapshot(None, 2) == ([None, None], None)
