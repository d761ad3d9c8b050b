"""Evaluation success of a saved Fetch object policy, split by where the goal lies: on the table
(reachable by pushing the object) or in the air (FetchPickAndPlace draws half its goals above
the table: those need a grasp and a lift).

A PickAndPlace run whose success sits near 0.5 has usually learnt the table goals only; this
says so in one line. Deterministic episodes on the run's fixed evaluation seeds, as
``hacray evaluate``:

    python benchmarks/goal_split.py RUN_DIR_OR_CHECKPOINT --episodes 200
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from hacray import seeding
from hacray.algo.rollout import run_episode
from hacray.checkpoint import CheckpointError
from hacray.evaluate import load_policy

ABOVE_TABLE_M = 1e-4  # a goal this far above the object's resting height is "in the air"


def split(target: Path, episodes: int) -> dict:
    loaded = load_policy(target)
    env, policy, config = loaded.env, loaded.policy, loaded.config
    table_z = getattr(getattr(getattr(env, "env", None), "unwrapped", None), "height_offset",
                      None)  # the object's resting height: Fetch object tasks only
    if table_z is None:
        env.close()
        raise CheckpointError(f"{config.env.id} has no object on a table: the split needs "
                              "FetchPickAndPlace (or Push/Slide)")
    rng = seeding.rng(config.train.seed, "eval")  # unused without exploration
    in_air, success = [], []
    for seed in seeding.eval_env_seeds(config.train.seed, episodes):
        episode = run_episode(env, policy, config.agent, seed, rng, explore=False)
        goal = episode.segments[-1][0].goal  # the top level pursues the env's goal
        in_air.append(bool(goal[2] > table_z + ABOVE_TABLE_M))
        success.append(episode.stats.success)
    env.close()
    air, ok = np.array(in_air), np.array(success)
    rate = lambda mask: round(float(ok[mask].mean()), 3) if mask.any() else None
    return {"checkpoint": str(loaded.path), "env_steps_trained": loaded.env_steps_trained,
            "episodes": episodes, "success": rate(np.ones_like(air)),
            "table_goals": int((~air).sum()), "table_success": rate(~air),
            "air_goals": int(air.sum()), "air_success": rate(air)}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a run directory or a checkpoint file")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)
    if args.episodes < 1:
        print("benchmarks/goal_split.py: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        print(json.dumps(split(args.target, args.episodes)))
    except (CheckpointError, OSError) as error:
        print(f"benchmarks/goal_split.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
