"""A scaling model of a distributed run: env steps/s, and what bounds it, for W rollout workers.

Three steps, each its own subcommand:

    # 1. the component rates on this machine (one core each), as JSON
    python benchmarks/scaling.py measure configs/fetch_push_l2.yaml --batches 256 1024 > rates.json
    # 2. the model's table for W workers on a cluster file (or on --cores C of one machine)
    python benchmarks/scaling.py predict rates.json --cluster cluster/aws-gpu.yaml
    # 3. the model against real runs here (hacray train --workers W, stopped after --seconds)
    python benchmarks/scaling.py check rates.json --workers 1 2 --cores 2

The model: at the fixed replay ratio rho (updates per env step, batch B) a run's env steps/s is
the least of
- workers:  W x r_w (a worker's env steps/s on its own core; at most one worker per worker CPU);
- learner:  U(B) / rho (U: the learner's updates/s at batch B on its device);
- replay:   N / (1/I + rho B / S): each of N shards' cores both ingests (I env steps/s) and
  samples (S transitions/s per level);
- cores:    C / (1/r_w + rho/U + 1/I + rho B/S), only where everything shares C cores (one
  machine; the learner's term counts only when it runs on a CPU).
The rates come from ``measure``: the rollout loop of ``benchmarks/throughput.py`` (in process),
``benchmarks/replay_throughput.py`` (one replay actor, synthetic producers) and
``Learner.update_many`` on random batches (``benchmarks/learner.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import yaml

from hacray.runners.tune_summary import read_records

ROOT = Path(__file__).resolve().parent.parent

# vCPUs and GPUs of the instance types our cluster files name (AWS's published figures)
INSTANCES = {"c7i.2xlarge": (8, 0), "c6i.2xlarge": (8, 0), "c7i.4xlarge": (16, 0),
             "g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.4xlarge": (16, 1)}
EVAL_CPUS = 0.5  # the evaluator's (distributed.py); the learner's: a CPU per level thread


def predict(rates: dict[str, Any], workers: int, batch: int, ratio: float,
            learner_rate: Optional[float] = None, worker_cpus: Optional[int] = None,
            cores: Optional[float] = None, learner_on_cpu: bool = True,
            shards: int = 1) -> dict[str, Any]:
    """The model's env steps/s for ``workers`` workers and which bound holds it (see module)."""
    r_w = rates["worker_env_steps_per_s"]
    updates = (learner_rate if learner_rate is not None
               else rates["learner_updates_per_s"][str(batch)])
    ingest = rates["replay_ingest_env_steps_per_s"]
    sample = rates["replay_sample_transitions_per_s"]
    placed = workers if worker_cpus is None else min(workers, worker_cpus)
    replay_s = 1 / ingest + ratio * batch / sample  # replay core seconds per env step
    bounds = {"workers": placed * r_w, "learner": updates / ratio, "replay": shards / replay_s}
    if cores is not None:
        per_step = 1 / r_w + replay_s + (ratio / updates if learner_on_cpu else 0.0)
        bounds["cores"] = cores / per_step
    bottleneck = min(bounds, key=bounds.get)
    return {"workers": workers, "env_steps_per_s": bounds[bottleneck], "bottleneck": bottleneck,
            **{f"{name}_bound": value for name, value in bounds.items()}}


def cluster_capacity(path: Path, shards: int = 1, learner_cpus: float = 1.0) -> dict[str, int]:
    """Rollout-worker CPUs at full scale and the head's GPUs, from a Ray cluster file: every
    CPU node type at its max_workers, and the head's CPUs that the learner (``learner_cpus``),
    the replay shards and the evaluator leave."""
    spec = yaml.safe_load(path.read_text())
    node_types, head = spec["available_node_types"], spec["head_node_type"]
    worker_cpus = head_gpus = 0
    for name, node in node_types.items():
        cpus, gpus = INSTANCES.get(node.get("node_config", {}).get("InstanceType", ""), (0, 0))
        cpus = int((node.get("resources") or {}).get("CPU", cpus))
        if name == head:
            head_gpus = gpus
            worker_cpus += max(0, int(cpus - learner_cpus - shards - EVAL_CPUS))
        else:
            worker_cpus += cpus * int(node.get("max_workers", spec.get("max_workers", 0)))
    return {"worker_cpus": worker_cpus, "head_gpus": head_gpus}


# -- measure ------------------------------------------------------------------------------------
def measure(config_path: str, batches: list[int], seconds: float) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import learner as learner_bench  # noqa: E402 (the benchmarks' own modules)
    import replay_throughput
    import throughput
    from hacray.blueprint import Blueprint
    from hacray.config import load_config

    config = load_config(config_path, ("learner.level_threads=1", "learner.device=cpu"))
    loop = throughput.RolloutLoop(config)
    loop.run(1.0)
    steps, took = loop.run(seconds)
    spec = loop.envs[0].spec
    loop.close()
    learner_rates = {}
    for batch in batches:
        sized = replace(config, learner=replace(config.learner, batch_size=batch))
        blueprint = Blueprint.of(sized, spec)
        learner = blueprint.learner()
        data = learner_bench.random_batches(blueprint, 8)
        learner_bench.run(learner, config.learner.updates_per_call, data, 0)
        learner_rates[str(batch)] = round(learner_bench.run(
            learner, config.learner.updates_per_call, data, seconds), 1)
    with contextlib.redirect_stdout(sys.stderr):  # its own report line, not ours
        replay = replay_throughput.main([
            config_path, "--producers", "8", "--seconds", str(seconds),
            "--batches", str(config.learner.updates_per_call)])  # per request, as the learner asks
    return {"config": config_path, "cpu": os.uname().machine, "seconds": seconds,
            "worker_env_steps_per_s": round(steps / took, 1),
            "replay_ingest_env_steps_per_s": replay["ingest_alone_env_steps_per_s"],
            "replay_sample_transitions_per_s": replay["sample_alone_transitions_per_s"],
            "learner_device": "cpu", "learner_updates_per_s": learner_rates,
            "batch_size": config.learner.batch_size,
            "updates_per_env_step": config.replay.updates_per_env_step}


