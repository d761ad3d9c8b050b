"""Replay: per-level numpy ring buffers of transitions, fed whole episodes.

Episodes are relabelled at insert time by the pure functions in :mod:`hacray.algo.relabel`;
sampling needs only an ``rng`` (no live env). The same object backs the local runner and the
replay actor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hacray.algo import her_sample, normalizer
from hacray.algo.her_sample import Hindsight
from hacray.algo.priority import LiftPriority, lift_weight, weighted_rows
from hacray.algo.relabel import segment_transitions
from hacray.goals import ReachedFn
from hacray.types import Episode, NormalizerStats, Transitions


class RingBuffer:
    """Fixed-capacity FIFO of transitions; the oldest rows are overwritten first. With
    ``hindsight`` each row also keeps its her_sample.Hindsight columns; with ``max_weight``
    each row keeps a sampling weight in (0, max_weight] (replay.lift_priority)."""

    def __init__(self, capacity: int, obs_dim: int, goal_dim: int, act_dim: int,
                 hindsight: bool = False, max_weight: Optional[float] = None):
        self.capacity, self.size, self.cursor = capacity, 0, 0
        self.max_weight = max_weight
        shapes = dict(obs=obs_dim, goal=goal_dim, action=act_dim, reward=None, discount=None,
                      next_obs=obs_dim)
        if hindsight:
            shapes.update(achieved_next=goal_dim, ahead=None, mode=None)
        if max_weight is not None:
            shapes.update(weight=None)
        self.data = {k: np.zeros((capacity,) if d is None else (capacity, d), np.float32)
                     for k, d in shapes.items()}

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Transitions, hindsight: Optional[Hindsight] = None,
            weight: float = 1.0) -> None:
        """Append rows (and their hindsight columns, in a hindsight buffer; their sampling
        weight, in a weighted one); a batch larger than the capacity keeps only its newest
        rows."""
        n = len(batch)
        if n == 0:
            return
        rows = np.arange(self.cursor, self.cursor + n) % self.capacity
        keep = slice(max(0, n - self.capacity), n)
        columns = list(zip(Transitions._fields, batch))
        if hindsight is not None:
            columns += list(zip(Hindsight._fields, hindsight))
        for name, column in columns:
            self.data[name][rows[keep]] = column[keep]
        if self.max_weight is not None:
            self.data["weight"][rows[keep]] = weight
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """Sample with replacement: uniform, or in proportion to the rows' weights."""
        return self.rows(self.draw(batch_size, rng))

    def draw(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Row indices of a sample with replacement (uniform, or by weight)."""
        if self.max_weight is None:
            return rng.integers(0, self.size, size=batch_size)
        return weighted_rows(self.data["weight"], self.size, batch_size, self.max_weight, rng)

    def rows(self, idx: np.ndarray) -> Transitions:
        return Transitions(*(self.data[name][idx] for name in Transitions._fields))

    def hindsight(self, idx: np.ndarray) -> Hindsight:
        return Hindsight(*(self.data[name][idx] for name in Hindsight._fields))

    def state_dict(self) -> dict[str, Any]:
        """The stored rows (copies) and where the next ones go."""
        return {"capacity": self.capacity, "size": self.size, "cursor": self.cursor,
                "data": {name: column[:self.size].copy() for name, column in self.data.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore rows saved by ``state_dict``: as they were with the same capacity (so that
        sampling continues exactly), else oldest first, keeping the newest that fit."""
        data, size = state["data"], int(state["size"])
        if set(data) != set(self.data):
            raise ValueError(f"replay snapshot has columns {sorted(data)}, this buffer "
                             f"{sorted(self.data)} (was replay.her_at_sample changed?)")
        for name, column in data.items():
            if column.shape[1:] != self.data[name].shape[1:]:
                raise ValueError(f"replay snapshot's {name} rows have shape {column.shape[1:]}, "
                                 f"this buffer's {self.data[name].shape[1:]}")
        if state["capacity"] == self.capacity:
            for name, column in data.items():
                self.data[name][:size] = column
            self.size, self.cursor = size, int(state["cursor"])
            return
        order = np.arange(size)
        if size == state["capacity"]:  # it had wrapped: the oldest row is at the cursor
            order = np.roll(order, -int(state["cursor"]))
        self.size = self.cursor = 0
        self.add(Transitions(*(data[name][order] for name in Transitions._fields)),
                 Hindsight(*(data[name][order] for name in Hindsight._fields))
                 if "mode" in data else None)


@dataclass(frozen=True)
class LevelSpec:
    """What the replay needs to know about one level."""

    horizon: int
    goal_dim: int
    act_dim: int
    reached: ReachedFn
    scheme: str
    """Hindsight goal scheme of this level's transitions (see relabel.hindsight_goal_indices)."""
    terminate_on_goal: bool
    """Reaching the goal ends bootstrapping in this level's transitions."""
    time_aware: bool = False
    """Actions are paid by the env steps they took (agent.top_time_aware; relabel.py)."""
    test_penalty: float | None = None
    """Reward of a missed subgoal test; None: HAC's -horizon."""
    lift: LiftPriority | None = None
    """Rows of episodes whose achieved goal rose are sampled more often (priority.py); this
    level's goals must be the env's. None: uniform."""


class HierarchicalReplay:
    """Relabels incoming episodes level by level and keeps one ring buffer per level.

    It also owns the normaliser statistics of everything it has received (observations and
    every level's goals), so that all workers' data merges into one global normaliser.
    """

    def __init__(self, levels: list[LevelSpec], obs_dim: int, capacity: int, gamma: float,
                 k: int, drop_degenerate: bool, obs_clip: float, rng: np.random.Generator,
                 her_at_sample: bool = False, her_actual: float = 0.0):
        self.levels, self.gamma, self.k = levels, gamma, k
        self.drop_degenerate, self.her_at_sample = drop_degenerate, her_at_sample
        self.her_actual = her_actual
        self.obs_clip, self.rng = obs_clip, rng
        self.buffers = [RingBuffer(capacity, obs_dim, lv.goal_dim, lv.act_dim, her_at_sample,
                                   lv.lift.max_weight if lv.lift else None) for lv in levels]
        self.obs_stats = normalizer.empty_stats(obs_dim)
        self.goal_stats = [normalizer.empty_stats(lv.goal_dim) for lv in levels]
        self.episodes = 0
        self.env_steps = 0
        self.degenerate_episodes = 0
        self.rejected_episodes = 0

    def add_episode(self, episode: Episode) -> bool:
        """Relabel every segment of every level, store the transitions, fold in statistics.

        An episode holding a non-finite observation, goal or action is counted and dropped
        (returns False) so that it can poison neither the buffers nor the normaliser.
        """
        if not _finite(episode):
            self.rejected_episodes += 1
            return False
        top = len(self.levels) - 1
        for level, segments in enumerate(episode.segments):
            spec = self.levels[level]
            weight = 1.0 if spec.lift is None else lift_weight(
                np.vstack([s.achieved for s in segments]), spec.lift)
            for segment in segments:
                keep_original = not (level == top and episode.stats.degenerate
                                     and self.drop_degenerate)
                if self.her_at_sample:  # each action once, its hindsight goals drawn later
                    self.buffers[level].add(*her_sample.base_rows(
                        segment, reached=spec.reached, gamma=self.gamma, horizon=spec.horizon,
                        terminate_on_goal=spec.terminate_on_goal, keep_original=keep_original,
                        rng=self.rng), weight=weight)
                else:
                    self.buffers[level].add(segment_transitions(
                        segment, reached=spec.reached, gamma=self.gamma, horizon=spec.horizon,
                        scheme=spec.scheme, k=self.k, terminate_on_goal=spec.terminate_on_goal,
                        rng=self.rng, keep_original=keep_original, time_aware=spec.time_aware,
                        test_penalty=spec.test_penalty), weight=weight)
                self.goal_stats[level] = normalizer.merge(
                    self.goal_stats[level],
                    normalizer.stats_of(np.vstack([segment.achieved, segment.goal[None]]),
                                        self.obs_clip))
        # every observation of the episode passes through level 0's segments exactly once
        obs = [s.obs[:-1] for s in episode.segments[0]] + [episode.segments[0][-1].obs[-1:]]
        self.obs_stats = normalizer.merge(self.obs_stats,
                                          normalizer.stats_of(np.vstack(obs), self.obs_clip))
        self.episodes += 1
        self.env_steps += episode.stats.env_steps
        self.degenerate_episodes += int(episode.stats.degenerate)
        return True

    def sizes(self) -> list[int]:
        return [len(b) for b in self.buffers]

    def ready(self, min_size: int) -> bool:
        """Every level holds enough transitions to fill a batch, the bottom one min_size."""
        return len(self.buffers[0]) >= min_size and all(len(b) > 0 for b in self.buffers)

    def sample(self, batch_size: int) -> tuple[Transitions, ...]:
        """One batch per level (with replay.her_at_sample, hindsight goals drawn now)."""
        if not self.her_at_sample:
            return tuple(b.sample(batch_size, self.rng) for b in self.buffers)
        return tuple(self._sample_relabelled(b, spec, batch_size)
                     for b, spec in zip(self.buffers, self.levels))

    def _sample_relabelled(self, buffer: RingBuffer, spec: LevelSpec, batch_size: int
                           ) -> Transitions:
        idx = buffer.draw(batch_size, self.rng)
        hindsight = buffer.hindsight(idx)
        offsets = her_sample.draw_offsets(hindsight.ahead, hindsight.mode, spec.scheme, self.k,
                                          self.rng)
        # a segment's rows lie in order (mod capacity) and are newer than the sampled one
        goals = buffer.data["achieved_next"][(idx + np.maximum(offsets, 0)) % buffer.capacity]
        chosen = offsets >= 0
        actual = her_sample.draw_actual(chosen, self.her_actual, self.rng)
        if actual.any():  # another stored row's original goal, drawn uniformly
            goals[actual] = buffer.data["goal"][self.rng.integers(0, len(buffer), actual.sum())]
        return her_sample.relabelled(buffer.rows(idx), hindsight.achieved_next, goals,
                                     chosen, reached=spec.reached, gamma=self.gamma,
                                     terminate_on_goal=spec.terminate_on_goal)

    def normalizer_stats(self) -> tuple[NormalizerStats, tuple[NormalizerStats, ...]]:
        return self.obs_stats, tuple(self.goal_stats)

    def restore_normalizer_stats(self, obs_stats: NormalizerStats,
                                 goal_stats: tuple[NormalizerStats, ...]) -> None:
        """Go on from statistics saved elsewhere (a resumed run's learner, when its replay
        snapshot is missing): new episodes merge into them instead of starting afresh."""
        if len(goal_stats) != len(self.goal_stats):
            raise ValueError(f"{len(goal_stats)} levels' goal statistics for a replay of "
                             f"{len(self.goal_stats)} levels")
        self.obs_stats, self.goal_stats = obs_stats, list(goal_stats)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on exactly: every level's rows, the
        statistics, the counters and the sampling rng's state (numpy arrays and plain values)."""
        return {"buffers": [b.state_dict() for b in self.buffers],
                "obs_stats": normalizer.stats_dict(self.obs_stats),
                "goal_stats": [normalizer.stats_dict(s) for s in self.goal_stats],
                "counters": {"episodes": self.episodes, "env_steps": self.env_steps,
                             "degenerate_episodes": self.degenerate_episodes,
                             "rejected_episodes": self.rejected_episodes},
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["buffers"]) != len(self.buffers):
            raise ValueError(f"replay snapshot has {len(state['buffers'])} levels, "
                             f"this replay {len(self.buffers)}")
        for buffer, saved in zip(self.buffers, state["buffers"]):
            buffer.load_state_dict(saved)
        self.obs_stats = normalizer.stats_from_dict(state["obs_stats"])
        self.goal_stats = [normalizer.stats_from_dict(d) for d in state["goal_stats"]]
        counters = state["counters"]
        self.episodes, self.env_steps = int(counters["episodes"]), int(counters["env_steps"])
        self.degenerate_episodes = int(counters["degenerate_episodes"])
        self.rejected_episodes = int(counters["rejected_episodes"])
        self.rng.bit_generator.state = state["rng"]


def _finite(episode: Episode) -> bool:
    return all(np.isfinite(array).all() for segments in episode.segments for s in segments
               for array in (s.obs, s.achieved, s.goal, s.actions, s.hindsight_actions))


def updates_owed(ratio: float, env_steps: int, updates: int) -> int:
    """Updates a learner owes at the fixed replay ratio ``ratio`` (updates per env step) after
    ``env_steps`` env steps and ``updates`` updates (negative: it is ahead). Every runner, the
    limiter and the learner actor's lockstep count by this one rule."""
    return math.floor(ratio * env_steps) - updates


class RateLimiter:
    """Keeps updates per env step near a fixed ratio (Reverb's SampleToInsertRatio, in updates).

    Sampling waits until ``min_size`` is reached and while updates run more than ``tolerance``
    ahead of ``ratio * env_steps``; inserting waits while they lag more than ``tolerance`` behind.
    """

    def __init__(self, ratio: float, tolerance: float):
        self.ratio, self.tolerance = ratio, tolerance
        self.env_steps, self.updates = 0, 0

    def owed(self) -> int:
        """Updates the learner may do now (negative: it is ahead)."""
        return updates_owed(self.ratio, self.env_steps, self.updates)

    def can_update(self) -> bool:
        """One more update keeps the learner at most ``tolerance`` updates ahead."""
        return self.updates_allowed(1) == 1

    def updates_allowed(self, limit: int) -> int:
        """How many more updates, up to ``limit``, keep the learner at most ``tolerance`` ahead."""
        return max(0, min(limit, math.floor(self.owed() + self.tolerance)))

    def can_insert(self) -> bool:
        """The learner is at most ``tolerance`` updates behind."""
        return self.owed() <= self.tolerance
