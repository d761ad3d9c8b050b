"""A tiny goal-conditioned point mass in pure numpy, for fast tests and learning checks.

The mass lives in [-1, 1]^2 and moves by ``STEP * action`` per step (action in [-1, 1]^2);
the goal is a point in the same square, reached within 0.1. Episodes last 30 steps.
"""
from __future__ import annotations

import numpy as np

from hacray.config import EnvConfig
from hacray.envs import EnvSpec, resolve_spec


class PointMassEnv:
    ID = "PointMass-v0"
    STEP = 0.15

    def __init__(self, config: EnvConfig):
        self.spec: EnvSpec = resolve_spec(
            config, id=self.ID, obs_dim=2, goal_dim=2, action_dim=2, max_episode_steps=30,
            goal_threshold=0.1, default_subgoal=([0, 1], [-1.0, -1.0], [1.0, 1.0]))
        self.pos = np.zeros(2, np.float32)
        self.goal = np.zeros(2, np.float32)
        self.t = 0

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        self.pos = rng.uniform(-1, 1, 2).astype(np.float32)
        self.goal = rng.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self.pos.copy(), self.pos.copy(), self.goal.copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        move = self.STEP * np.clip(action, -1.0, 1.0)
        self.pos = np.clip(self.pos + move, -1.0, 1.0).astype(np.float32)
        self.t += 1
        success = bool(np.linalg.norm(self.pos - self.goal) < self.spec.goal_threshold)
        return self.pos.copy(), self.pos.copy(), success, self.t >= self.spec.max_episode_steps

    def close(self) -> None:
        pass
