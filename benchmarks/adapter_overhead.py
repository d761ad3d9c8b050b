"""The generic env adapter's cost: env steps/s through hacray's GymGoalEnv against the bare
gymnasium env (``gym.make(id)``, as a user would step it), in alternating turns in one process.

Both step the same task with the same pre-drawn random actions, resetting at each episode's end;
turns alternate who goes first, so the machine's drift falls on both alike. Prints one JSON line:
env steps/s of each and adapter / bare (the issue's bar: >= 0.9).

    python benchmarks/adapter_overhead.py --task PointMaze_Large-v3 --turns 20 --seconds 0.5
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Optional

import numpy as np

from hacray.config import load_config
from hacray.envs import make_env
from hacray.envs.gym_goal import gym

ACTIONS = 4096  # pre-drawn, cycled: drawing them is not what is measured


def bare_stepper(task: str, actions: np.ndarray) -> Callable[[float], int]:
    """Step ``gym.make(task)`` for about ``seconds``; returns the env steps taken."""
    env = gym().make(task)
    env.reset(seed=0)
    count = [0]

    def run(seconds: float) -> int:
        steps, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(64):
                _, _, terminated, truncated, _ = env.step(actions[count[0] % ACTIONS])
                count[0] += 1
                steps += 1
                if terminated or truncated:
                    env.reset()
        return steps
    return run


def adapter_stepper(task: str, actions: np.ndarray) -> Callable[[float], int]:
    """The same through hacray's adapter (what a rollout worker steps)."""
    env = make_env(load_config(None, (f"env.id={task}", "env.goal_threshold=0.45")).env)
    env.reset(0)
    count = [0]

    def run(seconds: float) -> int:
        steps, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(64):
                ended = env.step(actions[count[0] % ACTIONS])[3]
                count[0] += 1
                steps += 1
                if ended:
                    env.reset(count[0])
        return steps
    return run


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="PointMaze_Large-v3")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5, help="per side per turn")
    args = parser.parse_args(argv)
    probe = gym().make(args.task)
    actions = np.random.default_rng(0).uniform(
        probe.action_space.low, probe.action_space.high,
        (ACTIONS, probe.action_space.shape[0])).astype(np.float32)
    probe.close()
    sides = {"bare": bare_stepper(args.task, actions),
             "adapter": adapter_stepper(args.task, actions)}
    ratios, totals = [], {name: [0, 0.0] for name in sides}
    for turn in range(args.turns):
        rates = {}
        for name in (list(sides) if turn % 2 else list(sides)[::-1]):
            start = time.perf_counter()
            steps = sides[name](args.seconds)
            elapsed = time.perf_counter() - start
            totals[name][0] += steps
            totals[name][1] += elapsed
            rates[name] = steps / elapsed
        ratios.append(rates["adapter"] / rates["bare"])
    report = {"task": args.task, "turns": args.turns, "seconds": args.seconds,
              "bare_env_steps_per_s": round(totals["bare"][0] / totals["bare"][1], 1),
              "adapter_env_steps_per_s": round(totals["adapter"][0] / totals["adapter"][1], 1),
              "adapter_over_bare_median": round(statistics.median(ratios), 4),
              "adapter_over_bare_min": round(min(ratios), 4)}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
