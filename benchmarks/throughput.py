"""Throughput of the distributed runner, as ratios against baselines measured in the same run.

(a) sampler efficiency: env steps/s of N rollout worker actors (learner idle, replay actor
    ingesting) / (N x the raw single-core MuJoCo rate of the task: a bare ``mujoco.mj_step``
    loop, ``n_substeps`` calls per env step, on the env's own model and data, from the states
    that rollouts visit). The two take turns: the workers put 4 rounds of episodes each into
    replay (``RolloutWorker.collect``, timed from the driver, so Ray's calls and the inserts
    count), then this process runs the single-core loops for ``--slice`` s each; a shared
    machine's drifting load then falls on both sides alike.
(b) learner efficiency: updates/s of the learner actor fed by the replay actor (workers
    stopped) / updates/s of ``Learner.update`` in this process on pre-sampled batches of the
    same size, both with ``--level-threads`` level threads (default 1). They take 10 turns of
    ``--seconds``/10 each, for the same reason. The actor also reports the share of its time
    spent inside its updates: what is left is its cost of being fed, free of the machine's
    drift between turns.

Prints one JSON line with both ratios and the raw rates. The rate limiter is opened wide
(``replay.tolerance``) so that neither side waits for the other.

    python benchmarks/throughput.py --task FetchReach-v4 --workers 2 --seconds 30

``--in-process`` measures only the single-core loops of (a) -- raw ``mj_step``, the env's
``step``, a rollout worker's loop -- in short turns within one process, which is what to
compare two versions of the per-step code with on a noisy machine:

    python benchmarks/throughput.py --task FetchPush-v4 --envs-per-worker 4 --in-process
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

# numpy's BLAS on one thread in this process, as in a rollout worker actor (Ray sets its
# OMP_NUM_THREADS to its 1 CPU): with 8 rows or more OpenBLAS otherwise splits the actor's
# matrix products over both cores, ~3x slower when the other core is busy
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before anything loads numpy

import mujoco
import numpy as np
import ray

from hacray import seeding
from hacray.algo.rollout import play, run_episodes
from hacray.blueprint import Blueprint
from hacray.config import Config, load_config
from hacray.envs import make_env, make_envs
from hacray.runners.distributed import DistributedTrainer
from hacray.runners.ray_util import init_ray
from hacray.types import Episode

LEARNER_TURNS = 10
"""Turns of the learner actor and its in-process baseline, ``--seconds`` in all for each."""
WORKER_ROUNDS = 4
"""Rounds of episodes per worker turn: a round's insert overlaps the next round's acting, as
in a training run, and only the last one's wait is a turn's own."""
WIDE_OPEN = "1000000000000.0"  # a rate-limiter tolerance that never binds


class RawLoop:
    """A bare mj_step loop (n_substeps calls per env step) on one core.

    The loop steps from the states a rollout visits (recorded from random-action episodes and
    restored with mj_setState): from one fixed state the physics cost is not representative.
    """

    def __init__(self, config: Config):
        self.env, rng = make_env(config.env), np.random.default_rng(0)
        sim = self.env.env.unwrapped  # type: ignore[attr-defined]  # FetchEnv's gymnasium env
        self.model, self.data, self.substeps = sim.model, sim.data, sim.n_substeps
        self.kind, self.states, self.next = mujoco.mjtState.mjSTATE_INTEGRATION, [], 0
        for episode in range(10):
            self.env.reset(episode)
            for _ in range(self.env.spec.max_episode_steps):
                self.states.append(np.empty(mujoco.mj_stateSize(self.model, self.kind)))
                mujoco.mj_getState(self.model, self.data, self.states[-1], self.kind)
                self.env.step(rng.uniform(-1, 1, self.env.spec.action_dim).astype(np.float32))

    def run(self, seconds: float) -> tuple[int, float]:
        """(env steps, seconds) of stepping for at least ``seconds``."""
        model, data, kind, steps, start = self.model, self.data, self.kind, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            mujoco.mj_setState(model, data, self.states[self.next % len(self.states)], kind)
            self.next += 1
            for _ in range(self.substeps):
                mujoco.mj_step(model, data)
            steps += 1
        return steps, time.perf_counter() - start

    def close(self) -> None:
        self.env.close()


class EnvLoop:
    """The env's own ``step`` (uniform random actions, a reset every episode): the physics plus
    the env's per-step work, without the policy, HAC bookkeeping or Ray."""

    def __init__(self, config: Config):
        self.env, rng = make_env(config.env), np.random.default_rng(0)
        spec = self.env.spec
        self.actions = rng.uniform(-1, 1, (spec.max_episode_steps, spec.action_dim)
                                   ).astype(np.float32)
        self.episodes = 0

    def run(self, seconds: float) -> tuple[int, float]:
        """(env steps, seconds) of whole episodes for at least ``seconds``."""
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.env.reset(self.episodes)
            self.episodes += 1
            for action in self.actions:
                self.env.step(action)
            steps += len(self.actions)
        return steps, time.perf_counter() - start

    def close(self) -> None:
        self.env.close()


