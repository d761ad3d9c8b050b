"""HAC and HER transitions as pure functions of one level's segment.

Index convention (pinned by tests): a segment with n actions has n+1 observations; action t
moves obs[t] to obs[t+1], so its outcome is ``achieved[t+1]``. "future" goals for action t are
drawn from ``achieved[t+1 .. n]`` inclusive: the state right after the action counts as future.
"""
from __future__ import annotations

import numpy as np

from hacray.goals import ReachedFn
from hacray.types import Segment, Transitions

def hindsight_goal_indices(n: int, scheme: str, k: int, rng: np.random.Generator
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Which achieved states become goals: returns (t, j) pairs, goal for action t is achieved[j].

    future:  k draws from [t+1, n];  final: j = n once per t;  episode: k draws from [1, n];
    hac:     j = n once plus k-1 draws from [t+1, n];  none: no pairs.
    """
    t = np.arange(n)
    if scheme == "none" or n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if scheme == "final":
        return t, np.full(n, n)
    draws = k - 1 if scheme == "hac" else k
    rows = np.repeat(t, max(draws, 0))
    if scheme == "episode":
        cols = rng.integers(1, n + 1, size=rows.shape)
    elif scheme in ("future", "hac"):
        # uniform over t+1 .. n inclusive
        cols = rows + 1 + np.floor(rng.random(rows.shape) * (n - rows)).astype(np.int64)
    else:
        raise ValueError(f"unknown relabel scheme {scheme!r}")
    if scheme == "hac":
        rows, cols = np.concatenate([t, rows]), np.concatenate([np.full(n, n), cols])
    return rows, cols


def segment_transitions(segment: Segment, *, reached: ReachedFn, gamma: float, horizon: int,
                        scheme: str, k: int, terminate_on_goal: bool,
                        rng: np.random.Generator, keep_original: bool = True,
                        time_aware: bool = False,
                        test_penalty: float | None = None) -> Transitions:
    """All transitions HAC stores for one segment, in a fixed order.

    1. hindsight action transitions under the original goal (skipped when not keep_original);
    2. subgoal-test penalties: tested and missed actions, reward ``test_penalty`` (None:
       HAC's -horizon), discount 0, with the action as proposed;
    3. hindsight goal transitions from :func:`hindsight_goal_indices`, rewards recomputed.
    Transitions 1 and 3 store the hindsight action (what the level below actually achieved).

    ``time_aware`` (agent.top_time_aware): an action that took k env steps (segment.steps) is
    paid as those k steps would be, :func:`attempt_reward` and discount gamma^k.
    """
    n = len(segment.actions)
    rows_t, rows_j = hindsight_goal_indices(n, scheme, k, rng)
    steps = segment.steps if time_aware else None  # None: one step each (HAC)
    parts = []
    if keep_original:
        goals = np.broadcast_to(segment.goal, (n, segment.goal.shape[-1]))
        parts.append(_transitions(segment, np.arange(n), goals, reached, gamma,
                                  terminate_on_goal, steps))
    penalised = np.flatnonzero(segment.tested & segment.missed)
    if len(penalised):
        penalty = -float(horizon) if test_penalty is None else test_penalty
        parts.append(Transitions(
            obs=segment.obs[penalised],
            goal=np.broadcast_to(segment.goal, (len(penalised), segment.goal.shape[-1])),
            action=segment.actions[penalised],
            reward=np.full(len(penalised), penalty, np.float32),
            discount=np.zeros(len(penalised), np.float32),
            next_obs=segment.obs[penalised + 1]))
    if len(rows_t):
        parts.append(_transitions(segment, rows_t, segment.achieved[rows_j], reached, gamma,
                                  terminate_on_goal, steps))
    return concat(parts, segment)


def attempt_reward(hit: np.ndarray, steps: np.ndarray, gamma: float) -> np.ndarray:
    """The discounted reward of an attempt of ``steps`` env steps: -1 for each step but the
    last, whose reward is 0 if the attempt ended at its goal (``hit``) and else -1. One step:
    HAC's hit - 1."""
    before_last = gamma ** (steps - 1.0)
    return -(1.0 - before_last) / (1.0 - gamma) + before_last * (hit - 1.0)


def _transitions(segment: Segment, t: np.ndarray, goals: np.ndarray, reached: ReachedFn,
                 gamma: float, terminate_on_goal: bool,
                 steps: np.ndarray | None) -> Transitions:
    hit = reached(segment.achieved[t + 1], goals)
    if steps is None:  # every action one step: attempt_reward's hit - 1, without its powers
        reward, discount = hit.astype(np.float32) - 1.0, gamma
    else:
        k = steps[t].astype(np.float64)
        reward, discount = attempt_reward(hit.astype(np.float64), k, gamma), gamma ** k
    return Transitions(obs=segment.obs[t], goal=goals, action=segment.hindsight_actions[t],
                       reward=reward, discount=np.where(hit & terminate_on_goal, 0.0, discount),
                       next_obs=segment.obs[t + 1])


def concat(parts: list[Transitions], like: Segment | None = None) -> Transitions:
    """Concatenate transition batches into one float32 batch (empty if no parts)."""
    if not parts:
        assert like is not None, "concat of nothing needs a segment to take shapes from"
        return Transitions(
            obs=np.zeros((0, like.obs.shape[-1]), np.float32),
            goal=np.zeros((0, like.goal.shape[-1]), np.float32),
            action=np.zeros((0, like.actions.shape[-1]), np.float32),
            reward=np.zeros(0, np.float32), discount=np.zeros(0, np.float32),
            next_obs=np.zeros((0, like.obs.shape[-1]), np.float32))
    return Transitions(*(np.concatenate(f).astype(np.float32, copy=False)
                         for f in zip(*parts)))
