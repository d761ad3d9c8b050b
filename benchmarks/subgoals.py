"""Where a saved hierarchy's level K sends level K-1, and whether level K-1 gets there.

Plays a saved 2- or 3-level policy for ``--episodes`` deterministic evaluation episodes (seeds
of its own: the run's seed + ``--seed-offset``) and counts, over every subgoal level 1 gave level
0: the fraction at the bound of its box (a coordinate within 2 % of the box's width of either
end; ``--coords`` picks which coordinates count), how far each subgoal was from where level 0
stood when it got it, how far level 0 then moved, how many it reached (subgoals cut off by
the episode's end left out, as the training metrics do), the mean env steps an attempt took
and the fraction that took level 0's whole horizon. A subgoal equal to level 0's start is
``agent.hold_at_goal``'s stay, not a proposal, and is left out. Issue 19 used it to find why
a 2-level Push seed stalled: its top level proposed box corners that 5 steps cannot reach.
``--level K`` (default 1) counts level K's subgoals to level K-1 instead (a 3-level policy's
top level: ``--level 2``); "steps" are then level K-1's actions, each attempt's subgoals.

With ``--q-bins`` (2 levels only) it also asks the top level's critic, at each episode's first
state, for the value of ``--candidates`` uniform random subgoals, and reports the mean by the
subgoal's distance from level 0's position (bins' edges given): whether the critic rates far
subgoals above near ones, as a top level paid -1 per attempt comes to (agent.top_time_aware),
and how saturated the top actor's tanh is at those states.

    python benchmarks/subgoals.py runs/push/checkpoints/ckpt_000000160000.pt --episodes 20 \
        --coords 0 1 [--trace 2] [--q-bins 0 0.1 0.2 0.3 1]

Prints one JSON line (and with ``--trace K`` each decision of the first K episodes before it).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hacray import seeding
from hacray.algo.hierarchy import LevelSpace
from hacray.algo.rollout import run_episode
from hacray.errors import run_script
from hacray.evaluate import load_policy
from hacray.goals import distance_reached
from hacray.types import Segment

EDGE = 0.02  # of the box's width: "at the bound"


def subgoal_box(proposer: LevelSpace) -> tuple[np.ndarray, np.ndarray]:
    """The box the subgoals of level ``proposer`` lie in (absolute, or clipped offsets)."""
    if proposer.relative:
        return proposer.subgoal_low, proposer.subgoal_high
    dim = proposer.subgoal_dim  # not the env action values it may set beside (direct_dim)
    return proposer.act_low[:dim], proposer.act_high[:dim]


def proposals(segments: tuple[Segment, ...], dim: int, horizon: int,
              threshold: float, scale: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Level 0's segments of one episode as the subgoals it got: start, subgoal, end, reached.

    The env-goal context a level 0 may also see (``agent.lower_sees_goal``) trails its goal
    space and is cut off (first ``dim`` coordinates); stays and cut-off attempts are dropped.
    ``scale``: the level's coordinate weights (env.subgoal_scale)."""
    reached = distance_reached(threshold, None if scale is None else scale[:dim])
    rows = []
    for k, seg in enumerate(segments):
        start, end, goal = seg.achieved[0][:dim], seg.achieved[-1][:dim], seg.goal[:dim]
        if np.allclose(goal, start, atol=1e-6):
            continue  # hold_at_goal's stay
        hit = bool(reached(end, goal))
        if not hit and k == len(segments) - 1 and len(seg.actions) < horizon:
            continue  # the episode ended first
        rows.append({"start": start, "subgoal": goal, "end": end, "reached": hit,
                     "steps": len(seg.actions)})
    return rows


def summarise(rows: list[dict[str, Any]], low: np.ndarray, high: np.ndarray,
              coords: list[int], horizon: int) -> dict[str, Any]:
    if not rows:
        return {"subgoals": 0}
    goals = np.array([r["subgoal"] for r in rows])
    edge = EDGE * (high - low)
    bound = (goals - low < edge) | (high - goals < edge)
    starts, ends = np.array([r["start"] for r in rows]), np.array([r["end"] for r in rows])
    return {"subgoals": len(rows),
            "at_bound": round(float(np.mean(bound[:, coords].any(axis=1))), 3),
            "at_bound_per_coordinate": [round(float(f), 3) for f in bound.mean(axis=0)],
            "distance_median": round(float(np.median(np.linalg.norm(goals - starts, axis=1))), 3),
            "moved_median": round(float(np.median(np.linalg.norm(ends - starts, axis=1))), 3),
            "reached": round(float(np.mean([r["reached"] for r in rows])), 3),
            "steps_mean": round(float(np.mean([r["steps"] for r in rows])), 2),
            "full_horizon": round(float(np.mean([r["steps"] == horizon for r in rows])), 3)}


