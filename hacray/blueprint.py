"""Everything a run's components are built from: the config, the env's spec and the levels'
spaces, with one method per component (learner, replay, policy). torch only in ``learner``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hacray import seeding
from hacray.algo.hierarchy import LevelSpace, level_spaces
from hacray.algo.replay import HierarchicalReplay, LevelSpec
from hacray.algo.rollout import Policy
from hacray.config import Config
from hacray.envs import EnvSpec
from hacray.goals import distance_reached

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
