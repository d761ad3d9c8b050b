"""Replay shards (``distributed.replay_shards``): pure helpers, no Ray.

With N shards, rollout worker i writes to shard i mod N; the learner samples from every shard,
each reply from one shard. Each shard's rate limiter grants at most its own env steps times the
replay ratio (plus its tolerance), so the run's updates per env step stay at the ratio: the sum
of the shards' grants is the ratio times the sum of their env steps, within N tolerances.
Shard 0 keeps the run's totals on resume and the names and RNG stream of a one-shard run, so
that ``replay_shards: 1`` is exactly the run it was before shards existed.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from hacray.algo import normalizer
from hacray.types import NormalizerStats, ReplayStatus

RECENT = 100  # episodes behind the merged train/* statistics (an equal share from each shard)


def role(shard: int) -> str:
    """The actor role of a shard: ``replay``, ``replay1``, ``replay2``, ..."""
    return "replay" if shard == 0 else f"replay{shard}"


def shard_of(worker_id: int, shards: int) -> int:
    return worker_id % shards


def merge_statuses(statuses: Sequence[ReplayStatus]) -> ReplayStatus:
    """The run's totals over every shard (shard 0's rng state: the run's ``replay`` stream)."""
    first = statuses[0]
    if len(statuses) == 1:
        return first
    from_worker: dict[int, int] = {}
    for status in statuses:
        for worker, episodes in status.episodes_from_worker.items():
            from_worker[worker] = from_worker.get(worker, 0) + episodes
    weights = [max(1, len(s.recent)) for s in statuses]
    return ReplayStatus(
        env_steps=sum(s.env_steps for s in statuses),
        episodes=sum(s.episodes for s in statuses),
        sizes=[sum(level) for level in zip(*(s.sizes for s in statuses))],
        episodes_from_worker=from_worker,
        degenerate_episodes=sum(s.degenerate_episodes for s in statuses),
        rejected_episodes=sum(s.rejected_episodes for s in statuses),
        recent=[e for s in statuses for e in s.recent[-(RECENT // len(statuses)):]],
        mean_policy_version=sum(w * s.mean_policy_version for w, s in zip(weights, statuses))
        / sum(weights),
        rng_state=first.rng_state,
        updates_granted=sum(s.updates_granted for s in statuses))


def shard_metrics(statuses: Sequence[ReplayStatus]) -> dict[str, float]:
    """Each shard's env steps and granted updates (none for a one-shard replay)."""
    if len(statuses) == 1:
        return {}
    return {f"replay/shard{s}_{key}": float(getattr(status, key))
            for s, status in enumerate(statuses) for key in ("env_steps", "updates_granted")}


def merge_stats(per_shard: Sequence[tuple[NormalizerStats, tuple[NormalizerStats, ...]]]
                ) -> tuple[NormalizerStats, tuple[NormalizerStats, ...]]:
    """Observation and per-level goal statistics of all shards' data together."""
    obs, goals = per_shard[0]
    for other_obs, other_goals in per_shard[1:]:
        obs = normalizer.merge(obs, other_obs)
        goals = tuple(normalizer.merge(a, b) for a, b in zip(goals, other_goals))
    return obs, goals


def join_snapshots(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """One checkpoint's replay snapshot: a one-shard replay's as it always was."""
    return snapshots[0] if len(snapshots) == 1 else {"shards": snapshots}


def split_snapshot(snapshot: Optional[dict[str, Any]], shards: int
                   ) -> tuple[list[Optional[dict[str, Any]]], Optional[str]]:
    """Each shard's part of a saved snapshot, and a note when it cannot be used (saved with
    another number of shards: the replay then restarts empty)."""
    if snapshot is None:
        return [None] * shards, None
    saved = snapshot["shards"] if "shards" in snapshot else [snapshot]
    if len(saved) != shards:
        return [None] * shards, (f"the replay snapshot holds {len(saved)} shard(s), this run "
                                 f"has {shards}: the replay restarts empty")
    return list(saved), None
