"""Goal-conditioned environments behind one small interface.

``make_env(env_config)`` returns a :class:`GoalEnv`: ``reset(seed)`` gives
(obs, achieved_goal, desired_goal) and ``step(action)`` gives (obs, achieved_goal, success,
ended). All arrays are float32. The built-in ``PointMass-v0`` needs neither MuJoCo nor Ray;
Fetch tasks have a fast adapter of their own (``fetch``); any other gymnasium goal env, by
registered id or by ``env.entry_point``, goes through the generic one (``gym_goal``).
``make_envs(env_config, n)`` builds the envs one process steps side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hacray.config import ConfigError, EnvConfig


@dataclass(frozen=True)
class EnvSpec:
    """Dimensions and the subgoal space of a task (resolved against the config)."""

    id: str
    obs_dim: int
    goal_dim: int
    action_dim: int
    max_episode_steps: int
    goal_threshold: float
    subgoal_indices: tuple[int, ...]
    subgoal_low: np.ndarray
    subgoal_high: np.ndarray
    subgoal_threshold: float
    subgoal_scale: np.ndarray | None = None
    """Each subgoal coordinate's weight in the subgoal distance (env.subgoal_scale)."""
    air_goal_z: float | None = None
    """Goals higher than this (z, the goal's third coordinate) lie in the air: set for tasks
    that draw some goals above the table (FetchPickAndPlace), where lifting is the hard part."""
    grasp_start: float = 0.0
    """Share of training episodes that start with the object in the gripper (env.grasp_start):
    an env that allows it has ``start_grasped()``."""


class GoalEnv(Protocol):
    spec: EnvSpec

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]: ...

    def close(self) -> None: ...


def make_env(config: EnvConfig, render: bool = False) -> GoalEnv:
    """Build the env named by ``config.id``; a bad id raises ConfigError naming env.id.
    ``render``: a generic env is made to render rgb_array frames where it can (for videos)."""
    return make_envs(config, 1, render)[0]


def make_envs(config: EnvConfig, n: int, render: bool = False) -> list[GoalEnv]:
    """``n`` envs of one task for one process to step in turn, each with its own state.

    MuJoCo envs share one compiled model, which stepping only reads: a worker's cache then holds
    one copy of it, not ``n`` (Fetch's is 8 MB, meshes included): a worker's rollouts with 8
    envs ran 1.05-1.09x as fast as with a model per env (BENCHMARKS.md). A bad id raises
    ConfigError naming env.id.
    """
    from hacray.envs.point_mass import PointMassEnv
    if config.id == PointMassEnv.ID and config.entry_point is None:
        return [PointMassEnv(config) for _ in range(n)]
    from hacray.envs.fetch import FetchEnv
    if not FetchEnv.handles(config):
        from hacray.envs.gym_goal import GymGoalEnv
        return [GymGoalEnv(config, render) for _ in range(n)]
    first = FetchEnv(config)
    return [first] + [FetchEnv(config, model_of=first) for _ in range(n - 1)]


def grasped_starts(env: GoalEnv, script: str) -> GoalEnv:
    """``env`` with every episode started with the object in the gripper (a benchmark script's
    ``--grasped``); a task without an object to grasp exits with one line naming ``script``."""
    from hacray.envs.fetch import GraspedStarts
    try:
        return GraspedStarts(env)
    except ConfigError as err:
        env.close()
        raise SystemExit(f"{script}: --grasped: {err}") from None


GRASPABLE = "a Fetch task with an object and a free gripper (FetchPickAndPlace)"
"""What a grasped start (env.grasp_start, a script's --grasped) needs."""

Subgoal = tuple[list[int], list[float], list[float]]
"""A subgoal space: observation indices, and the lower and upper bound of each."""


def resolve_spec(config: EnvConfig, *, id: str, obs_dim: int, goal_dim: int, action_dim: int,
                 max_episode_steps: int, goal_threshold: float,
                 default_subgoal: Subgoal,
                 obs_bounds: tuple[np.ndarray, np.ndarray] | None = None,
                 air_goal_z: float | None = None, can_grasp: bool = False) -> EnvSpec:
    """Fill the task's defaults into whatever the config leaves unset, and check the result.
    ``obs_bounds``: the observation box, where subgoal bounds the config omits come from.
    ``can_grasp``: the env can start an episode with the object in the gripper."""
    indices, low, high = subgoal_space(config, default_subgoal, obs_dim, obs_bounds, id)
    if config.grasp_start and not can_grasp:
        raise ConfigError(f"config: env.grasp_start needs {GRASPABLE}; {id} has none")
    threshold = config.goal_threshold if config.goal_threshold is not None else goal_threshold
    return EnvSpec(
        id=id, obs_dim=obs_dim, goal_dim=goal_dim, action_dim=action_dim,
        max_episode_steps=config.max_episode_steps or max_episode_steps,
        goal_threshold=threshold, subgoal_indices=tuple(indices),
        subgoal_low=np.asarray(low, np.float32), subgoal_high=np.asarray(high, np.float32),
        subgoal_threshold=(config.subgoal_threshold if config.subgoal_threshold is not None
                           else threshold),
        subgoal_scale=subgoal_scale(config, len(indices), id), air_goal_z=air_goal_z,
        grasp_start=config.grasp_start)


def subgoal_scale(config: EnvConfig, sub_dim: int, name: str) -> np.ndarray | None:
    """env.subgoal_scale as an array, checked against the subgoal space's size."""
    if config.subgoal_scale is None:
        return None
    if len(config.subgoal_scale) != sub_dim:
        raise ConfigError(f"config: env.subgoal_scale needs one weight per subgoal coordinate "
                          f"({sub_dim} for {name}), got {len(config.subgoal_scale)}")
    return np.asarray(config.subgoal_scale, np.float32)


def subgoal_space(config: EnvConfig, default: Subgoal, obs_dim: int,
                  obs_bounds: tuple[np.ndarray, np.ndarray] | None, name: str) -> Subgoal:
    """The config's subgoal space, its missing bounds taken from the observation box; without
    one in the config, the task's default."""
    indices = config.subgoal_indices
    if indices is None:
        return default
    if any(not 0 <= i < obs_dim for i in indices):
        raise ConfigError(f"config: env.subgoal_indices must lie in [0, {obs_dim}) for {name}")
    if config.subgoal_low is not None and config.subgoal_high is not None:
        return list(indices), list(config.subgoal_low), list(config.subgoal_high)
    low, high = obs_bounds if obs_bounds is not None else (np.full(obs_dim, -np.inf),) * 2
    unbounded = [i for i in indices if not (np.isfinite(low[i]) and np.isfinite(high[i]))]
    if unbounded:
        raise ConfigError(f"config: env.subgoal_low and env.subgoal_high are needed: observation "
                          f"entries {unbounded} of {name} are unbounded")
    return list(indices), [float(low[i]) for i in indices], [float(high[i]) for i in indices]


def goal_kind(spec: EnvSpec, goal: np.ndarray) -> str:
    """``"air"`` or ``"table"`` for a task that draws goals in the air, else ``""``."""
    if spec.air_goal_z is None:
        return ""
    return "air" if goal[2] > spec.air_goal_z else "table"
