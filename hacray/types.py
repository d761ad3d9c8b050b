"""Named records that cross component boundaries. Arrays are float32 numpy unless noted."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class Segment(NamedTuple):
    """One level's run under one goal: up to H attempts of level ``level``.

    n = number of actions taken (n >= 1).
    obs:          (n+1, obs_dim)  observations; row t is seen before action t, row n after the last.
    achieved:     (n+1, goal_dim) the level's goal space read off each observation.
    goal:         (goal_dim,)     the goal this level was pursuing throughout.
    actions:      (n, act_dim)    actions as proposed (subgoals for level > 0, env actions for 0).
    hindsight_actions: (n, act_dim) for level > 0 the subgoal-space state the level below
                  actually reached; for level 0 equal to ``actions``.
    tested:       (n,) bool       the subgoal (level > 0) was executed as a subgoal test.
    missed:       (n,) bool       the level below failed to reach the proposed subgoal.
    steps:        (n,) int32      env steps each action took (1 on level 0); None: 1 each.
    """

    level: int
    obs: np.ndarray
    achieved: np.ndarray
    goal: np.ndarray
    actions: np.ndarray
    hindsight_actions: np.ndarray
    tested: np.ndarray
    missed: np.ndarray
    steps: np.ndarray | None = None


class Transitions(NamedTuple):
    """A batch of N transitions of one level (the replay's storage and sample format).

    obs, next_obs: (N, obs_dim); goal: (N, goal_dim); action: (N, act_dim);
    reward: (N,) in {-H, -1, 0}; discount: (N,) gamma, or 0 where bootstrapping stops.
    """

    obs: np.ndarray
    goal: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    discount: np.ndarray
    next_obs: np.ndarray

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.reward.shape[0])


class EpisodeStats(NamedTuple):
    """What one episode showed (plain floats, for logging and evaluation).

    subgoal_reach[i] is the fraction of subgoals given to level i that level i reached
    (NaN when none were given); subgoal_spread[i] is the mean per-coordinate std of the
    subgoals level i proposed (levels >= 1; NaN for level 0).
    """

    success: float
    env_steps: int
    episode_return: float
    degenerate: bool
    subgoal_reach: tuple[float, ...]
    subgoal_spread: tuple[float, ...]
    subgoal_tests_failed: float
    goal_kind: str = ""
    """Where the env's goal lay, for tasks that tell (``"air"``/``"table"``), else ``""``."""


class Episode(NamedTuple):
    """One whole hierarchical episode as a rollout worker sends it to replay.

    segments[i] lists level i's segments in the order they ended.
    policy_version: version of the weights that acted (one version per episode).
    """

    segments: tuple[tuple[Segment, ...], ...]
    stats: EpisodeStats
    policy_version: int
    worker_id: int


class NormalizerStats(NamedTuple):
    """Mergeable running statistics (float64 accumulators). count: (), sum/sumsq: (dim,)."""

    count: float
    sum: np.ndarray
    sumsq: np.ndarray


class PolicyWeights(NamedTuple):
    """What the learner publishes: a version, each level's actor, and the normaliser statistics.

    actors[i] maps parameter names to float32 arrays; obs_stats and goal_stats[i] feed the
    normalisers the actors were trained with.
    """

    version: int
    actors: tuple[dict[str, np.ndarray], ...]
    obs_stats: NormalizerStats
    goal_stats: tuple[NormalizerStats, ...]


# -- the distributed runner's messages (its actors pass these; nothing here imports ray) ----

class Turn(enum.Enum):
    """Replay's answer to a rollout worker that wants to insert its next episodes."""

    GO = "go"
    WAIT = "wait"  # the learner lags by more than the limiter's tolerance
    STOP = "stop"  # the run is over


class Sample(NamedTuple):
    """One batch per level, and the normaliser statistics of everything replay has received."""

    batches: tuple[Transitions, ...]
    obs_stats: NormalizerStats
    goal_stats: tuple[NormalizerStats, ...]


class LearnerPace(NamedTuple):
    """A learner actor's ``run``, from the end of its first update to the end of its last:
    updates, seconds, and the seconds of those spent updating (``Learner.update``, with the
    normaliser refresh and the dashboard counter around it)."""

    updates: int
    seconds: float
    updating_s: float


class ReplayStatus(NamedTuple):
    """Replay's run totals (a resumed run's included) and its recent episodes."""

    env_steps: int
    episodes: int
    sizes: list[int]
    episodes_from_worker: dict[int, int]
    degenerate_episodes: int
    rejected_episodes: int  # held a non-finite number: dropped, their env steps still count
    recent: list[EpisodeStats]
    mean_policy_version: float  # of the newest episodes (a window of them)
    rng_state: dict[str, Any]
    updates_granted: int = 0  # updates its limiter let the learner sample (a resumed run's too)


class LearnerSnapshot(NamedTuple):
    """The learner between two updates: counters, newest weights, whole state (on CPU).

    weights: a one-element list holding the object-store reference of the newest
    PolicyWeights (in a list, so that Ray hands over the reference itself).
    """

    updates: int
    version: int
    skipped_updates: int
    metrics: dict[str, float]
    weights: list[Any]
    state: dict[str, Any]


@dataclass
class Counters:
    """Where a run stands: what a resumed run goes on from."""

    env_steps: int = 0
    episodes: int = 0
    best_success: float = -1.0
    wall_time_s: float = 0.0
