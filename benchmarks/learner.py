"""Updates/s of ``Learner.update`` in one process for each ``learner.level_threads`` value,
measured side by side (rounds alternate between the values, so machine drift hits all alike).

Batches are random arrays of the config's shapes (observation, goal and action sizes of each
level, batch size): an update's cost depends on those, not on the values.

    python benchmarks/learner.py configs/fetch_push_l2.yaml --threads 1 2 --seconds 3 --rounds 4
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from hacray.blueprint import Blueprint
from hacray.config import load_config
from hacray.envs import make_env
from hacray.types import Transitions


def random_batches(blueprint: Blueprint, count: int, seed: int = 0
                   ) -> list[tuple[Transitions, ...]]:
    """``count`` batches (one Transitions per level) of random values in the config's shapes."""
    rng, spec, n = np.random.default_rng(seed), blueprint.spec, blueprint.config.learner.batch_size

    def level(s) -> Transitions:
        return Transitions(
            obs=rng.standard_normal((n, spec.obs_dim), dtype=np.float32),
            goal=rng.standard_normal((n, s.goal_dim), dtype=np.float32),
            action=(rng.uniform(-1, 1, (n, s.act_dim)) * s.act_half + s.act_centre
                    ).astype(np.float32),
            reward=-rng.integers(0, 2, n).astype(np.float32),
            discount=np.full(n, blueprint.config.learner.gamma, np.float32),
            next_obs=rng.standard_normal((n, spec.obs_dim), dtype=np.float32))
    return [tuple(level(s) for s in blueprint.spaces) for _ in range(count)]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                        help="learner.level_threads values to compare (0: one per level)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per value and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--device", default="auto", help="learner.device: auto, cpu or cuda")
    args = parser.parse_args(argv)
    config = load_config(args.config, (f"learner.device={args.device}",))
    env = make_env(config.env)
    spec = env.spec
    env.close()
    learners = {}
    for threads in args.threads:
        learner_config = replace(config.learner, level_threads=threads)
        learners[threads] = Blueprint.of(replace(config, learner=learner_config), spec).learner()
    batches = random_batches(Blueprint.of(config, spec), 16)
    rates: dict[int, list[float]] = {t: [] for t in learners}
    for learner in learners.values():
        learner.update(batches[0])  # first-call allocations out of the timing
    for _ in range(args.rounds):
        for threads, learner in learners.items():
            updates, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                learner.update(batches[updates % len(batches)])
                updates += 1
            if learner.device.type == "cuda":  # updates queue kernels; count them once run
                torch.cuda.synchronize()
            rates[threads].append(updates / (time.perf_counter() - start))
    base = float(np.median(rates[args.threads[0]]))
    print(json.dumps({"config": args.config, "levels": config.agent.levels,
                      "device": str(next(iter(learners.values())).device),
                      "batch_size": config.learner.batch_size, "hidden": config.learner.hidden,
                      **{f"level_threads_{t}": {"updates_per_s_median": round(float(np.median(r)), 1),
                                               "rounds": [round(x, 1) for x in r],
                                               "over_first": round(float(np.median(r)) / base, 2)}
                         for t, r in rates.items()}}))


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:  # a bad config, or cuda asked on a machine without it
        raise SystemExit(f"benchmarks/learner.py: {err}") from None