class RolloutLoop:
    """A rollout worker's loop in this process: ``envs_per_worker`` envs side by side, as the
    worker actor plays them (policy, exploration, HAC bookkeeping); keeps the episodes."""

    def __init__(self, config: Config):
        self.config = config
        self.envs = make_envs(config.env, config.distributed.envs_per_worker)  # as a worker's
        self.rngs = [seeding.rng(config.train.seed, "env", 0, i) for i in range(len(self.envs))]
        blueprint = Blueprint.of(config, self.envs[0].spec)
        self.policy = blueprint.policy()
        self.policy.set_weights(blueprint.learner().weights())
        self.episodes: list[Episode] = []

    def run(self, seconds: float) -> tuple[int, float]:
        """(env steps, seconds) of whole rounds of episodes for at least ``seconds``."""
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            played = run_episodes([play(env, self.policy, self.config.agent,
                                        int(rng.integers(2**31)), rng, explore=True)
                                   for env, rng in zip(self.envs, self.rngs)], self.policy)
            steps += sum(e.stats.env_steps for e in played)
            self.episodes += played
        return steps, time.perf_counter() - start

    def close(self) -> None:
        for env in self.envs:
            env.close()


def single_core_loops(config: Config) -> dict[str, Any]:
    """Raw MuJoCo, the env's step and the rollout loop, by the name of their rates."""
    return {"raw_mujoco_env_steps": RawLoop(config), "env_step_env_steps": EnvLoop(config),
            "in_process_rollout_env_steps": RolloutLoop(config)}


def in_turns(config: Config, rounds: int, slice_s: float,
             trainer: Optional[DistributedTrainer] = None
             ) -> tuple[dict[str, float], list[Episode]]:
    """The three single-core loops in turns of ``slice_s`` for ``rounds`` rounds, each rate
    summed over its slices, so that a shared machine's drifting load falls on all alike
    (whole-phase rates, one after another, moved by up to 15-31% within one run).

    With ``trainer`` each round starts with WORKER_ROUNDS rounds of episodes in every rollout
    worker at once (``collect``, learner idle), timed from here: ``workers_env_steps``. One
    extra turn goes first, untimed: it starts the workers' envs and fetches the weights."""
    loops = single_core_loops(config)
    totals = {name: [0, 0.0] for name in loops}
    try:
        if trainer is not None:
            totals["workers_env_steps"] = [0, 0.0]
            _collect_round(config, trainer)
        for _ in range(rounds):
            if trainer is not None:
                steps, elapsed = _collect_round(config, trainer)
                totals["workers_env_steps"][0] += steps
                totals["workers_env_steps"][1] += elapsed
            for name, loop in loops.items():
                steps, elapsed = loop.run(slice_s)
                totals[name][0] += steps
                totals[name][1] += elapsed
    finally:
        for loop in loops.values():
            loop.close()
    rates = {name: steps / elapsed for name, (steps, elapsed) in totals.items()}
    return rates, loops["in_process_rollout_env_steps"].episodes


