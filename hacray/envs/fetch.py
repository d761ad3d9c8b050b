"""gymnasium-robotics Fetch tasks (-v4) behind the GoalEnv interface, with default subgoal spaces.

Subgoal spaces are projections of the 25-dim Fetch observation (10-dim for Reach): the gripper
position ``obs[0:3]`` and, for object tasks, the object position ``obs[3:6]``. Bounds keep
subgoals inside the workspace the task's goals are drawn from (gripper start +-0.15 m for
Reach/Push/PickAndPlace; Slide's goals lie 0.1-0.7 m beyond the gripper along x).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from hacray.config import ConfigError, EnvConfig
from hacray.envs import EnvSpec, resolve_spec

DEFAULT_SUBGOALS: dict[str, tuple[list[int], list[float], list[float]]] = {
    "FetchReach": ([0, 1, 2], [1.14, 0.55, 0.38], [1.55, 0.95, 0.74]),
    "FetchPush": ([0, 1, 2, 3, 4, 5], [1.10, 0.50, 0.40, 1.10, 0.50, 0.40],
                  [1.60, 1.00, 0.60, 1.60, 1.00, 0.50]),
    "FetchPickAndPlace": ([0, 1, 2, 3, 4, 5], [1.10, 0.50, 0.40, 1.10, 0.50, 0.40],
                          [1.60, 1.00, 0.90, 1.60, 1.00, 0.90]),
    "FetchSlide": ([0, 1, 2, 3, 4, 5], [0.70, 0.35, 0.40, 0.70, 0.35, 0.40],
                   [1.90, 1.15, 0.60, 1.90, 1.15, 0.50]),
}


def _gym():
    import gymnasium as gym
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics  # prints a notice about Adroit envs on import
    gym.register_envs(gymnasium_robotics)
    return gym


class FetchEnv:
    """One gymnasium Fetch env; observations and goals come back as float32."""

    def __init__(self, config: EnvConfig):
        gym = _gym()
        if config.id not in gym.registry:
            raise ConfigError(f"config: env.id {config.id!r} is not a registered gymnasium env")
        kwargs = {"max_episode_steps": config.max_episode_steps} if config.max_episode_steps else {}
        self.env = gym.make(config.id, **kwargs)
        space = self.env.observation_space
        keys = ("observation", "achieved_goal", "desired_goal")
        if not all(k in getattr(space, "spaces", {}) for k in keys):
            self.env.close()
            raise ConfigError(f"config: env.id {config.id!r} is not goal-conditioned "
                              "(needs observation, achieved_goal and desired_goal)")
        family = config.id.split("-")[0].replace("Dense", "")
        if family not in DEFAULT_SUBGOALS and config.subgoal_indices is None:
            self.env.close()
            raise ConfigError(f"config: env.id {config.id!r} has no default subgoal space; "
                              "set env.subgoal_indices, env.subgoal_low and env.subgoal_high")
        self.spec: EnvSpec = resolve_spec(
            config, id=config.id, obs_dim=space["observation"].shape[0],
            goal_dim=space["desired_goal"].shape[0], action_dim=self.env.action_space.shape[0],
            max_episode_steps=self.env.spec.max_episode_steps,
            goal_threshold=float(getattr(self.env.unwrapped, "distance_threshold", 0.05)),
            default_subgoal=DEFAULT_SUBGOALS.get(family, ([], [], [])))

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, _ = self.env.reset(seed=int(seed))
        return _unpack(obs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        obs, _, terminated, truncated, info = self.env.step(action)
        o, achieved, _ = _unpack(obs)
        return o, achieved, bool(info.get("is_success", 0.0)), bool(terminated or truncated)

    def close(self) -> None:
        self.env.close()


def _unpack(obs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (obs["observation"].astype(np.float32), obs["achieved_goal"].astype(np.float32),
            obs["desired_goal"].astype(np.float32))
