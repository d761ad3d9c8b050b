"""What one replay actor sustains on one core: episodes ingested (env steps/s), batches sampled
(transitions/s) and the latency of a sample request, with synthetic producers.

The producers are pre-recorded episodes (played once in process with an untrained policy, then
``ray.put`` once), sent by the driver with ``--producers`` insert calls always in flight, as that
many rollout workers would keep: no physics and no pickling on the producer side, so that a
2-core machine can play 32+ workers against one replay actor. Three phases of ``--seconds``
each: ingest alone, sampling alone (``--batches`` updates' batches of ``learner.batch_size`` per
request, as the learner actor asks), then both at once. The replay runs without its rate limiter
(``distributed.synchronous``), so each side goes as fast as the actor lets it. Prints one JSON
line.

    python benchmarks/replay_throughput.py configs/fetch_push_l2.yaml --producers 32
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from typing import Optional

import numpy as np

os.environ.setdefault("RAY_worker_niceness", "0")  # as hacray train starts a local Ray

import ray  # noqa: E402

from hacray import seeding  # noqa: E402
from hacray.algo.rollout import run_episode  # noqa: E402
from hacray.blueprint import Blueprint  # noqa: E402
from hacray.config import load_config  # noqa: E402
from hacray.envs import make_env  # noqa: E402
from hacray.runners.replay_actor import ReplayActor  # noqa: E402
from hacray.types import Counters  # noqa: E402


def recorded_episodes(config, count: int) -> list:
    """``count`` exploration episodes of an untrained policy, played once in this process."""
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    rng = seeding.rng(config.train.seed, "env", 0, 0)
    episodes = [run_episode(env, policy, config.agent, int(rng.integers(2**31)), rng, True)
                for _ in range(count)]
    env.close()
    return episodes


def ingest(replays, payload, steps_per_call: int, producers: int, seconds: float) -> float:
    """Env steps/s stored with ``producers`` insert calls always in flight (producer p sends to
    shard p mod N, as rollout worker p does)."""
    shard_of = {replays[p % len(replays)].add_episodes.remote(payload): p % len(replays)
                for p in range(producers)}
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ready, _ = ray.wait(list(shard_of), num_returns=1)
        done += len(ready)
        shard = shard_of.pop(ready[0])
        shard_of[replays[shard].add_episodes.remote(payload)] = shard
    ray.get(list(shard_of))
    done += len(shard_of)
    return done * steps_per_call / (time.perf_counter() - start)


def sample_all(replays, batch: int, batches: int, seconds: float, latencies: list[float]
               ) -> float:
    """Transitions/s per level sampled from every shard at once, one caller per shard."""
    rates = [0.0] * len(replays)

    def one(s: int) -> None:
        rates[s] = sample(replays[s], batch, batches, seconds, latencies)
    threads = [threading.Thread(target=one, args=(s,)) for s in range(len(replays))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rates)


def sample(replay, batch: int, batches: int, seconds: float, latencies: list[float]) -> float:
    """Transitions/s sampled (per level) by one learner asking for ``batches`` batches a call."""
    drawn, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        reply = ray.get(replay.sample.remote(batch, batches))
        latencies.append(time.perf_counter() - began)
        drawn += len(reply) * batch
    return drawn / (time.perf_counter() - start)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="configs/fetch_push_l2.yaml")
    parser.add_argument("--producers", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=8, help="recorded; sent together")
    parser.add_argument("--batches", type=int, default=4, help="batches per sample request")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shards", type=int, default=1, help="replay actors, one core each")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, e.g. replay.her_at_sample=true")
    args = parser.parse_args(argv)
    config = load_config(args.config, ("distributed.synchronous=true",
                                       "train.tensorboard=false", *args.set))
    episodes = recorded_episodes(config, args.episodes)
    steps_per_call = sum(e.stats.env_steps for e in episodes)
    spec = make_env(config.env).spec
    ray.init(num_cpus=max(2, args.shards), include_dashboard=False, logging_level="ERROR")
    try:
        replays = [ReplayActor.options(num_cpus=1).remote(config, spec, Counters(), 0, None,
                                                          shard=s) for s in range(args.shards)]
        payload = ray.put(episodes)
        for replay in replays:  # each filled past min_size before timing
            ray.get(replay.add_episodes.remote(payload))
            while not ray.get(replay.status.remote()).sizes[0] >= config.replay.min_size:
                ray.get(replay.add_episodes.remote(payload))
        alone_in = ingest(replays, payload, steps_per_call, args.producers, args.seconds)
        latencies: list[float] = []
        alone_out = sample_all(replays, config.learner.batch_size, args.batches, args.seconds,
                               latencies)
        both_latencies: list[float] = []
        result: dict = {}
        sampler = threading.Thread(target=lambda: result.update(out=sample_all(
            replays, config.learner.batch_size, args.batches, args.seconds, both_latencies)))
        sampler.start()
        both_in = ingest(replays, payload, steps_per_call, args.producers, args.seconds)
        sampler.join()
    finally:
        ray.shutdown()
    ms = lambda xs: round(1000 * statistics.median(xs), 2)
    report = {
        "config": args.config, "levels": config.agent.levels, "producers": args.producers,
        "shards": args.shards, "overrides": args.set,
        "env_steps_per_insert_call": steps_per_call, "batch_size": config.learner.batch_size,
        "batches_per_request": args.batches,
        "ingest_alone_env_steps_per_s": round(alone_in),
        "sample_alone_transitions_per_s": round(alone_out),
        "sample_alone_updates_per_s": round(alone_out / config.learner.batch_size, 1),
        "sample_latency_alone_ms_median": ms(latencies),
        "ingest_with_sampling_env_steps_per_s": round(both_in),
        "sample_with_ingest_transitions_per_s": round(result.get("out", 0.0)),
        "sample_latency_with_ingest_ms_median": ms(both_latencies) if both_latencies else None,
        "sample_latency_with_ingest_ms_p90": (round(1000 * float(np.percentile(
            both_latencies, 90)), 2) if both_latencies else None)}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