def _collect_round(config: Config, trainer: DistributedTrainer) -> tuple[int, float]:
    """(env steps replay received, seconds) of WORKER_ROUNDS rounds of episodes in every
    worker at once."""
    env_steps = lambda: trainer.replay_status().env_steps
    first, start = env_steps(), time.perf_counter()
    episodes = WORKER_ROUNDS * config.distributed.envs_per_worker
    ray.get([worker.collect.remote(episodes) for worker in trainer.workers],
            timeout=config.distributed.timeout_s)
    elapsed = time.perf_counter() - start
    return env_steps() - first, elapsed


class UpdateLoop:
    """``Learner.update`` in this process on pre-sampled batches: the learner actor's
    baseline. Its replay holds the episodes of ~2 s of in-process rollouts."""

    def __init__(self, config: Config):
        rollouts = RolloutLoop(config)
        rollouts.run(2.0)
        rollouts.close()
        blueprint = Blueprint.of(config, rollouts.envs[0].spec)
        replay, self.learner = blueprint.replay(), blueprint.learner()
        for episode in rollouts.episodes:
            replay.add_episode(episode)
        self.learner.set_normalizer(*replay.normalizer_stats())
        self.batches = [replay.sample(config.learner.batch_size) for _ in range(64)]
        self.learner.update(self.batches[0])  # first-call allocations out of the timing

    def run(self, seconds: float) -> tuple[int, float]:
        """(updates, seconds) of updating for at least ``seconds``."""
        updates, start = 0, time.perf_counter()
        per_call = self.learner.config.updates_per_call  # as the learner actor calls it
        while time.perf_counter() - start < seconds:
            self.learner.update_many([self.batches[(updates + j) % len(self.batches)]
                                      for j in range(per_call)])
            updates += per_call
        return updates, time.perf_counter() - start


def learner_in_turns(config: Config, trainer: DistributedTrainer, seconds: float
                     ) -> tuple[float, float, float]:
    """(updates/s of the learner actor fed by the replay actor, updates/s of UpdateLoop, the
    share of the actor's time spent updating), in LEARNER_TURNS turns of
    ``seconds / LEARNER_TURNS`` each, after one untimed turn each.

    The workers are stopped; the actor counts its own updates from the end of a turn's first
    one (what sampling, Ray and the update cost in a running learner), this process's loop
    waits while the actor runs and the actor waits while the loop runs."""
    plain, slice_s = UpdateLoop(config), seconds / LEARNER_TURNS
    actor, loop = [0, 0.0, 0.0], [0, 0.0]
    for turn in range(LEARNER_TURNS + 1):
        learning = trainer.learner.run.remote()
        time.sleep(slice_s)
        ray.get(trainer.learner.stop.remote())
        pace = ray.get(learning, timeout=config.distributed.timeout_s)
        updates, elapsed = plain.run(slice_s)
        if turn > 0:
            actor = [a + b for a, b in zip(actor, pace)]
            loop = [loop[0] + updates, loop[1] + elapsed]
    if min(actor[0], loop[0]) == 0:
        raise SystemExit("benchmarks/throughput.py: the learner made no updates; "
                         "give it more --seconds (or the workers more --rounds)")
    return actor[0] / actor[1], loop[0] / loop[1], actor[2] / actor[1]


