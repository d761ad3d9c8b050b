"""What a run's replay buffer holds of a lifted object: the share of each level's rows whose next
state has the object above a height, of rows whose goal is above it (an air goal), and how many
of those air-goal rows met their goal (reward 0), oldest to newest (issue 19: does the hierarchy
see lifted objects as often as flat does, to learn PickAndPlace's air goals from?). A buffer
with replay.lift_priority's weights also reports the lifted share of what its sampling draws.

Reads the newest replay snapshot of a run directory (``checkpoints/replay_*.pt``, written with
each checkpoint) or a snapshot file. Defaults are Fetch's: the object's height is observation
coordinate 5, the goal's is goal coordinate 2 (the goal columns are the top level's alone: its
goals are the env's, the levels' below are subgoals), and the object rests at 0.425 m, so
0.45 m is 2.5 cm up.

    python benchmarks/replay_lift.py runs/pnp --fifths
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from hacray.checkpoint import REPLAY_PATTERN, checkpoint_dir


def snapshot_path(path: Path) -> Path:
    """The snapshot file itself, or the newest one of a run directory."""
    if path.is_file():
        return path
    folder = checkpoint_dir(path)
    found = sorted(p for p in folder.glob("replay_*.pt") if REPLAY_PATTERN.match(p.name)) \
        if folder.is_dir() else []
    if not found:
        raise SystemExit(f"replay_lift: no replay snapshot in {path} (a run directory's "
                         f"checkpoints/replay_*.pt or a snapshot file)")
    return found[-1]


def oldest_first(buffer: dict[str, Any]) -> np.ndarray:
    """Row indices of a ring buffer's state, oldest first."""
    size, cursor = int(buffer["size"]), int(buffer["cursor"])
    if size < int(buffer["capacity"]):
        return np.arange(size)
    return np.r_[cursor:size, 0:cursor]


def lift_stats(next_obs: np.ndarray, goal: np.ndarray, reward: np.ndarray, obs_index: int,
               goal_index: Optional[int], above: float,
               weight: Optional[np.ndarray] = None) -> dict[str, float]:
    """Shares of rows with the object above ``above`` after the step, with the goal above it,
    and of those air-goal rows the share that met their goal (reward 0); with ``weight``
    (replay.lift_priority's), also the lifted share of what sampling draws."""
    up = next_obs[:, obs_index] >= above
    out = {"rows": int(len(reward)), "lifted": round(float(np.mean(up)), 5)}
    if weight is not None:
        out["lifted_sampled"] = round(float(np.sum(weight * up) / np.sum(weight)), 5)
        out["weight_mean"] = round(float(np.mean(weight)), 4)
    if goal_index is not None:
        air = goal[:, goal_index] >= above
        out["air_goal"] = round(float(np.mean(air)), 4)
        out["met_of_air_goal"] = round(float(np.mean(reward[air] == 0)), 4) if air.any() else 0.0
    return out


def level_report(buffer: dict[str, Any], obs_index: int, goal_index: Optional[int],
                 above: float, fifths: bool) -> dict[str, Any]:
    """One level's shares; ``goal_index`` None: no goal columns (a subgoal level)."""
    data = {k: np.asarray(v) for k, v in buffer["data"].items()}
    order = oldest_first(buffer)
    index = goal_index
    parts = np.array_split(order, 5) if fifths else [order]
    weight = data.get("weight")

    def stats_of(rows: np.ndarray) -> dict[str, float]:
        return lift_stats(data["next_obs"][rows], data["goal"][rows], data["reward"][rows],
                          obs_index, index, above, None if weight is None else weight[rows])

    stats = [stats_of(p) for p in parts if len(p)]
    return {"all": stats_of(order),
            **({"fifths": stats} if fifths else {})}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run directory or a replay snapshot file")
    parser.add_argument("--obs-index", type=int, default=5, help="the object's height in obs")
    parser.add_argument("--goal-index", type=int, default=2, help="the goal's height")
    parser.add_argument("--above", type=float, default=0.45, help="metres: lifted / air goal")
    parser.add_argument("--fifths", action="store_true",
                        help="also report each fifth of the rows, oldest to newest")
    args = parser.parse_args(argv)
    path = snapshot_path(args.path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    width = state["buffers"][0]["data"]["next_obs"].shape[1]
    if not 0 <= args.obs_index < width:
        raise SystemExit(f"replay_lift: --obs-index {args.obs_index} is outside the "
                         f"observation's {width} coordinates")
    top = len(state["buffers"]) - 1
    report = {"snapshot": path.name, "above": args.above,
              "levels": [level_report(b, args.obs_index, args.goal_index if i == top else None,
                                      args.above, args.fifths)
                         for i, b in enumerate(state["buffers"])]}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
