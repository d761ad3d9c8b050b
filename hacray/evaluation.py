"""Deterministic evaluation episodes on a run's fixed seeds, and the means that summarise
episodes (evaluation or training) for metrics.jsonl, TensorBoard and ``hacray evaluate``."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from hacray import seeding
from hacray.algo.rollout import Policy, run_episode
from hacray.config import Config
from hacray.envs import GoalEnv
from hacray.types import EpisodeStats


def summarize(stats: Sequence[EpisodeStats], prefix: str) -> dict[str, float]:
    """Means over episodes: success, return, degenerate fraction, per-level subgoal behaviour,
    and success by kind of goal where the env tells kinds apart (PickAndPlace: table, air)."""
    if not stats:
        return {}
    out = {f"{prefix}/success_rate": float(np.mean([s.success for s in stats])),
           f"{prefix}/return": float(np.mean([s.episode_return for s in stats])),
           f"{prefix}/degenerate_fraction": float(np.mean([s.degenerate for s in stats])),
           f"{prefix}/episode_steps": float(np.mean([s.env_steps for s in stats]))}
    levels = len(stats[0].subgoal_reach)
    for i in range(levels - 1):
        out[f"{prefix}/level{i}_subgoal_reach"] = _nanmean([s.subgoal_reach[i] for s in stats])
        out[f"{prefix}/level{i + 1}_subgoal_spread"] = _nanmean(
            [s.subgoal_spread[i + 1] for s in stats])
    if levels > 1:
        out[f"{prefix}/subgoal_tests_failed"] = float(
            np.mean([s.subgoal_tests_failed for s in stats]))
    for kind in sorted({s.goal_kind for s in stats} - {""}):  # e.g. table vs air goals
        of_kind = [s.success for s in stats if s.goal_kind == kind]
        out[f"{prefix}/success_rate_{kind}"] = float(np.mean(of_kind))
        out[f"{prefix}/episodes_{kind}"] = float(len(of_kind))
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate(env: GoalEnv, policy: Policy, config: Config, episodes: int | None = None
             ) -> list[EpisodeStats]:
    """Deterministic episodes on the run's fixed evaluation seeds."""
    seeds = seeding.eval_env_seeds(config.train.seed, episodes or config.train.eval_episodes)
    rng = seeding.rng(config.train.seed, "eval")  # unused without exploration; kept explicit
    return [run_episode(env, policy, config.agent, s, rng, explore=False).stats for s in seeds]
