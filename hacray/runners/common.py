"""What the local and the distributed runner share: building components, evaluating, run dirs."""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hacray import seeding
from hacray.algo.hierarchy import LevelSpace, level_spaces
from hacray.algo.relabel import distance_reached
from hacray.algo.replay import HierarchicalReplay, LevelSpec
from hacray.algo.rollout import Policy, run_episode
from hacray.config import Config, ConfigError
from hacray.envs import EnvSpec, GoalEnv
from hacray.types import EpisodeStats

if TYPE_CHECKING:
    from hacray.algo.learner import Learner


@dataclass(frozen=True)
class Blueprint:
    """Everything derived from the config and the env spec that every component needs."""

    config: Config
    spec: EnvSpec
    spaces: tuple[LevelSpace, ...]

    @classmethod
    def of(cls, config: Config, spec: EnvSpec) -> "Blueprint":
        return cls(config, spec, tuple(level_spaces(config, spec)))

    def learner(self) -> "Learner":
        from hacray.algo.learner import Learner  # torch: only where a learner is built
        seed = seeding.int_seed(self.config.train.seed, "learner")
        return Learner(list(self.spaces), self.spec.obs_dim, self.config.learner, seed)

    def replay(self) -> HierarchicalReplay:
        agent, config = self.config.agent, self.config
        return HierarchicalReplay(
            levels=[LevelSpec(s.horizon, s.goal_dim, s.act_dim, distance_reached(s.threshold))
                    for s in self.spaces],
            obs_dim=self.spec.obs_dim, capacity=config.replay.capacity,
            gamma=config.learner.gamma, scheme=agent.relabel, k=agent.relabel_k,
            terminate_on_goal=agent.terminate_on_goal, drop_degenerate=agent.drop_degenerate,
            obs_clip=config.learner.obs_clip, rng=seeding.rng(config.train.seed, "replay"))

    def policy(self) -> Policy:
        return Policy(list(self.spaces), self.spec.obs_dim, self.config.learner)


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


def check_resources(config: Config) -> None:
    """Refuse GPU requests this machine cannot serve, before anything is written."""
    import torch
    if config.learner.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config: learner.device is cuda but this machine has no CUDA GPU")
    if config.distributed.learner_gpus > 0 and config.distributed.address is None \
            and not torch.cuda.is_available():
        raise ConfigError(f"config: distributed.learner_gpus is "
                          f"{config.distributed.learner_gpus} but this machine has no GPU")


def hyperparameter_table(config: Config) -> str:
    """The resolved config as a two-column markdown table, for TensorBoard's text tab."""
    from hacray.config import to_dict
    rows = [f"|{section}.{key}|{value}|" for section, values in to_dict(config).items()
            for key, value in values.items()]
    return "|key|value|\n|-|-|\n" + "\n".join(rows)


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after a final checkpoint; a second exits now."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the host program
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise SystemExit(128 + signum)
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Throughput:
    """Rates between two calls of ``rates``."""

    def __init__(self, env_steps: int, updates: int):
        self.t, self.env_steps, self.updates = time.perf_counter(), env_steps, updates

    def rates(self, env_steps: int, updates: int) -> dict[str, float]:
        now = time.perf_counter()
        dt = max(now - self.t, 1e-9)
        out = {"charts/env_steps_per_s": (env_steps - self.env_steps) / dt,
               "charts/updates_per_s": (updates - self.updates) / dt}
        self.t, self.env_steps, self.updates = now, env_steps, updates
        return out
