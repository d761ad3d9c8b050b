"""The learner: DDPG updates for every level of the hierarchy, on CPU or GPU.

``update(batches)`` takes one float32 numpy batch per level and returns a metrics dict;
``weights()`` exports what rollout workers need; ``state_dict()`` is the whole checkpoint.

Besides losses, ``update`` reports ``diag/*`` diagnostics: where the critics' predictions sit
against their targets' clip range, and how far the input normalisation drifted between the
last two published policies (see ``Learner.weights``).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

import numpy as np
import torch

from hacray.algo.feed import DeviceFeed
from hacray.algo.hierarchy import LevelSpace
from hacray.algo.level import Guard, Level, learn
from hacray.algo.networks import export_actor
from hacray.algo.normalizer import Normalizer, drift, stats_from_dict
from hacray.config import LearnerConfig
from hacray.errors import NumericalError
from hacray.types import NormalizerStats, PolicyWeights, Transitions


MAX_CONSECUTIVE_SKIPS = 100
"""A run whose updates are non-finite this many times in a row stops (see NumericalError)."""


def pick_device(requested: str) -> torch.device:
    """auto -> cuda when available, else cpu; asking for cuda without one is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("learner.device is cuda but torch sees no CUDA GPU on this machine")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def level_hidden(config: LearnerConfig, level: int, levels: int) -> list[int]:
    """Hidden layer sizes of one level's networks: ``top_hidden`` for the top of two or more
    levels when it is set, ``hidden`` otherwise."""
    if config.top_hidden is not None and levels >= 2 and level == levels - 1:
        return config.top_hidden
    return config.hidden


