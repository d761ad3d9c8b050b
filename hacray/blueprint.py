"""Everything a run's components are built from: the config, the env's spec and the levels'
spaces, with one method per component (learner, replay, policy). torch only in ``learner``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from hacray import seeding
from hacray.algo.hierarchy import LevelSpace, level_spaces
from hacray.algo.priority import LiftPriority
from hacray.algo.relabel import attempt_reward
from hacray.algo.replay import HierarchicalReplay, LevelSpec
from hacray.algo.rollout import Policy
from hacray.config import Config, ReplayConfig
from hacray.envs import EnvSpec
from hacray.goals import distance_reached

if TYPE_CHECKING:
    from hacray.algo.learner import Learner


def top_test_penalty(horizons: list[int], gamma: float) -> float:
    """A time-aware top level's missed subgoal test costs what failing for its whole budget of
    env steps would (H_top attempts of the levels' full horizons: HAC's -H in env steps)."""
    return float(attempt_reward(np.float64(0.0), np.float64(np.prod(horizons)), gamma))


def top_lift_priority(replay: ReplayConfig) -> Optional[LiftPriority]:
    """replay.lift_priority's weighting of the top level's rows (its goals are the env's)."""
    if replay.lift_priority <= 0:
        return None
    return LiftPriority(replay.lift_index, replay.lift_full, replay.lift_priority)


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

    def replay(self, shard: int = 0) -> HierarchicalReplay:
        """The replay (shard ``shard`` of a sharded one: its own sampling stream)."""
        agent, config = self.config.agent, self.config
        top = len(self.spaces) - 1
        # the top level may be trained with a recipe of its own (agent.top_relabel, ...)
        schemes = [agent.relabel] * top + [agent.top_relabel or agent.relabel]
        terminate = [agent.terminate_on_goal] * top + [
            agent.terminate_on_goal if agent.top_terminate_on_goal is None
            else agent.top_terminate_on_goal]
        time_aware = [False] * top + [agent.top_time_aware]
        penalties = [None] * top + [top_test_penalty(agent.horizons, config.learner.gamma)
                                    if agent.top_time_aware else None]
        lifts = [None] * top + [top_lift_priority(config.replay)]
        return HierarchicalReplay(
            levels=[LevelSpec(s.horizon, s.goal_dim, s.act_dim,
                              distance_reached(s.threshold, s.scale), scheme, ends, aware, penalty,
                              lift)
                    for s, scheme, ends, aware, penalty, lift in zip(
                        self.spaces, schemes, terminate, time_aware, penalties, lifts)],
            obs_dim=self.spec.obs_dim, capacity=config.replay.capacity,
            gamma=config.learner.gamma, k=agent.relabel_k, drop_degenerate=agent.drop_degenerate,
            obs_clip=config.learner.obs_clip, her_at_sample=config.replay.her_at_sample,
            her_actual=config.replay.her_actual,
            rng=seeding.rng(config.train.seed, "replay", *((shard,) if shard else ())))

    def policy(self) -> Policy:
        return Policy(list(self.spaces), self.spec.obs_dim, self.config.learner)