def actor_rates(config: Config, seconds: float, rounds: int, slice_s: float
                ) -> tuple[dict[str, float], tuple[float, float, float]]:
    """(env steps/s of the rollout workers with the learner idle and of the single-core loops,
    in turns; learner_in_turns on what the workers collected), with the actors
    train_distributed starts."""
    env = make_env(config.env)
    spec = env.spec
    env.close()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = DistributedTrainer(config, spec, Path(run_dir), None, progress=False)
        try:
            trainer.start()
            sampling, _ = in_turns(config, rounds, slice_s, trainer)
            ray.get([r.close.remote() for r in trainer.replays])
            updating = learner_in_turns(config, trainer, seconds)
        finally:
            trainer.close()
    return sampling, updating


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="FetchReach-v4", help="gymnasium-robotics env id")
    parser.add_argument("--config", help="YAML config (default: the built-in defaults)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="the learner actor's measured time, in 10 turns with its "
                             "in-process baseline (which gets as long)")
    parser.add_argument("--worker-cpus", type=float, default=1.0)
    parser.add_argument("--envs-per-worker", type=int, default=1)
    parser.add_argument("--level-threads", type=int, default=1,
                        help="learner.level_threads of both the learner actor and the "
                             "in-process baseline (the same on both sides of the ratio)")
    parser.add_argument("--in-process", action="store_true",
                        help="only the single-core loops of one process (raw mj_step, the "
                             "env's step, the rollout loop), in turns; no Ray")
    parser.add_argument("--rounds", type=int, default=40,
                        help="turns of the workers (4 rounds of episodes each) and the "
                             "single-core loops (or of the loops alone with --in-process)")
    parser.add_argument("--slice", type=float, default=0.3,
                        help="seconds per single-core loop per turn")
    args = parser.parse_args(argv)
    config = load_config(args.config, (
        f"env.id={args.task}", f"distributed.workers={args.workers}",
        f"distributed.worker_cpus={args.worker_cpus}",
        f"distributed.envs_per_worker={args.envs_per_worker}",
        f"replay.tolerance={WIDE_OPEN}", "train.tensorboard=false",
        f"learner.level_threads={args.level_threads}"))
    if args.in_process:
        rates, _ = in_turns(config, args.rounds, args.slice)
        raw, env, rollout = (rates[k] for k in ("raw_mujoco_env_steps", "env_step_env_steps",
                                                "in_process_rollout_env_steps"))
        print(json.dumps({
            "task": args.task, "envs_per_worker": args.envs_per_worker,
            "levels": config.agent.levels, "rounds": args.rounds, "slice_s": args.slice,
            "rollouts_over_raw": round(rollout / raw, 3), "env_step_over_raw": round(env / raw, 3),
            "rollouts_over_env_step": round(rollout / env, 3),
            **{f"{k}_per_s": round(v, 1) for k, v in rates.items()}}))
        return
    # the local Ray `hacray train` starts: actors at normal priority (Ray's default, nice 15,
    # hands their core to any other process that wakes up: the raylet's, the GCS's, ...)
    init_ray(None, include_dashboard=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    rates, (learner, updates, updating) = actor_rates(config, args.seconds, args.rounds, args.slice)
    ray.shutdown()
    sampler, raw, env, rollout = (rates[k] for k in (
        "workers_env_steps", "raw_mujoco_env_steps", "env_step_env_steps",
        "in_process_rollout_env_steps"))
    print(json.dumps({
        "task": args.task, "workers": args.workers, "envs_per_worker": args.envs_per_worker,
        "rounds": args.rounds, "slice_s": args.slice, "seconds": args.seconds,
        "levels": config.agent.levels, "batch_size": config.learner.batch_size,
        "level_threads": args.level_threads,
        "ray_cpus": cpus, "os_cpus": os.cpu_count(),
        "sampler_efficiency": round(sampler / (args.workers * raw), 3),
        "learner_efficiency": round(learner / updates, 3),
        # the rest of the actor's time: waiting for samples, Ray's calls, publishing weights
        "learner_actor_share_updating": round(updating, 3),
        "workers_over_in_process_rollouts": round(sampler / (args.workers * rollout), 3),
        # where the rest goes, one process: the env's own per-step work, then the rollout's
        "env_step_over_raw": round(env / raw, 3),
        "rollouts_over_env_step": round(rollout / env, 3),
        **{f"{k}_per_s": round(v, 1) for k, v in rates.items()},
        "learner_actor_updates_per_s": round(learner, 1),
        "in_process_updates_per_s": round(updates, 1)}))


if __name__ == "__main__":
    main()