class Learner:
    """Trains all levels; one ``update`` is one gradient step of every level's actor and critic
    (of level i only on every k_i-th update with ``learner.level_update_every``)."""

    def __init__(self, spaces: list[LevelSpace], obs_dim: int, config: LearnerConfig, seed: int):
        self.config = config
        self.device = pick_device(config.device)
        if self.device.type == "cpu":
            torch.set_num_threads(config.torch_threads)
        torch.manual_seed(seed)
        self.obs_norm = Normalizer(obs_dim, config.norm_eps, config.norm_clip, config.obs_clip)
        self.levels = [Level(s, obs_dim, config, self.device, level_hidden(config, i, len(spaces)))
                       for i, s in enumerate(spaces)]
        self.every = list(config.level_update_every or [1] * len(spaces))
        if len(self.every) != len(spaces) or min(self.every) < 1:
            raise ValueError(f"learner.level_update_every needs one entry >= 1 per level "
                             f"({len(spaces)}), got {config.level_update_every}")
        self._level_metrics: list[dict[str, float]] = [{} for _ in spaces]
        threads = level_threads(config, len(spaces))
        self._pool: Optional[ThreadPoolExecutor] = (
            ThreadPoolExecutor(threads, thread_name_prefix="hacray-level") if threads > 1 else None)
        self.updates = 0
        self.version = 0
        self.skipped_updates = 0
        self.consecutive_skips = 0
        self._feed = DeviceFeed(self.device)
        self._norm_tensors = self._normaliser_tensors()
        self._published_stats = self._stats()
        self._norm_drift = self._drift_since(self._published_stats)  # zeros: nothing moved yet

    # -- normaliser -------------------------------------------------------------------------
    def set_normalizer(self, obs_stats: NormalizerStats,
                       goal_stats: tuple[NormalizerStats, ...]) -> None:
        self.obs_norm.set_stats(obs_stats)
        for level, stats in zip(self.levels, goal_stats):
            level.goal_norm.set_stats(stats)
        self._norm_tensors = self._normaliser_tensors()

    def _stats(self) -> tuple[NormalizerStats, tuple[NormalizerStats, ...]]:
        """The observation statistics and every level's goal statistics now in use."""
        return self.obs_norm.stats, tuple(lv.goal_norm.stats for lv in self.levels)

    def _drift_since(self, reference: tuple[NormalizerStats, tuple[NormalizerStats, ...]]
                     ) -> dict[str, float]:
        """``diag/*_drift`` of the statistics now in use against ``reference`` (normalizer.drift)."""
        eps = self.config.norm_eps
        obs_ref, goal_refs = reference
        out = dict(zip(("diag/obs_norm_mean_drift", "diag/obs_norm_std_drift"),
                       drift(obs_ref, self.obs_norm.stats, eps)))
        for i, (lv, ref) in enumerate(zip(self.levels, goal_refs)):
            out.update(zip((f"diag/level{i}_goal_norm_mean_drift",
                            f"diag/level{i}_goal_norm_std_drift"),
                           drift(ref, lv.goal_norm.stats, eps)))
        return out

    def _normaliser_tensors(self) -> list[tuple[torch.Tensor, ...]]:
        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, device=self.device)
        return [(t(self.obs_norm.mean), t(self.obs_norm.std), t(lv.goal_norm.mean),
                 t(lv.goal_norm.std)) for lv in self.levels]

    # -- training ---------------------------------------------------------------------------
    def update(self, batches: tuple[Transitions, ...]) -> dict[str, float]:
        """One gradient step per level, guards read eagerly (``update_many`` of one batch)."""
        return self.update_many([batches], deferred=False)

    def update_many(self, batches: Sequence[tuple[Transitions, ...]],
                    deferred: Optional[bool] = None) -> dict[str, float]:
        """One gradient step per level for each update's batches (one Transitions per level),
        in order; the metrics of the last update, as floats.

        The batches reach the device in one copy (pinned and non-blocking on CUDA). With
        ``deferred`` guards (level.py) nothing is read back until all the updates have run,
        then guards and metrics once; a level whose guard failed is restored and replayed
        eagerly, so the result is exactly that of ``update`` called once per batch: a level
        whose loss or gradient is non-finite skips that update and it is counted.

        Levels update side by side in ``learner.level_threads`` threads (torch lets go of the
        GIL inside its kernels); each touches only its own networks and optimisers. Targets are
        averaged on updates number k, 2k, ... (k = ``target_update_every``, counting from the
        first update ever: with k = 40 the first averaging is on update 40, as in HER's
        baselines).

        ``deferred`` defaults to True on a GPU, where every read waits for the queued kernels,
        and False on the CPU, where a read costs nothing and a snapshot would. One difference
        remains: when the skips reach MAX_CONSECUTIVE_SKIPS inside a call, NumericalError is
        raised after all of the call's updates ran (the run stops there either way).
        """
        if deferred is None:
            deferred = self.device.type != "cpu"
        columns = self._feed(batches)  # a level that sits an update out leaves its batch unused
        jobs = [(i, level, columns[i], deferred) for i, level in enumerate(self.levels)]
        if self._pool is None:
            runs = [self._run_level(*job) for job in jobs]
        else:
            runs = list(self._pool.map(lambda job: self._run_level(*job), jobs))
        guards, level_metrics = self._read(runs)
        for i, level_guards in enumerate(guards):
            if deferred and not all(level_guards):  # rare: back to before the call, then eagerly
                self.levels[i].restore()
                (guards[i],), (level_metrics[i],) = self._read(
                    [self._run_level(i, self.levels[i], columns[i], False)])
        return self._count(guards, level_metrics)

    def _run_level(self, i: int, level: Level, columns: dict[str, torch.Tensor],
                   deferred: bool) -> tuple[list[Guard], dict[str, Any]]:
        """Level ``i``'s updates on its (n, B, ...) columns: the guards of each, the metrics of
        the last (empty when its guard failed eagerly). Writes only the level's state."""
        n = next(iter(columns.values())).shape[0]
        steps = self._steps(i, n)
        if deferred and steps:
            level.snapshot()
        guards: list[Guard] = [True] * n  # an update the level sits out cannot fail
        last_metrics: dict[str, Any] = {}
        for j in steps:
            own_step = (self.updates + j + 1) // self.every[i]
            result = learn(level, i, {k: v[j] for k, v in columns.items()},
                           self._norm_tensors[i], self.config,
                           average_targets=own_step % self.config.target_update_every == 0,
                           deferred=deferred, want_metrics=j == steps[-1])
            guards[j] = False if result is None else result[0]
            last_metrics = {} if result is None else result[1]
        return guards, last_metrics

    def _steps(self, i: int, n: int) -> list[int]:
        """Which of the next ``n`` updates (0-based, from ``self.updates``) level ``i`` takes."""
        return [j for j in range(n) if (self.updates + j + 1) % self.every[i] == 0]

    def _read(self, runs: list[tuple[list[Guard], dict[str, Any]]]
              ) -> tuple[list[list[bool]], list[dict[str, float]]]:
        """Every level's guards and metrics as Python values, in one read from the device."""
        tensors = [x for guards, m in runs for x in [*guards, *m.values()]
                   if isinstance(x, torch.Tensor)]
        values = iter(torch.stack([t.float() for t in tensors]).tolist() if tensors else [])
        def value(x: Any) -> Any:
            return next(values) if isinstance(x, torch.Tensor) else x
        read = [([bool(value(g)) for g in guards], {k: float(value(v)) for k, v in m.items()})
                for guards, m in runs]  # in the order the tensors were stacked
        return [guards for guards, _ in read], [m for _, m in read]

    def _count(self, guards: list[list[bool]], level_metrics: list[dict[str, float]]
               ) -> dict[str, float]:
        """Skips counted update by update, level by level, as if ``update`` ran n times; each
        level's metrics are those of its last step (from an earlier call if it sat this one
        out)."""
        metrics: dict[str, float] = dict(self._norm_drift)
        n = len(guards[0])
        steps = [self._steps(i, n) for i in range(len(guards))]
        for j in range(n):
            for i, level_guards in enumerate(guards):
                if j not in steps[i]:  # sat this update out: neither a step nor a skip
                    continue
                if level_guards[j]:
                    self.consecutive_skips = 0
                else:
                    skipped = self._skip(i)
                    if j == n - 1:
                        metrics.update(skipped)
            self.updates += 1
        for i, level_guards in enumerate(guards):
            if steps[i]:  # none when the last step failed, as update reports it
                self._level_metrics[i] = level_metrics[i] if level_guards[steps[i][-1]] else {}
            metrics.update(self._level_metrics[i])
        return metrics

    def _skip(self, i: int) -> dict[str, float]:
        self.skipped_updates += 1
        self.consecutive_skips += 1
        if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise NumericalError(f"{self.consecutive_skips} consecutive updates had non-finite "
                                 "losses or gradients; stopping (checkpoints hold finite weights)")
        return {f"level{i}/skipped_updates": float(self.skipped_updates)}

    # -- publishing -------------------------------------------------------------------------
    def weights(self) -> PolicyWeights:
        """Actors and normaliser statistics for the workers, tagged with a new version.

        Also measures normaliser drift: the statistics published now against those of the
        previous publication; ``update`` reports it until the next one. Both runners publish
        once per cycle of exploration episodes, so the drift is per cycle in both, whether
        ``set_normalizer`` ran once per update or once per burst. It is 0 while either side
        is empty (the first statistics, and the first publication after a resume).
        """
        self.assert_finite()
        self.version += 1
        self._norm_drift = self._drift_since(self._published_stats)
        obs_stats, goal_stats = self._published_stats = self._stats()
        return PolicyWeights(
            version=self.version,
            actors=tuple(export_actor(lv.actor) for lv in self.levels),
            obs_stats=obs_stats, goal_stats=goal_stats)

    def assert_finite(self) -> None:
        """Raise NumericalError rather than let non-finite weights reach workers or disk."""
        for i, lv in enumerate(self.levels):
            for net in (lv.actor, lv.critic):
                if not all(torch.isfinite(p).all() for p in net.parameters()):
                    raise NumericalError(f"level {i} has non-finite weights; not publishing them")

    # -- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole learner as CPU tensors (loads on a machine without the learner's GPU)."""
        self.assert_finite()
        return _to_cpu(self._state_dict())

    def _state_dict(self) -> dict[str, Any]:
        def stats(s: NormalizerStats) -> dict[str, Any]:
            return {"count": s.count, "sum": torch.as_tensor(s.sum),
                    "sumsq": torch.as_tensor(s.sumsq)}
        return {
            "updates": self.updates, "version": self.version,
            "skipped_updates": self.skipped_updates,
            "obs_stats": stats(self.obs_norm.stats),
            "levels": [{
                "actor": lv.actor.state_dict(), "critic": lv.critic.state_dict(),
                "actor_target": lv.actor_target.state_dict(),
                "critic_target": lv.critic_target.state_dict(),
                "actor_opt": lv.actor_opt.state_dict(), "critic_opt": lv.critic_opt.state_dict(),
                "goal_stats": stats(lv.goal_norm.stats)} for lv in self.levels],
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["levels"]) != len(self.levels):
            raise ValueError(f"checkpoint has {len(state['levels'])} levels, "
                             f"config has {len(self.levels)}")
        self.updates, self.version = state["updates"], state["version"]
        self.skipped_updates = state["skipped_updates"]
        for lv, saved in zip(self.levels, state["levels"]):
            for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt",
                         "critic_opt"):
                getattr(lv, name).load_state_dict(saved[name])
            lv.after_load()
        self.set_normalizer(*normalizer_stats(state))
        torch.set_rng_state(state["torch_rng"])


def level_threads(config: LearnerConfig, levels: int, cpus: Optional[int] = None) -> int:
    """How many threads update the levels: ``config.level_threads``, or for 0 one per level
    up to ``cpus`` (default: the CPUs this process may use); never more than there are levels."""
    if config.level_threads:
        return min(config.level_threads, levels)
    if cpus is None:
        cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1)
    return max(1, min(levels, cpus))


def normalizer_stats(state: dict[str, Any]
                     ) -> tuple[NormalizerStats, tuple[NormalizerStats, ...]]:
    """The observation and per-level goal statistics saved in a ``Learner.state_dict()``."""
    return (stats_from_dict(state["obs_stats"]),
            tuple(stats_from_dict(lv["goal_stats"]) for lv in state["levels"]))


def _to_cpu(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(v) for v in tree)
    return tree.cpu() if isinstance(tree, torch.Tensor) else tree
