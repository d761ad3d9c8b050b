"""Episodes that lifted the object, replayed more often (replay.lift_priority).

After energy-based hindsight experience prioritisation (Zhao and Tresp, CoRL 2018), which
replays the trajectories in which the object gained energy more often than those in which it
lay still, here with the potential energy alone: an episode's weight grows with how high its
achieved goal rose above where it started. A level whose goals are the env's (the top level)
stores that weight beside each of the episode's rows and samples rows in proportion to it.
Pure functions: the weight of one episode, and a weighted draw of row indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LiftPriority:
    """How an episode's rise weighs: ``1 + scale * min(rise / full, 1)``, rise >= 0."""

    index: int
    """The goal coordinate that is height (Fetch: 2, the object's z)."""
    full: float
    """The rise, in goal units, that earns the full weight."""
    scale: float
    """The extra weight of a full rise: weights lie in [1, 1 + scale]."""

    @property
    def max_weight(self) -> float:
        return 1.0 + self.scale


def lift_weight(achieved: np.ndarray, lift: LiftPriority) -> float:
    """The weight of an episode whose achieved goals, in order, are ``achieved`` (n, goal_dim):
    by the highest the height coordinate got above its first value."""
    height = achieved[:, lift.index]
    rise = float(height.max() - height[0])
    return 1.0 + lift.scale * min(max(rise / lift.full, 0.0), 1.0)


def weighted_rows(weights: np.ndarray, size: int, batch: int, max_weight: float,
                  rng: np.random.Generator) -> np.ndarray:
    """``batch`` row indices in [0, size), each row drawn with probability proportional to
    ``weights[row]`` (all in (0, max_weight]), with replacement: uniform candidates, each kept
    with probability weight / max_weight, until there are enough."""
    out = np.empty(batch, np.int64)
    filled, per = 0, max(1, int(np.ceil(max_weight)))
    while filled < batch:
        need = batch - filled
        candidates = rng.integers(0, size, size=need * per)
        kept = candidates[rng.random(candidates.size) * max_weight < weights[candidates]]
        take = min(need, kept.size)
        out[filled:filled + take] = kept[:take]
        filled += take
    return out
