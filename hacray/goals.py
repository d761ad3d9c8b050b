"""When a goal counts as reached: one rule for the envs (their success) and the algorithm (its
rewards for relabelled goals), so that both sides agree. Imports nothing of hacray's."""
from __future__ import annotations

from typing import Callable

import numpy as np

ReachedFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(achieved (N, d), goal (N, d)) -> (N,) bool: is each goal reached."""


def distance_reached(threshold: float, scale: np.ndarray | None = None) -> ReachedFn:
    """Goal reached when the Euclidean distance is below ``threshold`` (Fetch's rule); with
    ``scale``, each coordinate's difference is multiplied by its entry first."""
    def reached(achieved: np.ndarray, goal: np.ndarray) -> np.ndarray:
        # np.linalg.norm(d, axis=-1)'s own arithmetic, without its checks (runs every step)
        d = achieved - goal
        if scale is not None:
            d = d * scale
        return np.sqrt(np.add.reduce(d * d, axis=-1)) < threshold
    return reached
