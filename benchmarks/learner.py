"""Updates/s of the learner in one process for each ``learner.level_threads`` value,
measured side by side (rounds alternate between the values, so machine drift hits all alike).

Batches are random arrays of the config's shapes (observation, goal and action sizes of each
level, batch size): an update's cost depends on those, not on the values.

    python benchmarks/learner.py configs/fetch_push_l2.yaml --threads 1 2 --seconds 3 --rounds 4

``--every 1,1 1,2`` also sets ``learner.level_update_every`` (1,2: the top level steps on every
second update; rates count updates, each of which steps the levels it picks).
``--per-call 0 8`` also sets ``Learner.update`` (once per batch, today's step) beside
``Learner.update_many`` of 8 batches (one transfer, guards and metrics read once per call).
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


def variant_name(threads: int, per_call: int) -> str:
    return f"level_threads_{threads}" + (f"_per_call_{per_call}" if per_call else "")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                        help="learner.level_threads values to compare (0: one per level)")
    parser.add_argument("--per-call", type=int, nargs="+", default=[0],
                        help="0: Learner.update once per batch (guards read at every step); "
                             "N: Learner.update_many of N batches (one transfer, one read)")
    parser.add_argument("--every", nargs="+", default=[None],
                        help="learner.level_update_every values, e.g. 1,1 1,2 (default: config's)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--device", default="auto", help="learner.device: auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, help="learner.batch_size (default: config's)")
    parser.add_argument("--deferred", choices=("auto", "on", "off"), default="auto",
                        help="update_many's guards: read once per call (on), at every step "
                             "(off), or the device's default (auto: on for a GPU)")
    args = parser.parse_args(argv)
    overrides = [f"learner.device={args.device}"]
    if args.batch_size:
        overrides.append(f"learner.batch_size={args.batch_size}")
    config = load_config(args.config, tuple(overrides))
    env = make_env(config.env)
    spec = env.spec
    env.close()
    variants = {}
    for threads in args.threads:
        for per_call in args.per_call:
            for every in args.every:
                learner_config = replace(config.learner, level_threads=threads, **(
                    {"level_update_every": [int(k) for k in every.split(",")]} if every else {}))
                learner = Blueprint.of(replace(config, learner=learner_config), spec).learner()
                name = variant_name(threads, per_call) + (f"_every_{every.replace(',', '_')}"
                                                          if every else "")
                variants[name] = (learner, per_call)
    batches = random_batches(Blueprint.of(config, spec), 16)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    deferred = {"auto": None, "on": True, "off": False}[args.deferred]
    for name, (learner, per_call) in variants.items():
        run(learner, per_call, batches, 0, deferred)  # first-call allocations out of the timing
    for _ in range(args.rounds):
        for name, (learner, per_call) in variants.items():
            rates[name].append(run(learner, per_call, batches, args.seconds, deferred))
    base = float(np.median(rates[next(iter(variants))]))
    print(json.dumps({"config": args.config, "levels": config.agent.levels,
                      "device": str(next(iter(variants.values()))[0].device),
                      "batch_size": config.learner.batch_size, "hidden": config.learner.hidden,
                      "deferred": args.deferred,
                      **{name: {"updates_per_s_median": round(float(np.median(r)), 1),
                                "rounds": [round(x, 1) for x in r],
                                "over_first": round(float(np.median(r)) / base, 3)}
                         for name, r in rates.items()}}))


def run(learner, per_call: int, batches: list, seconds: float,
        deferred: Optional[bool] = None) -> float:
    """Updates/s over at least ``seconds`` (one call when 0), all queued work finished, and
    none queued before counted."""
    sync = torch.cuda.synchronize if learner.device.type == "cuda" else (lambda: None)
    sync()
    updates, start = 0, time.perf_counter()
    while True:
        if per_call:
            chunk = [batches[(updates + j) % len(batches)] for j in range(per_call)]
            learner.update_many(chunk, deferred=deferred)
            updates += per_call
        else:
            learner.update(batches[updates % len(batches)])
            updates += 1
        if time.perf_counter() - start >= seconds:
            break
    sync()  # updates queue kernels; count them once run
    return updates / (time.perf_counter() - start)


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:  # a bad config, or cuda asked on a machine without it
        raise SystemExit(f"benchmarks/learner.py: {err}") from None
