"""How far can FetchSlide's puck be sent? A scripted strike, no learning: the gripper goes above
a point ``--back`` metres behind the puck on the line from the puck to the goal, down to the
puck's height, then drives at full speed along that line for ``--steps`` env steps and holds
still for the rest of the episode. Its reach bounds what any single-strike policy can do: a
goal farther than the puck slides from the arm's top speed is out of a strike's reach
(``object_failures.py``'s ``outcomes_by_goal_distance`` shows where a trained policy's misses
lie).

Plays ``--episodes`` episodes (seeds 0, 1, ...) per ``--steps`` and ``--back`` pair and prints
one JSON line per pair: the puck's travel along the line (median, 10th and 90th percentile,
metres), its top speed (median, metres per env step: Fetch's 0.04 s), the share of episodes
that reached the strike, the share whose puck left the table, the share of goals farther than
the median travel, and the strike's own success rate (an unaimed full-speed strike: not a
policy's ceiling).

    python benchmarks/slide_reach.py --episodes 50 --steps 1 2 8 --back 0.06 0.12
"""
from __future__ import annotations

import argparse
import json
from typing import Optional

import numpy as np

from hacray.config import EnvConfig
from hacray.envs import make_env
from hacray.errors import run_script
from object_failures import GRIPPER, OBJECT as PUCK, TABLE_TOP_Z  # Fetch's layout, table height

STEP = 0.05          # metres of gripper motion per unit action (Fetch's action scale)
NEAR = 0.01          # metres: close enough to a waypoint
ABOVE = 0.06         # metres above the puck's height on the way to the strike point


class Striker:
    """The scripted strike of one episode: ``act`` maps an observation to an action."""

    def __init__(self, puck: np.ndarray, goal: np.ndarray, back: float, steps: int):
        line = goal[:2] - puck[:2]
        self.direction = line / np.linalg.norm(line)
        self.start = np.r_[puck[:2] - back * self.direction, puck[2]]
        self.above = self.start + np.r_[0.0, 0.0, ABOVE]
        self.steps, self.struck, self.phase = steps, 0, "above"

    def act(self, obs: np.ndarray) -> np.ndarray:
        gripper = obs[GRIPPER]
        if self.phase == "above" and np.linalg.norm(self.above - gripper) < NEAR:
            self.phase = "down"
        if self.phase == "down" and np.linalg.norm(self.start - gripper) < NEAR:
            self.phase = "strike"
        if self.phase == "strike":
            move = np.zeros(3)
            if self.struck < self.steps:
                move, self.struck = np.r_[self.direction, 0.0], self.struck + 1
        else:
            waypoint = self.above if self.phase == "above" else self.start
            move = np.clip((waypoint - gripper) / STEP, -1.0, 1.0)
        return np.r_[move, 0.0].astype(np.float32)


def play(env, seed: int, back: float, steps: int) -> dict:
    obs, _, goal = env.reset(seed)
    puck0 = obs[PUCK].copy()
    striker = Striker(puck0, goal, back, steps)
    top, previous, success, done = 0.0, puck0, False, False
    while not done:
        obs, _, success, done = env.step(striker.act(obs))
        top = max(top, float(np.linalg.norm(obs[PUCK][:2] - previous[:2])))
        previous = obs[PUCK].copy()
    return {"travel": float((obs[PUCK] - puck0)[:2] @ striker.direction),
            "goal_distance": float(np.linalg.norm((goal - puck0)[:2])), "top_speed": top,
            "struck": striker.phase == "strike", "fell": bool(obs[PUCK][2] < TABLE_TOP_Z),
            "success": bool(success)}


def summary(rows: list[dict], back: float, steps: int) -> dict:
    travel = np.array([r["travel"] for r in rows])
    median = float(np.median(travel))
    return {"back": back, "steps": steps, "episodes": len(rows),
            "travel_median": round(median, 3),
            "travel_p10": round(float(np.quantile(travel, 0.1)), 3),
            "travel_p90": round(float(np.quantile(travel, 0.9)), 3),
            "top_speed_median": round(float(np.median([r["top_speed"] for r in rows])), 4),
            "struck": round(float(np.mean([r["struck"] for r in rows])), 3),
            "fell": round(float(np.mean([r["fell"] for r in rows])), 3),
            "goals_beyond_median_travel": round(float(np.mean(
                [r["goal_distance"] > median for r in rows])), 3),
            "success": round(float(np.mean([r["success"] for r in rows])), 3)}


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--back", type=float, nargs="+", default=[0.06, 0.12])
    parser.add_argument("--env", default="FetchSlide-v4")
    args = parser.parse_args(argv)
    if args.episodes < 1 or min(args.steps) < 1 or min(args.back) <= 0:
        parser.error("--episodes and --steps must be at least 1 and --back positive")
    env = make_env(EnvConfig(id=args.env))
    out = []
    try:
        for back in args.back:
            for steps in args.steps:
                rows = [play(env, seed, back, steps) for seed in range(args.episodes)]
                out.append(summary(rows, back, steps))
                print(json.dumps(out[-1]), flush=True)
    finally:
        env.close()
    return out


if __name__ == "__main__":
    run_script(main, "benchmarks/slide_reach.py")
