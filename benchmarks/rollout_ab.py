"""The rollout loop of two checkouts side by side in one process: old and new in alternating rounds.

A rollout-loop change worth a few percent cannot be seen in two runs one after the other on a
shared machine (its speed moves by 15-31% within minutes). Here the old checkout's ``hacray``
package is copied under the name ``hacray_old`` (imports rewritten) and both loops play rounds
of episodes (``--envs`` envs side by side, exploration on, untrained weights) in turns, so the
machine's drift falls on both alike. Prints one JSON line: env steps/s of each and new / old.

    git worktree add /tmp/old <commit>
    python benchmarks/rollout_ab.py --old /tmp/old --task FetchPush-v4 --envs 8 --rounds 60
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread, as in a worker actor

NEW, OLD = "hacray", "hacray_old"


def renamed_copy(checkout: Path, into: Path) -> None:
    """``checkout/hacray`` as the package ``hacray_old`` in ``into``."""
    source = checkout / NEW
    if not (source / "algo" / "rollout.py").is_file():
        sys.exit(f"benchmarks/rollout_ab.py: {checkout} has no hacray/algo/rollout.py")
    target = into / OLD
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    pattern = re.compile(r"\bhacray(?=[.\s])")
    for path in target.rglob("*.py"):
        path.write_text(pattern.sub(OLD, path.read_text()))


def round_player(package: str, task: str, envs: int) -> Callable[[], tuple[int, float]]:
    """A function that plays one round of ``envs`` episodes with ``package``'s rollout loop
    and returns (env steps, seconds)."""
    module = lambda name: importlib.import_module(f"{package}.{name}")
    seeding, rollout = module("seeding"), module("algo.rollout")
    config = module("config").load_config(None, (f"env.id={task}", "train.tensorboard=false"))
    envs_module = module("envs")
    if hasattr(envs_module, "make_envs"):  # the envs a worker makes (one shared MuJoCo model)
        made = envs_module.make_envs(config.env, envs)
    else:
        made = [envs_module.make_env(config.env) for _ in range(envs)]
    rngs = [seeding.rng(0, "env", 0, i) for i in range(envs)]
    try:  # where Blueprint lives: hacray.blueprint, or runners.common in older checkouts
        blueprint_type = module("blueprint").Blueprint
    except ModuleNotFoundError:
        blueprint_type = module("runners.common").Blueprint
    blueprint = blueprint_type.of(config, made[0].spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())

    def play_round() -> tuple[int, float]:
        start = time.perf_counter()
        played = rollout.run_episodes([
            rollout.play(env, policy, config.agent, int(rng.integers(2**31)), rng, explore=True)
            for env, rng in zip(made, rngs)], policy)
        return sum(e.stats.env_steps for e in played), time.perf_counter() - start
    return play_round


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, type=Path, help="the other checkout's root")
    parser.add_argument("--task", default="FetchReach-v4")
    parser.add_argument("--envs", type=int, default=8, help="envs side by side per round")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        renamed_copy(args.old.resolve(), Path(tmp))
        sys.path.insert(0, tmp)
        players = {name: round_player(package, args.task, args.envs)
                   for name, package in (("old", OLD), ("new", NEW))}
        totals = {name: [0, 0.0] for name in players}
        for turn in range(args.rounds):
            order = list(players) if turn % 2 else list(players)[::-1]  # who goes first alternates
            for name in order:
                steps, elapsed = players[name]()
                totals[name][0] += steps
                totals[name][1] += elapsed
    rates = {name: steps / elapsed for name, (steps, elapsed) in totals.items()}
    print(json.dumps({"task": args.task, "envs": args.envs, "rounds": args.rounds,
                      "old_env_steps_per_s": round(rates["old"], 1),
                      "new_env_steps_per_s": round(rates["new"], 1),
                      "new_over_old": round(rates["new"] / rates["old"], 4)}))


if __name__ == "__main__":
    main()