def q_by_distance(loaded: Any, seeds: list[int], dim: int, edges: list[float],
                  candidates: int, rng: np.random.Generator) -> dict[str, Any]:
    """The top (level 1) critic's mean Q over random subgoals at each episode's first state,
    by the subgoal's distance from where level 0 stands (means of the episodes' means); and
    the top actor's output there before its tanh: the median |z| per coordinate and the
    median tanh'(z) (near 0: saturated, so no gradient moves that coordinate)."""
    import torch

    from hacray import checkpoint
    from hacray.blueprint import Blueprint
    learner = Blueprint.of(loaded.config, loaded.env.spec).learner()
    learner.load_state_dict(checkpoint.read(loaded.path).learner)
    critic = learner.levels[1].critic.to("cpu").eval()
    actor = learner.levels[1].actor.to("cpu").eval()
    top, below = loaded.policy.spaces[1], loaded.policy.spaces[0]
    means: list[list[float]] = [[] for _ in edges[1:]]
    preact = []
    for seed in seeds:
        obs, achieved, goal = loaded.env.reset(seed)
        start = below.achieved(obs, achieved)[:dim]
        units = rng.uniform(-1.0, 1.0, (candidates, top.act_dim))
        subgoals = np.array([top.subgoal(a, start) for a in top.unscale_action(units)])
        distance = np.linalg.norm(subgoals - start, axis=1)
        inputs = loaded.policy.input_norms[1](np.concatenate([obs, goal]))
        with torch.no_grad():
            rows = torch.as_tensor(np.hstack([np.repeat(inputs[None], candidates, axis=0),
                                              units]), dtype=torch.float32)
            q = critic.net(rows).squeeze(-1).numpy()
            preact.append(actor.net(torch.as_tensor(inputs[None], dtype=torch.float32))[0].numpy())
        for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
            inside = (distance >= lo) & (distance < hi)
            if inside.any():
                means[i].append(float(q[inside].mean()))
    z = np.abs(np.array(preact))
    return {"top_q_by_distance": {f"{lo:g}-{hi:g}": round(float(np.mean(m)), 3) if m else None
                                  for lo, hi, m in zip(edges, edges[1:], means)},
            "top_preact_abs_median": [round(float(v), 2) for v in np.median(z, axis=0)],
            "top_tanh_grad_median": [round(float(v), 4)
                                     for v in np.median(1.0 - np.tanh(z) ** 2, axis=0)]}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="a checkpoint, or a run directory (its best)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--coords", type=int, nargs="+",
                        help="subgoal coordinates that count for at_bound (default: all)")
    parser.add_argument("--trace", type=int, default=0, help="print each decision of K episodes")
    parser.add_argument("--seed-offset", type=int, default=1000)
    parser.add_argument("--level", type=int, default=1,
                        help="count the subgoals this level gives the one below (default 1)")
    parser.add_argument("--q-bins", type=float, nargs="+",
                        help="distance bins' edges for the top critic's Q (2 levels)")
    parser.add_argument("--candidates", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.q_bins is not None and (len(args.q_bins) < 2 or sorted(args.q_bins) != args.q_bins):
        parser.error("--q-bins needs at least two increasing edges")
    loaded = load_policy(args.target)
    spaces = loaded.policy.spaces
    if len(spaces) < 2:
        loaded.env.close()
        parser.exit(2, f"subgoals.py: error: {loaded.path} is a flat policy: no subgoals\n")
    if not 1 <= args.level < len(spaces):
        loaded.env.close()
        parser.exit(2, f"subgoals.py: error: --level {args.level}: {loaded.path} has levels "
                       f"0-{len(spaces) - 1}, and level 0 proposes no subgoals\n")
    low, high = subgoal_box(spaces[args.level])
    below = spaces[args.level - 1]
    dim = len(low)
    coords = args.coords if args.coords is not None else list(range(dim))
    if not all(0 <= c < dim for c in coords):
        loaded.env.close()
        parser.exit(2, f"subgoals.py: error: --coords {coords} outside the {dim} subgoal "
                       "coordinates\n")
    if args.q_bins is not None and len(spaces) != 2:
        loaded.env.close()
        parser.exit(2, f"subgoals.py: error: --q-bins reads a 2-level policy's top critic; "
                       f"{loaded.path} has {len(spaces)} levels\n")
    seeds = seeding.eval_env_seeds(loaded.config.train.seed + args.seed_offset, args.episodes)
    rows, success = [], []
    try:
        for k, seed in enumerate(seeds):
            episode = run_episode(loaded.env, loaded.policy, loaded.config.agent, seed,
                                  np.random.default_rng(0), explore=False)
            success.append(episode.stats.success)
            mine = proposals(episode.segments[args.level - 1], dim, below.horizon,
                             below.threshold, below.scale)
            rows += mine
            if k < args.trace:
                print(f"episode {k} success {episode.stats.success}")
                for r in mine:
                    print(f"  from {np.round(r['start'], 3)} subgoal {np.round(r['subgoal'], 3)}"
                          f" end {np.round(r['end'], 3)} reached {r['reached']}")
        q = None if args.q_bins is None else q_by_distance(
            loaded, seeds, dim, args.q_bins, args.candidates, np.random.default_rng(0))
    finally:
        loaded.env.close()
    report = {"checkpoint": str(loaded.path), "env_steps": loaded.env_steps_trained,
              "episodes": args.episodes, "level": args.level,
              "success": float(np.mean(success)), "coords": coords,
              **summarise(rows, low, high, coords, below.horizon)}
    if q is not None:
        report.update(q)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run_script(main, "benchmarks/subgoals.py")
