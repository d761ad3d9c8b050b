"""Evaluation success of a saved policy by how far the goal starts from the achieved goal
(straight line), for mazes and other tasks where far goals are the hard ones.

Plays ``--episodes`` deterministic episodes on evaluation seeds of its own (the run's seed +
``--seed-offset``, so as not to repeat the run's fixed evaluation episodes) and prints one JSON
line: overall success and, per distance bin, success and episode count.

    python benchmarks/success_by_distance.py runs/maze/checkpoints/ckpt_000000500000.pt \\
        --episodes 100 --bins 0 2 4 6 8 20
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np

from hacray import seeding
from hacray.algo.rollout import run_episode
from hacray.evaluate import load_policy


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a checkpoint, or a run directory (its best)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--bins", type=float, nargs="+", default=[0, 2, 4, 6, 8, 20])
    parser.add_argument("--seed-offset", type=int, default=1000)
    args = parser.parse_args(argv)
    loaded = load_policy(args.target)
    config = loaded.config
    rows = []
    try:
        for seed in seeding.eval_env_seeds(config.train.seed + args.seed_offset, args.episodes):
            _, achieved, goal = loaded.env.reset(seed)
            stats = run_episode(loaded.env, loaded.policy, config.agent, seed,
                                np.random.default_rng(0), explore=False).stats
            rows.append((float(np.linalg.norm(achieved - goal)), stats.success))
    finally:
        loaded.env.close()
    distance, success = np.array(rows).T
    report: dict = {"checkpoint": str(loaded.path), "env_steps": loaded.env_steps_trained,
                    "episodes": args.episodes, "success": round(float(success.mean()), 3)}
    for low, high in zip(args.bins, args.bins[1:]):
        inside = (distance >= low) & (distance < high)
        report[f"{low:g}-{high:g}"] = {"success": round(float(success[inside].mean()), 3)
                                       if inside.any() else None,
                                       "episodes": int(inside.sum())}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
