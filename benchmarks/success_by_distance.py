"""Evaluation success of a saved policy by how far the goal starts from the achieved goal
(straight line), for mazes and other tasks where far goals are the hard ones.

Plays ``--episodes`` deterministic episodes on evaluation seeds of its own (the run's seed +
``--seed-offset``, so as not to repeat the run's fixed evaluation episodes) and prints one JSON
line: overall success and, per distance bin, success and episode count. Of the failed
episodes it also says how they ended: the fraction that were stuck (the achieved goal moved
less than ``--stuck`` metres in the last 100 steps), the median closest approach to the goal
and the median path length; and the median length of the successful episodes. ``--top-noise``
plays with ``agent.test_top_noise`` set (a stochastic top level at evaluation).

    python benchmarks/success_by_distance.py runs/maze/checkpoints/ckpt_000000500000.pt \\
        --episodes 100 --bins 0 2 4 6 8 20
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Optional

import numpy as np

from hacray import seeding
from hacray.algo.rollout import run_episode
from hacray.errors import run_script
from hacray.evaluate import load_policy


class Tracked:
    """A GoalEnv that keeps the achieved goal of every step of its current episode."""

    def __init__(self, env):
        self.env, self.path = env, []

    def reset(self, seed):
        out = self.env.reset(seed)
        self.path = [out[1]]
        return out

    def step(self, action):
        out = self.env.step(action)
        self.path.append(out[1])
        return out

    def __getattr__(self, name):
        return getattr(self.env, name)


def ending(path: np.ndarray, goal: np.ndarray, last: int = 100) -> tuple[float, float, float]:
    """How far the achieved goal moved in its last ``last`` steps (the box's diagonal), its
    closest approach to the goal and its path length."""
    tail = path[-last:]
    return (float(np.linalg.norm(tail.max(axis=0) - tail.min(axis=0))),
            float(np.linalg.norm(path - goal, axis=1).min()),
            float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()))


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a checkpoint, or a run directory (its best)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--bins", type=float, nargs="+", default=[0, 2, 4, 6, 8, 20])
    parser.add_argument("--top-noise", type=float, default=None,
                        help="play with agent.test_top_noise set to this (default: the run's)")
    parser.add_argument("--stuck", type=float, default=0.5,
                        help="metres moved in the last 100 steps below which a failure was stuck")
    parser.add_argument("--seed-offset", type=int, default=1000)
    args = parser.parse_args(argv)
    loaded = load_policy(args.target)
    config = loaded.config
    agent = config.agent if args.top_noise is None else dataclasses.replace(
        config.agent, test_top_noise=args.top_noise)
    rows, endings, lengths = [], [], []
    env = Tracked(loaded.env)
    try:
        for seed in seeding.eval_env_seeds(config.train.seed + args.seed_offset, args.episodes):
            _, achieved, goal = loaded.env.reset(seed)
            stats = run_episode(env, loaded.policy, agent, seed,
                                np.random.default_rng(0), explore=False).stats
            rows.append((float(np.linalg.norm(achieved - goal)), stats.success))
            if stats.success:
                lengths.append(stats.env_steps)
            else:
                endings.append(ending(np.array(env.path), goal))
    finally:
        loaded.env.close()
    distance, success = np.array(rows).T
    report: dict = {"checkpoint": str(loaded.path), "env_steps": loaded.env_steps_trained,
                    "episodes": args.episodes, "test_top_noise": agent.test_top_noise,
                    "success": round(float(success.mean()), 3)}
    for low, high in zip(args.bins, args.bins[1:]):
        inside = (distance >= low) & (distance < high)
        report[f"{low:g}-{high:g}"] = {"success": round(float(success[inside].mean()), 3)
                                       if inside.any() else None,
                                       "episodes": int(inside.sum())}
    moved, closest, path = np.array(endings).T if endings else ([], [], [])
    report["failures"] = {"stuck": round(float(np.mean(np.array(moved) < args.stuck)), 3)
                          if endings else None,
                          "closest_median": round(float(np.median(closest)), 2) if endings
                          else None,
                          "path_median": round(float(np.median(path)), 2) if endings else None}
    report["success_steps_median"] = float(np.median(lengths)) if lengths else None
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run_script(main, "benchmarks/success_by_distance.py")