def learner_cpus(config_path: str) -> float:
    """CPUs a run of this config's learner asks Ray for: one per level thread."""
    from hacray.algo.learner import level_threads
    from hacray.config import load_config
    config = load_config(config_path)
    return float(level_threads(config.learner, config.agent.levels, cpus=config.agent.levels))


# -- check --------------------------------------------------------------------------------------
def measured_rate(config: str, workers: int, seconds: float, shards: int, batch: int,
                  ratio: float) -> float:
    """Median env steps/s of a real ``hacray train --workers W`` run's records, after its
    first two (filling replay), stopped with SIGINT after ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        proc = subprocess.Popen(
            [sys.executable, "-m", "hacray", "train", config, "--workers", str(workers),
             "--run-dir", str(run), "--max-env-steps", "10000000",
             "--set", "learner.level_threads=1", "--set", "train.eval_every=2000",
             "--set", "train.eval_episodes=1", "--set", "train.video_every=0",
             "--set", "train.tensorboard=false",
             "--set", f"distributed.replay_shards={shards}",
             "--set", f"learner.batch_size={batch}",
             "--set", f"replay.updates_per_env_step={ratio}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        time.sleep(seconds)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        records = read_records(run / "metrics.jsonl")
    rates = [r["charts/env_steps_per_s"] for r in records[2:] if "charts/env_steps_per_s" in r]
    if not rates:
        raise SystemExit(f"benchmarks/scaling.py: the {workers}-worker run left too few records "
                         f"in {seconds:.0f} s; give it more --seconds")
    return statistics.median(rates)


# -- command line -------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    names = [k for k in rows[0] if k.endswith("_bound")]
    head = "| W | env steps/s | bottleneck | " + " | ".join(n[:-6] for n in names) + " |"
    lines = [head, "|" + "---|" * (3 + len(names))]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['env_steps_per_s']:,.0f} | {r['bottleneck']} | "
                     + " | ".join(f"{r[n]:,.0f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="component rates on this machine, as JSON")
    m.add_argument("config")
    m.add_argument("--batches", type=int, nargs="+", default=[256])
    m.add_argument("--seconds", type=float, default=5.0)
    for name in ("predict", "check"):
        p = sub.add_parser(name)
        p.add_argument("rates", help="the JSON that measure printed")
        p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
        p.add_argument("--batch", type=int, help="learner batch (default: the rates' config's)")
        p.add_argument("--cores", type=float, help="everything shares this many cores")
        p.add_argument("--shards", type=int, default=1, help="distributed.replay_shards")
    sub.choices["predict"].add_argument("--cluster", type=Path)
    sub.choices["predict"].add_argument("--learner-rate", type=float, nargs="+",
                                        help="assumed learner updates/s (e.g. a GPU's)")
    sub.choices["check"].add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args(argv)
    if args.command == "measure":
        print(json.dumps(measure(args.config, args.batches, args.seconds)))
        return
    rates = json.loads(Path(args.rates).read_text())
    batch = args.batch or rates["batch_size"]
    ratio = rates["updates_per_env_step"] * rates["batch_size"] / batch  # samples/step held
    if args.command == "predict":
        capacity = (cluster_capacity(args.cluster, args.shards, learner_cpus(rates["config"]))
                    if args.cluster else {"worker_cpus": None})
        for assumed in args.learner_rate or [None]:
            rows = [predict(rates, w, batch, ratio, assumed, capacity["worker_cpus"], args.cores,
                            learner_on_cpu=assumed is None, shards=args.shards)
                    for w in args.workers]
            label = "measured" if assumed is None else "assumed"
            print(f"\nlearner {label}: {rows[0]['learner_bound'] * ratio:,.0f} updates/s at "
                  f"batch {batch} (ratio {ratio:g}); {args.shards} replay shard(s); "
                  f"capacity {capacity}\n{table(rows)}")
        return
    for workers in args.workers:
        model = predict(rates, workers, batch, ratio, cores=args.cores, shards=args.shards)
        real = measured_rate(rates["config"], workers, args.seconds, args.shards, batch, ratio)
        print(json.dumps({"workers": workers, "predicted_env_steps_per_s": round(
            model["env_steps_per_s"], 1), "bottleneck": model["bottleneck"],
            "measured_env_steps_per_s": round(real, 1),
            "measured_over_predicted": round(real / model["env_steps_per_s"], 3)}))


if __name__ == "__main__":
    main()
