"""Bring your own env: a minimal goal-conditioned gymnasium env that hacray trains as it is.

What hacray needs of an env (the gymnasium-robotics GoalEnv API):
- ``observation_space``: a Dict of flat Boxes ``observation``, ``achieved_goal``,
  ``desired_goal``; ``action_space``: a bounded Box.
- ``reset(seed=...)`` and ``step(action)`` as in gymnasium; ``info["is_success"]`` on every step
  (else hacray compares the achieved goal with the desired one itself).
- ``distance_threshold`` (or ``env.goal_threshold`` in the config): hindsight relabelling
  rewards a goal reached within it.
- An episode length: the env's own time limit (gym.make's TimeLimit) or ``env.max_episode_steps``
  in the config, as here.
- Optional: ``render_mode="rgb_array"`` for evaluation videos; bounded observation boxes give a
  default subgoal space (else set ``env.subgoal_indices/_low/_high``).

Here a point moves on the plane [-1, 1]^2 by up to 0.15 per step, towards a random goal.
Train it from the repository root: ``hacray train examples/point_goal.yaml``.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointGoalEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    distance_threshold = 0.1

    def __init__(self, step_size: float = 0.15, render_mode: str | None = None):
        box = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Dict(
            {"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.step_size, self.render_mode = step_size, render_mode
        self.position = np.zeros(2, np.float32)
        self.goal = np.zeros(2, np.float32)

    def _observe(self) -> dict[str, np.ndarray]:
        return {"observation": self.position.copy(), "achieved_goal": self.position.copy(),
                "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # seeds self.np_random
        self.position = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._observe(), {"is_success": self._reached()}

    def step(self, action: np.ndarray):
        move = self.step_size * np.clip(action, -1.0, 1.0)
        self.position = np.clip(self.position + move, -1.0, 1.0).astype(np.float32)
        success = self._reached()
        # sparse reward as in gymnasium-robotics: 0 when reached, else -1 (hacray recomputes it)
        return self._observe(), float(success) - 1.0, False, False, {"is_success": success}

    def _reached(self) -> bool:
        return bool(np.linalg.norm(self.position - self.goal) < self.distance_threshold)

    def render(self) -> np.ndarray | None:
        """A 128x128 top view: goal in red, point in black."""
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((128, 128, 3), 255, np.uint8)
        for (x, y), colour, radius in ((self.goal, (220, 30, 30), 6),
                                       (self.position, (0, 0, 0), 3)):
            col, row = int((x + 1) * 63.5), int((1 - y) * 63.5)
            frame[max(row - radius, 0):row + radius, max(col - radius, 0):col + radius] = colour
        return frame


def make(step_size: float = 0.15, render_mode: str | None = None) -> PointGoalEnv:
    """The factory that ``env.entry_point: examples.point_goal_env:make`` names; hacray passes
    ``env.kwargs`` as keyword arguments, and ``render_mode`` when it records videos."""
    return PointGoalEnv(step_size=step_size, render_mode=render_mode)
