"""The learner step on a GPU, with nothing but torch, numpy and PyYAML (the device machine has
neither Ray nor MuJoCo): updates/s of ``Learner.update`` once per batch (guards read at every
step) against ``Learner.update_many`` (one packed transfer, guards read once per call) at
several batch sizes, and a check that both leave the same weights, non-finite batches included.

Networks and batch shapes are those of ``configs/fetch_push_l2.yaml`` (2 levels, 3x256,
observation 25, goals 3, actions 4 and 3); values are random, as an update's cost does not
depend on them. Prints one JSON line.

    python benchmarks/gpu_learner.py --device cuda --batches 256 1024 4096 --per-call 32
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from hacray.algo.hierarchy import LevelSpace
from hacray.algo.learner import Learner
from hacray.config import LearnerConfig
from hacray.types import Transitions
from learner import run  # benchmarks/learner.py, beside this script (torch and hacray only)

OBS_DIM = 25


def spaces() -> list[LevelSpace]:
    """FetchPush's two levels: 4-D motor actions under 3-D gripper subgoals, 3-D goals."""
    def box(dim: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        return np.full(dim, low, np.float32), np.full(dim, high, np.float32)
    motor, subgoal = box(4, -1.0, 1.0), box(3, 0.4, 1.6)
    return [LevelSpace(0, 5, 3, 4, *motor, 0.05, -5.0, np.arange(3)),
            LevelSpace(1, 10, 3, 3, *subgoal, 0.05, -10.0, None)]


def batches(batch: int, count: int, rng: np.random.Generator) -> list[tuple[Transitions, ...]]:
    def level(space: LevelSpace) -> Transitions:
        return Transitions(
            obs=rng.standard_normal((batch, OBS_DIM), dtype=np.float32),
            goal=rng.standard_normal((batch, space.goal_dim), dtype=np.float32),
            action=rng.uniform(space.act_low, space.act_high,
                               (batch, space.act_dim)).astype(np.float32),
            reward=-rng.integers(0, 2, batch).astype(np.float32),
            discount=np.full(batch, 0.98, np.float32),
            next_obs=rng.standard_normal((batch, OBS_DIM), dtype=np.float32))
    return [tuple(level(s) for s in spaces()) for _ in range(count)]


def rate(learner: Learner, data: list, per_call: int, seconds: float) -> float:
    """Updates/s as ``benchmarks/learner.py`` times them, after one untimed call."""
    run(learner, per_call, data, 0)  # allocations and first-call work out of the timing
    return run(learner, per_call, data, seconds)


def same_weights(config: LearnerConfig, data: list, per_call: int) -> float:
    """Largest weight difference between ``update`` per batch and deferred ``update_many``."""
    one, many = Learner(spaces(), OBS_DIM, config, 0), Learner(spaces(), OBS_DIM, config, 0)
    for j in range(0, len(data), per_call):
        for b in data[j:j + per_call]:
            one.update(b)
        many.update_many(data[j:j + per_call], deferred=True)
    assert one.skipped_updates == many.skipped_updates and one.updates == many.updates
    return max(float((a - b).detach().abs().max()) for la, lb in zip(one.levels, many.levels)
               for net in ("actor", "critic", "actor_target", "critic_target")
               for a, b in zip(getattr(la, net).parameters(), getattr(lb, net).parameters()))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--per-call", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    config = LearnerConfig(device=args.device, level_threads=1)
    rng = np.random.default_rng(0)
    report: dict = {"device": args.device, "torch": torch.__version__, "per_call": args.per_call,
                    "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    for batch in args.batches:
        sized = replace(config, batch_size=batch)
        data = batches(batch, 64, rng)
        eager = rate(Learner(spaces(), OBS_DIM, sized, 0), data, 0, args.seconds)
        many = rate(Learner(spaces(), OBS_DIM, sized, 0), data, args.per_call, args.seconds)
        report[f"batch_{batch}"] = {"update_per_batch_updates_per_s": round(eager, 1),
                                    "update_many_updates_per_s": round(many, 1),
                                    "many_over_per_batch": round(many / eager, 3)}
    data = batches(256, 16, rng)
    poisoned = list(data)
    bad = poisoned[5][1].reward.copy()
    bad[0] = np.nan
    poisoned[5] = (poisoned[5][0], Transitions(**{**poisoned[5][1]._asdict(), "reward": bad}))
    report["max_weight_difference"] = same_weights(config, data, 8)
    report["max_weight_difference_with_a_nan_batch"] = same_weights(config, poisoned, 8)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
