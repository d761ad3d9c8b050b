"""How a saved Fetch object policy (Push, PickAndPlace, Slide) fails: each evaluation episode
is sorted into one outcome by what the object did, so that two policies at the same success
rate can be told apart by how they miss (issue 19: what caps the hierarchy).

Outcomes, first that applies: ``success``; ``untouched`` (the object never moved more than
``--touch`` metres from its start); ``fell`` (it ended below the table top); ``left_goal`` (it
was within ``--threshold`` of the goal at some step, and ended elsewhere: pushed through or
away); ``wrong_way`` (its net move points more than 45 degrees away from the goal); ``short`` /
``overshot`` (the right way, but it stopped before the goal / went past it). Also: the median step at which the object
first moved, the median final object-to-goal distance of the failures, and, of the
``left_goal`` episodes, the median number of steps the object spent at the goal (1-2: it slid
through; many: it was there and was pushed away). ``lifted``: the fraction of episodes whose
object rose more than ``--lift`` metres above its start (PickAndPlace: picked up); on a task
with goals in the air, success and untouched split by goal kind (``success_air``,
``success_table``, ``untouched_air``, ``untouched_table``; ``outcomes_by_goal``: every
outcome's fraction within each goal kind, ``lifted_by_goal`` the lifted fraction), and the
median of how near the gripper came to the object in an episode
(``gripper_object_closest_median_air`` / ``_table``).
``arrival_speed_*``: how fast the object was moving (metres per env step, Fetch's 0.04 s) on
the step it first came within ``--threshold`` of the goal, median over the episodes where it
stayed (``_stayed``: ended at the goal) and where it went on (``_left``: the ``left_goal``
misses), to tell a slide-through (arrived fast) from a later push away. Of the ``left_goal``
misses, how the object left the goal the last time: ``left_goal_carried`` (still in the gripper:
carried off), ``left_goal_dropped`` (let go of or slipped in the air, and sank), ``left_goal_pushed``
(knocked or slid off); ``left_goal_fingers_opened_median``: how far the fingers opened (metres of
width) on the step it left.

``end_distance_shares``: how far from the goal the object ended, in bands of the threshold
(below 0.6 of it, 0.6-1, 1-1.6, beyond: on Fetch < 3 cm, 3-5 cm, 5-8 cm, >= 8 cm), to tell a
policy that puts the object on the goal from one that parks it at the edge of the goal's
sphere; ``near_miss_toward_box_centre``: over the near misses (1-1.6 thresholds), the mean
cosine between the object's offset from the goal and the direction from the goal to the
centre of the subgoal box (``env.subgoal_low``/``_high``; hierarchies only), which is
positive when the misses fall short towards the box's middle. ``near_miss_offset_median``: the
object's offset from the goal (x, y, z; median over the near misses); with gripper subgoals,
``near_miss_subgoal_offset_median`` (the top level's last subgoal's offset from the goal) and
``near_miss_gripper_to_subgoal_median`` (how far the gripper ended from that subgoal): whether
the top level aims short, or the level below stops short of where it aims.

``outcomes_by_goal_distance``: every outcome's fraction, and the episode count ``n``, within
bands of how far the goal lay from the object's start in the table plane (``--goal-bands``,
metres); ``peak_object_speed_median``: per outcome, the median of the object's top speed in the
table plane (metres per env step). On Slide they tell a goal beyond the strikes the policy can
make (short, at the arm's top speed: ``benchmarks/slide_reach.py``) from an imprecise strike.

``lifted_steps``: the fraction of all env steps with the object that high (how much of a run's
experience shows it lifted). ``--explore`` plays the episodes as training does (exploration
noise, random actions, subgoal tests; its own seeded rng), to compare what a policy does when it
explores with what it does when it is evaluated. ``--agent KEY=VALUE`` (repeatable) plays with
that ``agent`` setting changed (e.g. ``level_random_eps=[0.0,0.2]``: would it drop fewer grasps
if its motor level took no random actions?).

``--level0-speed S`` (a counterfactual, 1 by default) multiplies every action of the lowest level
by S at play time: would this policy keep more objects on the goal if it moved slower?

Plays ``--episodes`` deterministic episodes on evaluation seeds of its own (the run's seed +
``--seed-offset``) and prints one JSON line. ``--hold`` plays them with ``agent.hold_at_goal``
on (the top level stops acting while the goal is reached), whatever the run trained with.

    python benchmarks/object_failures.py runs/push/checkpoints/ckpt_000000300016.pt --episodes 200
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from hacray import seeding
from hacray.config import config_from_dict, to_dict
from hacray.algo.rollout import run_episode
from hacray.envs import goal_kind, grasped_starts
from hacray.errors import ConfigError, run_script
from hacray.evaluate import load_policy

OBJECT_TASKS = ("FetchPush", "FetchPickAndPlace", "FetchSlide")
GRIPPER, OBJECT = slice(0, 3), slice(3, 6)   # Fetch observation layout
TO_OBJECT, FINGERS = slice(6, 9), slice(9, 11)
TABLE_TOP_Z = 0.4
HELD = 0.03        # metres between gripper and object centres that count as held
BANDS = (0.6, 1.0, 1.6)   # end-distance bands, in thresholds


def object_path(segments, part: slice = OBJECT) -> np.ndarray:
    """The object's (or with ``part=GRIPPER`` the gripper's) position at every env step of an
    episode, from its level-0 segments."""
    obs = np.vstack([segments[0].obs[:1], *(s.obs[1:] for s in segments)])
    return obs[:, part]


def closest_approach(gripper: np.ndarray, obj: np.ndarray) -> float:
    """How near the gripper came to the object in an episode (metres)."""
    return float(np.linalg.norm(gripper - obj, axis=1).min())


def outcome(path: np.ndarray, goal: np.ndarray, success: bool, touch: float,
            threshold: float = 0.05) -> str:
    """One episode's outcome from the object's path (table of cases in the module doc)."""
    if success:
        return "success"
    moved = np.linalg.norm(path - path[0], axis=1)
    if moved.max() <= touch:
        return "untouched"
    if path[-1, 2] < TABLE_TOP_Z:
        return "fell"
    if (np.linalg.norm(path - goal, axis=1) <= threshold).any():
        return "left_goal"
    wanted, went = goal - path[0], path[-1] - path[0]
    cosine = float(wanted @ went) / (np.linalg.norm(wanted) * np.linalg.norm(went) + 1e-9)
    if cosine < np.cos(np.pi / 4):
        return "wrong_way"
    return "short" if np.linalg.norm(went) < np.linalg.norm(wanted) else "overshot"


def arrival_speed(path: np.ndarray, goal: np.ndarray, threshold: float = 0.05) -> Optional[float]:
    """The object's speed (metres per env step) over the step on which it first came within
    ``threshold`` of the goal; None if it never did, or was there from the start."""
    inside = np.flatnonzero(np.linalg.norm(path - goal, axis=1) <= threshold)
    if not inside.size or inside[0] == 0:
        return None
    step = int(inside[0])
    return float(np.linalg.norm(path[step] - path[step - 1]))


class Slowed:
    """A policy whose lowest level's actions are multiplied by ``speed`` (the higher levels and
    everything else as the wrapped policy's)."""

    def __init__(self, policy, speed: float):
        self.policy, self.speed = policy, speed

    def __getattr__(self, name: str):
        return getattr(self.policy, name)

    def act(self, level: int, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        action = self.policy.act(level, obs, goal)
        return (action * np.float32(self.speed)).astype(np.float32) if level == 0 else action


def last_at_goal(obs: np.ndarray, goal: np.ndarray, threshold: float) -> Optional[int]:
    """The last step at which the object was at the goal before it left for good; None if it
    never left (never there, or there at the end)."""
    inside = np.flatnonzero(np.linalg.norm(obs[:, OBJECT] - goal, axis=1) <= threshold)
    if not inside.size or inside[-1] == len(obs) - 1:
        return None
    return int(inside[-1])


def how_left(obs: np.ndarray, goal: np.ndarray, threshold: float = 0.05,
             after: int = 3) -> Optional[str]:
    """How the object left the goal for the last time, from an episode's env observations:
    ``carried`` (the gripper held it, within ``HELD`` of its centre, from the step it left to
    ``after`` steps on: carried off), ``dropped`` (it was not held and sank more than 1 cm below
    where it was at the goal: let go of, or slipped, in the air), else ``pushed`` (knocked or
    slid off). None if it never left (never there, or there at the end)."""
    at = last_at_goal(obs, goal, threshold)
    if at is None:
        return None
    later = obs[at + 1:at + 2 + after]
    if (np.linalg.norm(later[:, TO_OBJECT], axis=1) < HELD).all():
        return "carried"
    if later[:, OBJECT][:, 2].min() < obs[at, OBJECT][2] - 0.01:
        return "dropped"
    return "pushed"


def finger_change(obs: np.ndarray, goal: np.ndarray, threshold: float = 0.05) -> Optional[float]:
    """How much the fingers opened (metres of width, + opens) from the object's last step at
    the goal to the step after it left; None if it never left."""
    at = last_at_goal(obs, goal, threshold)
    if at is None:
        return None
    return float(obs[at + 1, FINGERS].sum() - obs[at, FINGERS].sum())


def distance_shares(distances: list[float], threshold: float) -> dict[str, float]:
    """The share of ``distances`` in each band of ``BANDS`` thresholds (last: beyond them)."""
    edges = [0.0, *(b * threshold for b in BANDS), np.inf]
    names = [f"<{edges[1]:g}", *(f"{lo:g}-{hi:g}" for lo, hi in zip(edges[1:-2], edges[2:-1])),
             f">={edges[-2]:g}"]
    counts = np.histogram(distances, bins=edges)[0]
    return {name: round(float(c) / len(distances), 3) for name, c in zip(names, counts)}


def band_name(value: float, edges: list[float]) -> str:
    """The band of ``edges`` (ascending) that ``value`` lies in: ``<e0``, ``e0-e1``, ..., or
    ``>=en`` (a value on an edge: the band above)."""
    i = int(np.searchsorted(edges, value, side="right"))
    if i == 0:
        return f"<{edges[0]:g}"
    return f">={edges[-1]:g}" if i == len(edges) else f"{edges[i - 1]:g}-{edges[i]:g}"


def outcomes_by_band(values: list[float], kinds: list[str], edges: list[float],
                     names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per band of ``edges`` that holds an episode (in the bands' order): its count ``n`` and
    each outcome's share among its episodes."""
    bands: dict[str, list[str]] = {}
    for value, kind in sorted(zip(values, kinds)):
        bands.setdefault(band_name(value, edges), []).append(kind)
    return {band: {"n": len(ks), **fractions(ks, names)} for band, ks in bands.items()}


def peak_speed(path: np.ndarray) -> float:
    """The object's top speed in the table plane over an episode (metres per env step)."""
    return float(np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1).max())


def toward(offset: np.ndarray, goal: np.ndarray, centre: np.ndarray) -> float:
    """Cosine between ``offset`` (where the object ended, less the goal) and goal -> centre."""
    to_centre = centre - goal
    return float(offset @ to_centre / (np.linalg.norm(offset) * np.linalg.norm(to_centre)
                                       + 1e-9))


def fractions(kinds: list[str], names: tuple[str, ...]) -> dict[str, float]:
    """Each outcome's share of ``kinds`` (0 for one that never happened)."""
    return {name: round(kinds.count(name) / len(kinds), 3) for name in names}


def median_of(values: list) -> Optional[float | list[float]]:
    """The median (of each coordinate, for vectors) rounded to mm; None when there are none."""
    if not values:
        return None
    median = np.round(np.median(np.asarray(values, np.float64), axis=0), 3)
    return median.tolist() if median.ndim else float(median)


def lifted(path: np.ndarray, lift: float) -> bool:
    """Whether the object rose more than ``lift`` metres above where it started."""
    return bool(path[:, 2].max() - path[0, 2] > lift)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a checkpoint, or a run directory (its best)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--touch", type=float, default=0.01, help="metres that count as moved")
    parser.add_argument("--threshold", type=float, default=0.05, help="the task's success "
                        "distance (Fetch: 0.05 m)")
    parser.add_argument("--lift", type=float, default=0.02, help="metres above its start "
                        "that count as lifted")
    parser.add_argument("--hold", action="store_true", help="play with agent.hold_at_goal on")
    parser.add_argument("--explore", action="store_true", help="play with training's "
                        "exploration (noise, random actions, subgoal tests)")
    parser.add_argument("--agent", action="append", default=[], metavar="KEY=VALUE",
                        help="play with this agent setting changed (repeatable)")
    parser.add_argument("--grasped", action="store_true", help="start every episode with the "
                        "object in the gripper (env.grasp_start's start)")
    parser.add_argument("--goal-bands", type=float, nargs="+", default=[0.15, 0.3, 0.45, 0.6],
                        help="edges (metres) of the bands of the goal's distance from the "
                        "object's start that outcomes_by_goal_distance splits the episodes by")
    parser.add_argument("--seed-offset", type=int, default=1000)
    parser.add_argument("--level0-speed", type=float, default=1.0, help="multiply the lowest "
                        "level's actions by this at play time (a counterfactual; 1: as trained)")
    args = parser.parse_args(argv)
    if not 0 < args.level0_speed <= 1:
        parser.error(f"--level0-speed must be in (0, 1], not {args.level0_speed}")
    if any(b <= a for a, b in zip(args.goal_bands, args.goal_bands[1:])) or min(
            args.goal_bands) <= 0:
        parser.error(f"--goal-bands must be positive and ascending, not {args.goal_bands}")
    loaded = load_policy(args.target)
    config = loaded.config
    if not config.env.id.startswith(OBJECT_TASKS):
        loaded.env.close()
        sys.exit(f"object_failures: {config.env.id} is not a Fetch object task "
                 f"({', '.join(OBJECT_TASKS)})")
    agent = dataclasses.replace(config.agent, hold_at_goal=True) if args.hold else config.agent
    if args.agent:
        raw = to_dict(dataclasses.replace(config, agent=agent))
        for item in args.agent:
            key, _, value = item.partition("=")
            raw["agent"][key] = yaml.safe_load(value)
        try:
            agent = config_from_dict(raw).agent
        except ConfigError as err:
            loaded.env.close()
            sys.exit(f"object_failures: {err}")
    env = grasped_starts(loaded.env, "object_failures") if args.grasped else loaded.env
    policy = Slowed(loaded.policy, args.level0_speed) if args.level0_speed != 1 else loaded.policy
    outcomes, first_moves, misses, dwells, lifts, up_steps = [], [], [], [], [], []
    leaving: list[Optional[str]] = []
    opened: list[Optional[float]] = []
    rng = np.random.default_rng(0)
    arrivals: dict[str, list[float]] = {"stayed": [], "left": []}
    by_kind: dict[str, list[str]] = {}
    approach: dict[str, list[float]] = {}
    lifts_by_kind: dict[str, list[bool]] = {}
    ends: list[float] = []
    goal_distances: list[float] = []
    peaks: dict[str, list[float]] = {}
    towards: list[float] = []
    near: dict[str, list] = {"offset": [], "subgoal": [], "gripper": []}
    low, high = config.env.subgoal_low, config.env.subgoal_high
    gripper_box = (config.agent.levels > 1 and low is not None and high is not None
                   and list(config.env.subgoal_indices or [])[:3] == [0, 1, 2])
    centre = (np.add(low, high) / 2)[:3] if gripper_box else None
    try:
        for seed in seeding.eval_env_seeds(config.train.seed + args.seed_offset, args.episodes):
            _, _, goal = env.reset(seed)
            if not args.explore:
                rng = np.random.default_rng(0)
            episode = run_episode(env, policy, agent, seed, rng, explore=args.explore)
            path = object_path(episode.segments[0])
            up_steps.append((path[1:, 2] - path[0, 2] > args.lift).mean())
            kind = outcome(path, goal, bool(episode.stats.success), args.touch,
                           args.threshold)
            outcomes.append(kind)
            goal_distances.append(float(np.linalg.norm((goal - path[0])[:2])))
            peaks.setdefault(kind, []).append(peak_speed(path))
            lifts.append(lifted(path, args.lift))
            where = goal_kind(env.spec, goal)
            if where:
                by_kind.setdefault(where, []).append(kind)
                lifts_by_kind.setdefault(where, []).append(lifts[-1])
                approach.setdefault(where, []).append(
                    closest_approach(object_path(episode.segments[0], GRIPPER), path))
            moved = np.flatnonzero(np.linalg.norm(path - path[0], axis=1) > args.touch)
            if moved.size:
                first_moves.append(int(moved[0]))
            ends.append(float(np.linalg.norm(path[-1] - goal)))
            if args.threshold <= ends[-1] < BANDS[-1] * args.threshold:
                offset = path[-1] - goal
                near["offset"].append(offset)
                if centre is not None:
                    towards.append(toward(offset, goal, centre))
                    subgoal = episode.segments[-1][-1].actions[-1][:3]
                    near["subgoal"].append(subgoal - goal)
                    gripper = object_path(episode.segments[0], GRIPPER)[-1]
                    near["gripper"].append(float(np.linalg.norm(gripper - subgoal)))
            if kind != "success":
                misses.append(ends[-1])
            if kind == "left_goal":
                dwells.append(int((np.linalg.norm(path - goal, axis=1) <= args.threshold).sum()))
                obs = object_path(episode.segments[0], slice(None))
                leaving.append(how_left(obs, goal, args.threshold))
                opened.append(finger_change(obs, goal, args.threshold))
            speed = arrival_speed(path, goal, args.threshold)
            if speed is not None and kind in ("success", "left_goal"):
                arrivals["stayed" if kind == "success" else "left"].append(speed)
    finally:
        loaded.env.close()
    kinds = ("success", "untouched", "fell", "left_goal", "wrong_way", "short", "overshot")
    by_goal = {k: fractions(v, kinds) for k, v in sorted(by_kind.items())}
    report: dict = {"checkpoint": str(loaded.path), "env_steps": loaded.env_steps_trained,
                    "episodes": args.episodes, "explore": args.explore,
                    "hold_at_goal": agent.hold_at_goal, "agent_changes": args.agent,
                    "level0_speed": args.level0_speed, "grasped": args.grasped,
                    **fractions(outcomes, kinds),
                    "lifted": round(float(np.mean(lifts)), 3),
                    "lifted_steps": round(float(np.mean(up_steps)), 4),
                    "end_distance_shares": distance_shares(ends, args.threshold),
                    "near_miss_toward_box_centre": round(float(np.mean(towards)), 2) if towards
                    else None,
                    "near_miss_offset_median": median_of(near["offset"]),
                    "near_miss_subgoal_offset_median": median_of(near["subgoal"]),
                    "near_miss_gripper_to_subgoal_median": median_of(near["gripper"]),
                    **{f"success_{k}": v["success"] for k, v in by_goal.items()},
                    **{f"untouched_{k}": v["untouched"] for k, v in by_goal.items()},
                    "outcomes_by_goal": by_goal,
                    "outcomes_by_goal_distance": outcomes_by_band(goal_distances, outcomes,
                                                                  args.goal_bands, kinds),
                    "peak_object_speed_median": {k: round(float(np.median(v)), 4)
                                                 for k, v in sorted(peaks.items())},
                    "lifted_by_goal": {k: round(float(np.mean(v)), 3)
                                       for k, v in sorted(lifts_by_kind.items())},
                    **{f"gripper_object_closest_median_{k}": round(float(np.median(v)), 3)
                       for k, v in sorted(approach.items())},
                    "first_move_step_median": float(np.median(first_moves)) if first_moves
                    else None,
                    "miss_distance_median": round(float(np.median(misses)), 3) if misses
                    else None,
                    "left_goal_steps_at_goal_median": float(np.median(dwells)) if dwells
                    else None,
                    **{f"left_goal_{k}": round(leaving.count(k) / len(leaving), 3) if leaving
                       else None for k in ("carried", "dropped", "pushed")},
                    "left_goal_fingers_opened_median": round(float(np.median(
                        [o for o in opened if o is not None])), 4) if any(
                        o is not None for o in opened) else None,
                    **{f"arrival_speed_{k}": round(float(np.median(v)), 4) if v else None
                       for k, v in arrivals.items()}}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run_script(main, "benchmarks/object_failures.py")
