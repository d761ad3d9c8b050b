"""Running mean/std normaliser built on mergeable (count, sum, sum of squares) statistics.

Accumulators are float64 so that merging many workers' shards is exact up to rounding;
everything handed to networks is float32.
"""
from __future__ import annotations

import numpy as np

from hacray.types import NormalizerStats


def empty_stats(dim: int) -> NormalizerStats:
    """Statistics of no data."""
    return NormalizerStats(0.0, np.zeros(dim, np.float64), np.zeros(dim, np.float64))


def stats_of(data: np.ndarray, clip: float = np.inf) -> NormalizerStats:
    """Statistics of the rows of ``data`` (shape (N, dim)), clipped to +-clip first."""
    rows = np.clip(np.asarray(data, np.float64).reshape(len(data), -1), -clip, clip)
    return NormalizerStats(float(len(rows)), rows.sum(axis=0), np.square(rows).sum(axis=0))


def merge(*shards: NormalizerStats) -> NormalizerStats:
    """Exact combination of shards: the statistics of the union of their data."""
    count = sum(s.count for s in shards)
    total = np.sum([s.sum for s in shards], axis=0)
    total_sq = np.sum([s.sumsq for s in shards], axis=0)
    return NormalizerStats(float(count), total, total_sq)


def stats_dict(stats: NormalizerStats) -> dict:
    """Statistics as a plain dict, the form saved in checkpoints and replay snapshots."""
    return {"count": stats.count, "sum": stats.sum, "sumsq": stats.sumsq}


def stats_from_dict(saved: dict) -> NormalizerStats:
    """The inverse of ``stats_dict``; the sums may come back as numpy arrays or CPU tensors."""
    return NormalizerStats(float(saved["count"]), np.asarray(saved["sum"], np.float64),
                           np.asarray(saved["sumsq"], np.float64))


def mean_std(stats: NormalizerStats, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (floored at ``eps``) of non-empty statistics, in float64."""
    mean = stats.sum / stats.count
    var = np.maximum(stats.sumsq / stats.count - np.square(mean), 0.0)
    return mean, np.maximum(np.sqrt(var), eps)


def drift(old: NormalizerStats, new: NormalizerStats, eps: float) -> tuple[float, float]:
    """How far the normalisation moved from ``old`` to ``new``, in units of the old std.

    Returns (mean over dims of |new_mean - old_mean| / old_std,
    mean over dims of |new_std / old_std - 1|); (0, 0) when either side is empty, because
    the first real statistics replacing the identity map are not drift.
    """
    if old.count <= 0 or new.count <= 0:
        return 0.0, 0.0
    old_mean, old_std = mean_std(old, eps)
    new_mean, new_std = mean_std(new, eps)
    return (float(np.mean(np.abs(new_mean - old_mean) / old_std)),
            float(np.mean(np.abs(new_std / old_std - 1.0))))


class Normalizer:
    """Maps raw inputs to ``clip((clip(x, +-obs_clip) - mean) / std, +-norm_clip)`` in float32."""

    def __init__(self, dim: int, eps: float = 0.01, norm_clip: float = 5.0,
                 obs_clip: float = 200.0):
        self.dim, self.eps, self.norm_clip, self.obs_clip = dim, eps, norm_clip, obs_clip
        self.stats = empty_stats(dim)
        self.mean = np.zeros(dim, np.float32)
        self.std = np.ones(dim, np.float32)

    def update(self, data: np.ndarray) -> None:
        """Fold a batch of raw rows into the statistics."""
        self.set_stats(merge(self.stats, stats_of(data, self.obs_clip)))

    def set_stats(self, stats: NormalizerStats) -> None:
        """Replace the statistics (e.g. with the merged ones a learner published).

        Empty statistics keep the current mean and std (the identity map at first).
        """
        self.stats = stats
        if stats.count > 0:
            mean, std = mean_std(stats, self.eps)
            self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)

    @classmethod
    def joined(cls, *norms: Normalizer) -> Normalizer:
        """A normaliser of the concatenated inputs of ``norms`` (their means and stds side by
        side; all share one set of clips): the concatenation of their outputs, in one pass.
        For applying only: its own statistics stay empty."""
        first = norms[0]
        joined = cls(sum(n.dim for n in norms), first.eps, first.norm_clip, first.obs_clip)
        joined.mean = np.concatenate([n.mean for n in norms])
        joined.std = np.concatenate([n.std for n in norms])
        return joined

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # np.clip's arithmetic as two ufuncs: its Python wrapper costs more than the maths on
        # a rollout's single rows
        clipped = np.minimum(np.maximum(np.asarray(x, np.float32), -self.obs_clip), self.obs_clip)
        return np.minimum(np.maximum((clipped - self.mean) / self.std, -self.norm_clip),
                          self.norm_clip)
