"""Throughput of the distributed runner, as ratios against baselines measured in the same run.

(a) sampler efficiency: env steps/s of N rollout worker actors (learner idle, replay actor
    ingesting) / (N x the raw single-core MuJoCo rate of the task: a bare ``mujoco.mj_step``
    loop, ``n_substeps`` calls per env step, on the env's own model and data, from the states
    that rollouts visit).
(b) learner efficiency: updates/s of the learner actor fed by the replay actor / updates/s of
    ``Learner.update`` in this process on pre-sampled batches of the same size, both with
    ``--level-threads`` level threads (default 1).

Prints one JSON line with both ratios and the raw rates. The rate limiter is opened wide
(``replay.tolerance``) so that neither side waits for the other.

    python benchmarks/throughput.py --task FetchReach-v4 --workers 2 --seconds 30
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import mujoco
import numpy as np
import ray

from hacray import seeding
from hacray.algo.rollout import play, run_episodes
from hacray.config import Config, load_config
from hacray.envs import make_env
from hacray.runners.common import Blueprint
from hacray.runners.distributed import DistributedTrainer
from hacray.types import Episode

WARMUP_S = 5.0
WIDE_OPEN = "1000000000000.0"  # a rate-limiter tolerance that never binds


def raw_mujoco_rate(config: Config, seconds: float) -> float:
    """Env steps/s of a bare mj_step loop (n_substeps calls per env step) on one core.

    The loop steps from the states a rollout visits (recorded from random-action episodes and
    restored with mj_setState): from one fixed state the physics cost is not representative.
    """
    env, rng = make_env(config.env), np.random.default_rng(0)
    sim = env.env.unwrapped  # type: ignore[attr-defined]  # FetchEnv's gymnasium env
    model, data, substeps = sim.model, sim.data, sim.n_substeps
    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    states = []
    for episode in range(10):
        env.reset(episode)
        for _ in range(env.spec.max_episode_steps):
            states.append(np.empty(mujoco.mj_stateSize(model, kind)))
            mujoco.mj_getState(model, data, states[-1], kind)
            env.step(rng.uniform(-1, 1, env.spec.action_dim).astype(np.float32))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_setState(model, data, states[steps % len(states)], kind)
        for _ in range(substeps):
            mujoco.mj_step(model, data)
        steps += 1
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def env_rate(config: Config, seconds: float) -> float:
    """Env steps/s of the env's own ``step`` (uniform random actions, resets every episode): the
    physics plus the env's per-step work, without the policy, HAC bookkeeping or Ray."""
    env, rng = make_env(config.env), np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (env.spec.max_episode_steps, env.spec.action_dim))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset(steps)
        for action in actions.astype(np.float32):
            env.step(action)
        steps += len(actions)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def rollouts_in_process(config: Config, seconds: float) -> tuple[float, list[Episode]]:
    """Env steps/s of a rollout worker's loop in this process (``envs_per_worker`` envs side by
    side, as the worker actor plays them), and the episodes."""
    envs = [make_env(config.env) for _ in range(config.distributed.envs_per_worker)]
    rngs = [seeding.rng(config.train.seed, "env", 0, i) for i in range(len(envs))]
    blueprint = Blueprint.of(config, envs[0].spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    episodes, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        episodes += run_episodes([play(env, policy, config.agent, int(rng.integers(2**31)), rng,
                                       explore=True) for env, rng in zip(envs, rngs)], policy)
    rate = sum(e.stats.env_steps for e in episodes) / (time.perf_counter() - start)
    for env in envs:
        env.close()
    return rate, episodes


def updates_in_process(config: Config, episodes: list[Episode], seconds: float) -> float:
    """Updates/s of Learner.update in this process on pre-sampled batches."""
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    env.close()
    replay, learner = blueprint.replay(), blueprint.learner()
    for episode in episodes:
        replay.add_episode(episode)
    learner.set_normalizer(*replay.normalizer_stats())
    batches = [replay.sample(config.learner.batch_size) for _ in range(64)]
    learner.update(batches[0])  # first-call allocations out of the timing
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.update(batches[updates % len(batches)])
        updates += 1
    return updates / (time.perf_counter() - start)


def actor_rates(config: Config, seconds: float) -> tuple[float, float]:
    """(env steps/s of the rollout workers with the learner idle, updates/s of the learner
    actor on what they collected), with the actors train_distributed starts."""
    env = make_env(config.env)
    spec = env.spec
    env.close()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = DistributedTrainer(config, spec, Path(run_dir), None, progress=False)
        try:
            trainer.start()
            acting = [worker.run.remote() for worker in trainer.workers]
            sampling = _rate(lambda: ray.get(trainer.replay.status.remote()).env_steps, seconds)
            ray.get(trainer.replay.close.remote())
            ray.get(acting, timeout=config.distributed.timeout_s)
            learning = trainer.learner.run.remote()
            updating = _rate(lambda: ray.get(trainer.learner.snapshot.remote()).updates, seconds)
            ray.get(trainer.learner.stop.remote())
            ray.get(learning, timeout=config.distributed.timeout_s)
        finally:
            trainer.close()
    return sampling, updating


def _rate(read_counter: Any, seconds: float) -> float:
    """Counter increase per second over ``seconds``, after WARMUP_S of starting up."""
    deadline = time.perf_counter() + 120.0
    while read_counter() == 0 and time.perf_counter() < deadline:
        time.sleep(0.2)  # actors still starting
    time.sleep(WARMUP_S)
    first, start = read_counter(), time.perf_counter()
    time.sleep(seconds)
    return (read_counter() - first) / (time.perf_counter() - start)


def baselines(config: Config, seconds: float) -> dict[str, float]:
    """The single-core rates in this process: raw MuJoCo, the env's step, rollouts (policy and
    HAC bookkeeping on top), Learner.update."""
    rollout, episodes = rollouts_in_process(config, seconds)
    return {"raw_mujoco_env_steps": raw_mujoco_rate(config, seconds),
            "env_step_env_steps": env_rate(config, seconds),
            "in_process_rollout_env_steps": rollout,
            "in_process_updates": updates_in_process(config, episodes, seconds)}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="FetchReach-v4", help="gymnasium-robotics env id")
    parser.add_argument("--config", help="YAML config (default: the built-in defaults)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0, help="per measured actor phase")
    parser.add_argument("--worker-cpus", type=float, default=1.0)
    parser.add_argument("--envs-per-worker", type=int, default=1)
    parser.add_argument("--level-threads", type=int, default=1,
                        help="learner.level_threads of both the learner actor and the "
                             "in-process baseline (the same on both sides of the ratio)")
    args = parser.parse_args(argv)
    config = load_config(args.config, (
        f"env.id={args.task}", f"distributed.workers={args.workers}",
        f"distributed.worker_cpus={args.worker_cpus}",
        f"distributed.envs_per_worker={args.envs_per_worker}",
        f"replay.tolerance={WIDE_OPEN}", "train.tensorboard=false",
        f"learner.level_threads={args.level_threads}"))
    # baselines before and after the actors, averaged: the load of a shared machine drifts
    baseline_s = max(5.0, args.seconds / 6)
    before = baselines(config, baseline_s)
    ray.init(include_dashboard=False, logging_level="warning")
    cpus = ray.cluster_resources().get("CPU", 0)
    sampler, learner = actor_rates(config, args.seconds)
    ray.shutdown()
    after = baselines(config, baseline_s)
    base = {k: (before[k] + after[k]) / 2 for k in before}
    print(json.dumps({
        "task": args.task, "workers": args.workers, "envs_per_worker": args.envs_per_worker,
        "seconds": args.seconds,
        "levels": config.agent.levels, "batch_size": config.learner.batch_size,
        "level_threads": args.level_threads,
        "ray_cpus": cpus, "os_cpus": os.cpu_count(),
        "sampler_efficiency": round(sampler / (args.workers * base["raw_mujoco_env_steps"]), 3),
        "learner_efficiency": round(learner / base["in_process_updates"], 3),
        "workers_over_in_process_rollouts": round(
            sampler / (args.workers * base["in_process_rollout_env_steps"]), 3),
        # where the rest goes, one process: the env's own per-step work, then the rollout's
        "env_step_over_raw": round(base["env_step_env_steps"] / base["raw_mujoco_env_steps"], 3),
        "rollouts_over_env_step": round(
            base["in_process_rollout_env_steps"] / base["env_step_env_steps"], 3),
        "workers_env_steps_per_s": round(sampler, 1),
        "learner_actor_updates_per_s": round(learner, 1),
        **{f"{k}_per_s": round(v, 1) for k, v in base.items()},
        "baseline_after_over_before": {k: round(after[k] / before[k], 2) for k in before}}))


if __name__ == "__main__":
    main()
