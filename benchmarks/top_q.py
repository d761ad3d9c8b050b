"""What a saved policy's top level expects: its critic's value at the first observation of each
evaluation episode, for the episode's goal and its own action, by goal kind (PickAndPlace: air
and table). ``--move INDEX=VALUE`` also values each start with that goal coordinate set to
VALUE (e.g. ``2=0.4247``: the same goal put down on PickAndPlace's table), to tell a top level
that finds one kind of goal hopeless (its value at the floor of a whole failed episode) from
one that has learned both (issue 19: why the hierarchy does not go for air goals).
``--grasped`` values each start with the object already in the gripper (env.grasp_start's
start): whether the top level values an air goal once the object is held.

    python benchmarks/top_q.py runs/pnp/checkpoints/ckpt_000001000000.pt --episodes 60 \\
        --move 2=0.4247
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from hacray import checkpoint, seeding
from hacray.blueprint import Blueprint
from hacray.envs import goal_kind, grasped_starts, make_env
from hacray.errors import run_script
from hacray.evaluate import config_of


def parse_move(text: Optional[str]) -> Optional[tuple[int, float]]:
    if text is None:
        return None
    index, _, value = text.partition("=")
    try:
        return int(index), float(value)
    except ValueError:
        raise SystemExit(f"top_q: --move must look like INDEX=VALUE, not {text!r}") from None


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a checkpoint, or a run directory (its best)")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--move", help="INDEX=VALUE: also value the goal with this coordinate set")
    parser.add_argument("--grasped", action="store_true",
                        help="value starts with the object in the gripper")
    parser.add_argument("--seed-offset", type=int, default=1000)
    args = parser.parse_args(argv)
    move = parse_move(args.move)
    path = checkpoint.resolve(args.target)
    state = checkpoint.read(path)
    config = config_of(path, state)
    env = make_env(config.env)
    try:
        if args.grasped:
            env = grasped_starts(env, "top_q")
        if move is not None and not 0 <= move[0] < env.spec.goal_dim:
            raise SystemExit(f"top_q: --move index {move[0]} is not a coordinate of "
                             f"{config.env.id}'s goal (0-{env.spec.goal_dim - 1})")
        blueprint = Blueprint.of(config, env.spec)
        learner = blueprint.learner()
        learner.load_state_dict(state.learner)
        top = learner.levels[-1]

        def value(obs: np.ndarray, goal: np.ndarray) -> float:
            o = torch.from_numpy(learner.obs_norm(obs[None].astype(np.float32)))
            g = torch.from_numpy(top.goal_norm(goal[None].astype(np.float32)))
            with torch.no_grad():
                return float(top.critic(o, g, top.actor(o, g)).item())

        values: dict[str, list[tuple[float, Optional[float]]]] = {}
        for seed in seeding.eval_env_seeds(config.train.seed + args.seed_offset, args.episodes):
            obs, _, goal = env.reset(seed)
            moved = None
            if move is not None:
                other = goal.copy()
                other[move[0]] = move[1]
                moved = value(obs, other)
            values.setdefault(goal_kind(env.spec, goal) or "all", []).append(
                (value(obs, goal), moved))
    finally:
        env.close()
    report: dict = {"checkpoint": str(path), "env_steps": state.counters.env_steps,
                    "episodes": args.episodes, "q_low": blueprint.spaces[-1].q_low,
                    "move": args.move, "grasped": args.grasped}
    for kind, pairs in sorted(values.items()):
        report[f"episodes_{kind}"] = len(pairs)
        report[f"q_{kind}"] = round(float(np.median([q for q, _ in pairs])), 3)
        if move is not None:
            report[f"q_{kind}_moved"] = round(float(np.median([m for _, m in pairs])), 3)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run_script(main, "benchmarks/top_q.py")
