"""The learner: DDPG updates for every level of the hierarchy, on CPU or GPU.

``update(batches)`` takes one float32 numpy batch per level and returns a metrics dict;
``weights()`` exports what rollout workers need; ``state_dict()`` is the whole checkpoint.

Besides losses, ``update`` reports ``diag/*`` diagnostics: where the critics' predictions sit
against their targets' clip range, and how far the input normalisation drifted between the
last two published policies (see ``Learner.weights``).
"""
from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import torch

from hacray.algo.hierarchy import LevelSpace
from hacray.algo.networks import Actor, Critic, export_actor
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


class _Level:
    """One level's networks, targets, optimisers and input scaling."""

    def __init__(self, space: LevelSpace, obs_dim: int, config: LearnerConfig,
                 device: torch.device):
        self.space = space
        self.actor = Actor(obs_dim, space.goal_dim, space.act_dim, config.hidden).to(device)
        self.critic = Critic(obs_dim, space.goal_dim, space.act_dim, config.hidden).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.act_centre = torch.as_tensor(space.act_centre, device=device)
        self.act_half = torch.as_tensor(space.act_half, device=device)
        self.goal_norm = Normalizer(space.goal_dim, config.norm_eps, config.norm_clip,
                                    config.obs_clip)


class Learner:
    """Trains all levels; one ``update`` is one gradient step of every level's actor and critic."""

    def __init__(self, spaces: list[LevelSpace], obs_dim: int, config: LearnerConfig, seed: int):
        self.config = config
        self.device = pick_device(config.device)
        if self.device.type == "cpu":
            torch.set_num_threads(config.torch_threads)
        torch.manual_seed(seed)
        self.obs_norm = Normalizer(obs_dim, config.norm_eps, config.norm_clip, config.obs_clip)
        self.levels = [_Level(s, obs_dim, config, self.device) for s in spaces]
        threads = level_threads(config, len(spaces))
        self._pool: Optional[ThreadPoolExecutor] = (
            ThreadPoolExecutor(threads, thread_name_prefix="hacray-level") if threads > 1 else None)
        self.updates = 0
        self.version = 0
        self.skipped_updates = 0
        self.consecutive_skips = 0
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

    def _normalise(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        c = self.config
        return torch.clamp((torch.clamp(x, -c.obs_clip, c.obs_clip) - mean) / std,
                           -c.norm_clip, c.norm_clip)

    # -- training ---------------------------------------------------------------------------
    def update(self, batches: tuple[Transitions, ...]) -> dict[str, float]:
        """One gradient step per level; a level whose loss is non-finite is skipped and counted.

        Levels update side by side in ``learner.level_threads`` threads (torch lets go of the
        GIL inside its kernels); each touches only its own networks and optimisers.
        Targets are averaged on updates number k, 2k, ... (k = ``target_update_every``,
        counting this one: with k = 40 the first averaging is on update 40, as in HER's
        baselines). Values are 0-d tensors (no GPU sync here) or floats; ``float()`` them.
        """
        average_targets = (self.updates + 1) % self.config.target_update_every == 0
        jobs = [(i, level, batch, average_targets)
                for i, (level, batch) in enumerate(zip(self.levels, batches))]
        if self._pool is None:
            results = [self._update_level(*job) for job in jobs]
        else:
            results = list(self._pool.map(lambda job: self._update_level(*job), jobs))
        metrics: dict[str, float] = dict(self._norm_drift)
        for i, result in enumerate(results):  # counted in level order, as if one after another
            if result is None:
                metrics.update(self._skip(i))
            else:
                self.consecutive_skips = 0
                metrics.update(result)
        self.updates += 1
        return metrics

    def _update_level(self, i: int, level: _Level, batch: Transitions,
                      average_targets: bool) -> Optional[dict[str, float]]:
        """Level ``i``'s critic step, then its actor step; None when either meets a non-finite
        loss or gradient (that step and the rest are not taken). Writes only the level's state."""
        c, dev = self.config, self.device
        b = {k: torch.as_tensor(v, device=dev) for k, v in batch._asdict().items()}
        obs_mean, obs_std, goal_mean, goal_std = self._norm_tensors[i]
        obs = self._normalise(b["obs"], obs_mean, obs_std)
        next_obs = self._normalise(b["next_obs"], obs_mean, obs_std)
        goal = self._normalise(b["goal"], goal_mean, goal_std)
        action = (b["action"] - level.act_centre) / level.act_half
        with torch.no_grad():
            next_q = level.critic_target(next_obs, goal, level.actor_target(next_obs, goal))
            target = torch.clamp(b["reward"] + b["discount"] * next_q, level.space.q_low, 0.0)
        q = level.critic(obs, goal, action)
        critic_loss = torch.mean((q - target) ** 2)
        if not _step(level.critic_opt, critic_loss, level.critic):
            return None
        pi = level.actor(obs, goal)
        level.critic.requires_grad_(False)  # the actor's loss needs no critic weight gradients
        try:
            actor_loss = -level.critic(obs, goal, pi).mean()
        finally:
            level.critic.requires_grad_(True)
        if i == 0:  # on motor actions only: on subgoals it would pull them to the box centre
            actor_loss = actor_loss + c.action_l2 * torch.mean(pi ** 2)
        if not _step(level.actor_opt, actor_loss, level.actor):
            return None
        if average_targets:  # a level skipped on that update waits for the next k-th one
            self._soft_update(level)
        q = q.detach()
        q_min, q_max = torch.aminmax(q)
        return {f"level{i}/critic_loss": critic_loss.detach(),
                f"level{i}/actor_loss": actor_loss.detach(),
                f"level{i}/q_mean": q.mean(), f"level{i}/q_min": q_min,
                f"level{i}/target_mean": target.mean(),
                **_q_range(i, q, q_max, level.space.q_low)}

    def _skip(self, i: int) -> dict[str, float]:
        self.skipped_updates += 1
        self.consecutive_skips += 1
        if self.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise NumericalError(f"{self.consecutive_skips} consecutive updates had non-finite "
                                 "losses or gradients; stopping (checkpoints hold finite weights)")
        return {f"level{i}/skipped_updates": float(self.skipped_updates)}

    @torch.no_grad()
    def _soft_update(self, level: _Level) -> None:
        for net, target in ((level.actor, level.actor_target), (level.critic, level.critic_target)):
            torch._foreach_lerp_(list(target.parameters()), list(net.parameters()),
                                 1.0 - self.config.polyak)

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


def _q_range(i: int, q: torch.Tensor, q_max: torch.Tensor, q_low: float) -> dict[str, Any]:
    """Level ``i``'s predictions on the batch against the clip range [q_low, 0] of its targets.

    No target lies outside that range, so predictions outside it are pure critic error.
    """
    return {f"diag/level{i}_q_max": q_max,
            f"diag/level{i}_q_below_lower_frac": (q < q_low).float().mean(),
            f"diag/level{i}_q_above_zero_frac": (q > 0.0).float().mean(),
            f"diag/level{i}_q_lower_bound": q_low}


def _step(optimiser: torch.optim.Optimizer, loss: torch.Tensor, net: torch.nn.Module) -> bool:
    """Backward and step unless the loss or the gradient norm is non-finite."""
    if not torch.isfinite(loss):
        return False
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf"))
    if not torch.isfinite(norm):
        optimiser.zero_grad(set_to_none=True)
        return False
    optimiser.step()
    return True


def _to_cpu(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(v) for v in tree)
    return tree.cpu() if isinstance(tree, torch.Tensor) else tree
