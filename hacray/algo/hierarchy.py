"""The spaces of each level of the hierarchy, derived once from the env and the config."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hacray.config import Config, ConfigError
from hacray.envs import EnvSpec


@dataclass(frozen=True)
class LevelSpace:
    """Level ``index``'s goal and action spaces.

    The top level's goals are the env's goals; every lower level's goals are subgoals
    (``obs[subgoal_indices]``). Level 0 acts in the env's action box; a level above it acts by
    proposing a subgoal inside [subgoal_low, subgoal_high].
    """

    index: int
    horizon: int
    goal_dim: int
    act_dim: int
    act_low: np.ndarray
    act_high: np.ndarray
    threshold: float
    q_low: float
    goal_indices: np.ndarray | None
    """Observation indices of this level's goal space; None for the top (env goal)."""
    relative: bool = False
    """This level's actions are offsets from where the level below stands in its goal space
    (HIRO-style relative subgoals, agent.subgoal_offset), not absolute subgoals."""
    subgoal_low: np.ndarray | None = None
    """With relative actions: the box that the subgoals they make are clipped into."""
    subgoal_high: np.ndarray | None = None
    context_dim: int = 0
    """Trailing goal coordinates that are the env goal, not a subgoal (agent.lower_sees_goal):
    constant through an episode, so they never make a goal reached or missed."""
    scale: np.ndarray | None = None
    """Each goal coordinate's weight in this level's distance test (env.subgoal_scale, below
    the top); None weighs them all 1."""
    reach: np.ndarray | None = None
    """Absolute subgoals clipped to at most this far from where the level below stands, per
    coordinate (agent.subgoal_reach); None: given as proposed."""
    direct_dim: int = 0
    """Trailing action coordinates that are env action values this level sets itself for the
    whole of each subgoal (agent.top_action_indices; the top level), not part of the subgoal."""
    direct_indices: np.ndarray | None = None
    """Level 0 under a top level that sets some env action coordinates: their indices in the
    env action (filled from above; level 0's own action fills the rest, in order). None: level
    0's action is the whole env action."""

    def achieved(self, obs: np.ndarray, env_achieved: np.ndarray) -> np.ndarray:
        """This level's goal-space view of an observation (without any context)."""
        return env_achieved if self.goal_indices is None else obs[..., self.goal_indices]

    def with_context(self, point: np.ndarray, env_goal: np.ndarray) -> np.ndarray:
        """A point of this level's goal space as the level sees it: then the env goal, if the
        level takes it as context (a subgoal it pursues, or where it stands)."""
        if not self.context_dim:
            return point
        return np.concatenate([point, env_goal]).astype(np.float32)

    @cached_property  # on every action: computed once (the dataclass is frozen)
    def act_centre(self) -> np.ndarray:
        return (self.act_high + self.act_low) / 2

    @cached_property
    def act_half(self) -> np.ndarray:
        """Half the width of the action box: [-1, 1] scales to it."""
        return (self.act_high - self.act_low) / 2

    @cached_property
    def uniform_low_span(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high - low) in float64: the arithmetic of ``Generator.uniform(low, high)``."""
        low = self.act_low.astype(np.float64)
        return low, self.act_high.astype(np.float64) - low

    @property
    def subgoal_dim(self) -> int:
        """The action coordinates that make a subgoal (all but the direct ones)."""
        return self.act_dim - self.direct_dim

    def split(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the subgoal part, the env action values this level sets itself) of an action."""
        return action[..., :self.subgoal_dim], action[..., self.subgoal_dim:]

    def env_action(self, action: np.ndarray, direct: np.ndarray | None) -> np.ndarray:
        """Level 0: the env action made of its own ``action`` and the ``direct`` values set
        from above at ``direct_indices``."""
        if self.direct_indices is None:
            return action
        full = np.empty(len(self.own_indices) + len(self.direct_indices), np.float32)
        full[self.own_indices], full[self.direct_indices] = action, direct
        return full

    @cached_property  # on every env step: computed once (the dataclass is frozen)
    def own_indices(self) -> np.ndarray:
        """Level 0 with ``direct_indices``: the env action indices it sets itself (the rest)."""
        assert self.direct_indices is not None
        every = np.arange(self.act_dim + len(self.direct_indices))
        return np.setdiff1d(every, self.direct_indices)

    def unscale_action(self, unit: np.ndarray) -> np.ndarray:
        """[-1, 1] -> env units."""
        return self.act_centre + self.act_half * unit

    def subgoal(self, action: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The subgoal this level's ``action`` gives the level below, which stands at ``start``
        in its goal space: the action itself (with ``reach``: clipped to within reach of
        ``start``), or ``start`` + the offset, kept in the box."""
        action = action[..., :self.subgoal_dim]
        if self.reach is not None:
            return np.minimum(np.maximum(action, start - self.reach), start + self.reach
                              ).astype(np.float32)
        if not self.relative:
            return action
        goal = np.minimum(np.maximum(start + action, self.subgoal_low), self.subgoal_high)
        return goal.astype(np.float32)

    def hindsight_action(self, reached: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The subgoal part of the action that would have asked for what the level below
        ``reached`` from ``start``: that state, or the offset to it (kept in the action box)."""
        if not self.relative:
            return reached
        low, high = self.act_low[:self.subgoal_dim], self.act_high[:self.subgoal_dim]
        offset = np.minimum(np.maximum(reached - start, low), high)
        return offset.astype(np.float32)


def level_spaces(config: Config, spec: EnvSpec) -> list[LevelSpace]:
    """Level 0 first. With one level this is exactly DDPG+HER's single goal-conditioned policy."""
    agent, levels = config.agent, config.agent.levels
    sub_dim = len(spec.subgoal_indices)
    if levels > 1 and sub_dim == 0:
        raise ConfigError(f"config: agent.levels {levels} needs a subgoal space: set "
                          f"env.subgoal_indices, env.subgoal_low and env.subgoal_high for {spec.id} "
                          "(its observation is unbounded)")
    offset = agent.subgoal_offset
    if offset is not None and levels > 1 and len(offset) != sub_dim:
        raise ConfigError(f"config: agent.subgoal_offset needs one half-width per subgoal "
                          f"coordinate ({sub_dim}), got {len(offset)}")
    reach = agent.subgoal_reach
    if reach is not None and levels > 1 and len(reach) != sub_dim:
        raise ConfigError(f"config: agent.subgoal_reach needs one distance per subgoal "
                          f"coordinate ({sub_dim}), got {len(reach)}")
    replay = config.replay
    if replay.lift_priority > 0 and replay.lift_index >= spec.goal_dim:
        raise ConfigError(f"config: replay.lift_index {replay.lift_index} is not a coordinate of "
                          f"{spec.id}'s goal (0-{spec.goal_dim - 1})")
    if levels > 1 and config.learner.subgoal_preact_to == "goal" and spec.goal_dim < sub_dim:
        raise ConfigError(f"config: learner.subgoal_preact_to goal needs {spec.id}'s goal to hold "
                          f"the subgoal's {sub_dim} coordinates first (it has {spec.goal_dim})")
    direct = np.asarray((agent.top_action_indices or []) if levels > 1 else [], np.int64)
    if len(direct) and (direct.max() >= spec.action_dim or len(direct) >= spec.action_dim):
        raise ConfigError(f"config: agent.top_action_indices {agent.top_action_indices} must be "
                          f"indices of {spec.id}'s actions (0-{spec.action_dim - 1}), leaving "
                          "level 0 at least one to set")
    spaces = []
    for i in range(levels):
        top = i == levels - 1
        horizon = agent.horizons[i]
        # a level's return is at least -H (H attempts of reward -1, or one test penalty of -H),
        # unless it has no cap on its attempts: flat, or a top level that runs until the end
        uncapped = levels == 1 or (top and agent.top_until_episode_end)
        q_low = -1.0 / (1.0 - config.learner.gamma) if uncapped else -float(horizon)
        relative = i > 0 and offset is not None
        if i == 0:
            act_high = np.full(spec.action_dim - len(direct), agent.level0_speed)
            act_low = -act_high
        elif relative:
            act_low, act_high = -np.asarray(offset), np.asarray(offset)
        else:
            act_low, act_high = spec.subgoal_low, spec.subgoal_high
        sets = len(direct) if top and i > 0 else 0  # env action values the top level sets
        act_low = np.concatenate([act_low, -np.ones(sets)])
        act_high = np.concatenate([act_high, np.ones(sets)])
        context = spec.goal_dim if i == 0 and not top and agent.lower_sees_goal else 0
        scale = None if top or spec.subgoal_scale is None else np.concatenate(
            [spec.subgoal_scale, np.ones(context, np.float32)])
        spaces.append(LevelSpace(
            index=i, horizon=horizon,
            goal_dim=spec.goal_dim if top else sub_dim + context,
            act_dim=len(act_low),
            act_low=act_low.astype(np.float32), act_high=act_high.astype(np.float32),
            threshold=spec.goal_threshold if top else spec.subgoal_threshold,
            q_low=q_low,
            goal_indices=None if top else np.asarray(spec.subgoal_indices),
            relative=relative,
            subgoal_low=spec.subgoal_low if relative else None,
            subgoal_high=spec.subgoal_high if relative else None, context_dim=context,
            scale=scale, direct_dim=sets,
            reach=None if i == 0 or reach is None else np.asarray(reach, np.float32),
            direct_indices=direct if i == 0 and len(direct) else None))
    return spaces
