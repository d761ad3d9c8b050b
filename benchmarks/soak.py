"""Soak: a long run on Ray with a rollout worker killed every ``--kill-every`` seconds.

The run trains in this process's main thread (its StopFlag ends it on SIGINT after a final
checkpoint, as for a user); a monitor thread kills rollout workers, alternately with
``ray.kill(no_restart=False)`` and a SIGKILL of the worker's process, samples the run every
``--sample-every`` seconds and, after ``--minutes``, sends this process SIGINT. It checks:

* the run finishes (train_distributed returns after the SIGINT);
* every killed worker is restarted (Ray's actor table shows it alive in a new process);
* the learner's stall after each kill: the longest time without a new update, from the kill
  until the next kill (resolution: the sampling period; a stall before the first kill is
  reported for comparison: the rate limiter also pauses the learner while workers lag);
* replay memory: level sizes never exceed ``replay.capacity``; the replay actor's RSS against
  the bytes of its full ring buffers;
* object-store use stays flat (no leaked weight references): the cluster's
  ``object_store_memory`` minus what is available. Weights under ~100 KB (the tiny env's) are
  inlined and never reach the object store: the learner's RSS shows a leak of those.

Actors are found by class in Ray's actor table (names carry a per-run tag). Learner updates are
read from the LearnerActor's ``learner.updates`` (``__ray_call__``); where that attribute is
gone, from ``snapshot()`` (heavier: it publishes weights). Prints one JSON summary line and
writes ``soak.csv`` (one row per sample) and ``summary.json`` under ``--out``.

    python benchmarks/soak.py --config configs/point_mass.yaml --minutes 20 --kill-every 60
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import ray
import ray._private.state  # the GCS actor table: the public state API needs the dashboard

from hacray.blueprint import Blueprint
from hacray.config import Config, load_config
from hacray.envs import make_env
from hacray.runners.distributed import train_distributed

STOP_GRACE_S = 120.0  # after the stopping SIGINT, longest wait before a second one
MB = 2**20


class Sample(NamedTuple):
    """What the monitor reads once per sampling period (-1: could not be read)."""

    t_s: float
    env_steps: int
    updates: int
    sizes: list[int]
    replay_rss_mb: float
    learner_rss_mb: float
    driver_rss_mb: float
    object_store_mb: float
    workers_alive: int
    worker_restarts: int
    event: str


CLASSES = ("ReplayActor", "LearnerActor", "RolloutWorker", "Evaluator")


def actor_table() -> dict[str, dict[str, dict[str, Any]]]:
    """Per actor class, the table rows (Name, Pid, NumRestarts, …) of its live actors, by actor
    id (which a restart keeps)."""
    table: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in CLASSES}
    for actor_id, row in ray._private.state.actors().items():
        if row["State"] == "ALIVE" and row["ActorClassName"] in table:
            table[row["ActorClassName"]][actor_id] = row
    return table


def handle_of(class_name: str) -> ray.actor.ActorHandle:
    (row,) = actor_table()[class_name].values()
    return ray.get_actor(row["Name"])


def rss_mb(pid: Optional[int]) -> float:
    import psutil  # shipped with ray
    try:
        return round(psutil.Process(pid).memory_info().rss / MB, 1)
    except (psutil.Error, ValueError, TypeError):
        return -1.0


def object_store_mb() -> float:
    total = ray.cluster_resources().get("object_store_memory", 0.0)
    return (total - ray.available_resources().get("object_store_memory", 0.0)) / MB


def replay_full_mb(config: Config) -> list[float]:
    """Per level, the MB of the replay's ring buffer when full (np.zeros: allocated here, never
    touched)."""
    env = make_env(config.env)
    replay = Blueprint.of(config, env.spec).replay()
    env.close()
    return [sum(a.nbytes for a in b.data.values()) / MB for b in replay.buffers]


def filled_mb(sizes: list[int], full_mb: list[float], capacity: int) -> float:
    """MB of the rows the replay holds: what its RSS grows by while it fills."""
    return round(sum(n / capacity * mb for n, mb in zip(sizes, full_mb)), 1)


class Monitor:
    """The second thread: kills, samples, and ends the run."""

    def __init__(self, args: argparse.Namespace, run_dir: Path):
        self.args, self.run_dir = args, run_dir
        self.samples: list[Sample] = []
        self.kills: list[dict[str, Any]] = []  # t_s, method, actor_id, pid, restart_s
        self.over = threading.Event()
        self.stop_sent: Optional[float] = None
        self.updates_probe = "learner.updates"
        self.error: Optional[BaseException] = None
        self.t0 = 0.0

    def run(self) -> None:
        try:
            self._wait_for_first_record()
            self.replay, self.learner = handle_of("ReplayActor"), handle_of("LearnerActor")
            self.t0 = time.monotonic()
            self._loop()
        except BaseException as err:  # noqa: BLE001 - reported in the summary
            self.error = err
        finally:
            self._stop()

    def _wait_for_first_record(self) -> None:
        """A record means every actor is up and the driver's StopFlag listens for SIGINT."""
        metrics = self.run_dir / "metrics.jsonl"
        while not self.over.is_set() and not (metrics.exists() and metrics.read_text()):
            time.sleep(0.5)
        if self.over.is_set():
            raise RuntimeError("the run ended before its first metrics record")

    def _loop(self) -> None:
        args, next_kill = self.args, self.args.kill_every
        while not self.over.is_set():
            now = time.monotonic() - self.t0
            if now >= args.minutes * 60:
                return
            table = actor_table()
            event = ""
            if now >= next_kill:
                event, next_kill = self._kill(table, len(self.kills)), next_kill + args.kill_every
            self.samples.append(self._sample(table, now, event or self._restarts_seen(table)))
            time.sleep(max(0.0, args.sample_every - (time.monotonic() - self.t0 - now)))

    def _kill(self, table: dict[str, dict[str, Any]], i: int) -> str:
        """Kill worker i % workers, alternating ray.kill and a SIGKILL of its process."""
        workers = sorted(table["RolloutWorker"].items(), key=lambda kv: kv[1]["Name"])
        if not workers:
            return "kill:skipped(no live worker)"
        actor_id, row = workers[i % len(workers)]
        method = "ray.kill" if i % 2 == 0 else "sigkill"
        if method == "ray.kill":
            ray.kill(ray.get_actor(row["Name"]), no_restart=False)
        else:
            os.kill(row["Pid"], signal.SIGKILL)
        self.kills.append(dict(t_s=time.monotonic() - self.t0, method=method,
                               actor_id=actor_id, pid=row["Pid"], restart_s=None))
        return f"kill:{method}:{row['Name']}"

    def _restarts_seen(self, table: dict[str, dict[str, Any]]) -> str:
        """Note each killed worker seen alive again in a new process."""
        rows, seen = table["RolloutWorker"], []
        for kill in self.kills:
            row = rows.get(kill["actor_id"])
            if kill["restart_s"] is None and row and row["Pid"] != kill["pid"]:
                kill["restart_s"] = time.monotonic() - self.t0 - kill["t_s"]
                seen.append(f"restart:{row['Name']}")
        return " ".join(seen)

    def _sample(self, table: dict[str, dict[str, Any]], now: float, event: str) -> Sample:
        status = ray.get(self.replay.status.remote(), timeout=60)
        workers = table["RolloutWorker"].values()
        pids = {c: next(iter(table[c].values()), {}).get("Pid")
                for c in ("ReplayActor", "LearnerActor")}
        return Sample(round(now, 2), status.env_steps, self._updates(), list(status.sizes),
                      rss_mb(pids["ReplayActor"]), rss_mb(pids["LearnerActor"]),
                      rss_mb(os.getpid()), round(object_store_mb(), 3), len(workers),
                      sum(int(w["NumRestarts"]) for w in workers), event)

    def _updates(self) -> int:
        if self.updates_probe == "learner.updates":
            try:
                return ray.get(self.learner.__ray_call__.remote(lambda a: a.learner.updates),
                               timeout=60)
            except ray.exceptions.RayTaskError:  # the attribute is gone: the public way
                self.updates_probe = "snapshot"
        return ray.get(self.learner.snapshot.remote(), timeout=60).updates

    def _stop(self) -> None:
        """SIGINT: the run stops after a final checkpoint; a second one if it hangs."""
        if self.over.is_set() or not self.t0:
            return
        self.stop_sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        if not self.over.wait(STOP_GRACE_S):
            os.kill(os.getpid(), signal.SIGINT)


def stalls(samples: list[Sample], kills: list[dict[str, Any]], end_s: float
           ) -> tuple[list[float], float]:
    """Per kill, the longest time without a new update from the kill to the next kill (or the
    end); and the longest before the first kill."""
    def longest(start: float, stop: float) -> float:
        window = [s for s in samples if start <= s.t_s <= stop]
        before = [s for s in samples if s.t_s < start]
        last_t, last_n, worst = start, before[-1].updates if before else -1, 0.0
        for s in window:
            if s.updates > last_n:
                last_t, last_n = s.t_s, s.updates
            worst = max(worst, s.t_s - last_t)
        return round(worst, 2)
    edges = [k["t_s"] for k in kills] + [end_s]
    first = samples[0].t_s if samples else 0.0
    return [longest(a, b) for a, b in zip(edges, edges[1:])], longest(first, edges[0])


def figures(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v >= 0]
    if not values:
        return {}
    return {"start": round(values[0], 1), "end": round(values[-1], 1),
            "max": round(max(values), 1)}


def summary(args: argparse.Namespace, config: Config, monitor: Monitor, result: dict[str, Any],
            outcome: str, stop_s: Optional[float]) -> dict[str, Any]:
    samples, kills = monitor.samples, monitor.kills
    end = samples[-1].t_s if samples else 0.0
    per_kill, before = stalls(samples, kills, end)
    restarts = [k["restart_s"] for k in kills if k["restart_s"] is not None]
    full_mb, capacity = replay_full_mb(config), config.replay.capacity
    return {
        "config": args.config, "env": config.env.id, "workers": config.distributed.workers,
        "minutes": round(end / 60, 2), "kill_every_s": args.kill_every, "kills": len(kills),
        "kills_by": {m: sum(k["method"] == m for k in kills) for m in ("ray.kill", "sigkill")},
        "restarts_seen": len(restarts),
        "restart_s": {"max": round(max(restarts), 1), "mean": round(float(np.mean(restarts)), 1)}
        if restarts else {},
        "finished": outcome == "finished", "outcome": outcome,
        "stop_to_return_s": None if stop_s is None else round(stop_s, 1),
        "env_steps": result.get("env_steps"), "updates": result.get("updates"),
        "eval_success": result.get("eval/success_rate"),
        "max_learner_stall_after_kill_s": max(per_kill, default=None),
        "learner_stall_after_each_kill_s": per_kill, "learner_stall_before_kills_s": before,
        "sample_every_s": args.sample_every, "updates_probe": monitor.updates_probe,
        "replay_rss_mb": figures([s.replay_rss_mb for s in samples]),
        "replay_full_buffers_mb": round(sum(full_mb), 1),
        "replay_rows_mb": {"start": filled_mb(samples[0].sizes, full_mb, capacity),
                           "end": filled_mb(samples[-1].sizes, full_mb, capacity)}
        if samples else {},
        "learner_rss_mb": figures([s.learner_rss_mb for s in samples]),
        "object_store_used_mb": figures([s.object_store_mb for s in samples]),
        "replay_sizes_max": [max(s.sizes[i] for s in samples) for i in
                             range(len(samples[0].sizes))] if samples else [],
        "replay_capacity": config.replay.capacity,
        "monitor_error": None if monitor.error is None else repr(monitor.error)}


def write_csv(path: Path, samples: list[Sample]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(Sample._fields)
        for s in samples:
            out.writerow([";".join(map(str, v)) if isinstance(v, list) else v for v in s])


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default",
                        help="YAML config, or 'default' for the built-in defaults (FetchReach)")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path,
                        default=Path("runs") / f"soak-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    config = load_config(None if args.config == "default" else args.config, (
        f"distributed.workers={args.workers}", "train.max_env_steps=1000000000000",
        "train.tensorboard=false", *args.overrides))
    run_dir = args.out / "run"
    ray.init(address=config.distributed.address, include_dashboard=False,
             logging_level="WARNING")
    monitor = Monitor(args, run_dir)
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    result, outcome = {}, "finished"
    try:
        result = train_distributed(config, run_dir, progress=False)
    except BaseException as err:  # noqa: BLE001 - the summary says how the run ended
        outcome = f"{type(err).__name__}: {err}"
    finally:
        returned = time.monotonic()
        monitor.over.set()
        thread.join(timeout=STOP_GRACE_S + 10)
    stop_s = None if monitor.stop_sent is None else returned - monitor.stop_sent
    if monitor.stop_sent is None and outcome == "finished":
        outcome = "ended before --minutes (max_env_steps?)"
    report = summary(args, config, monitor, result, outcome, stop_s)
    ray.shutdown()
    write_csv(args.out / "soak.csv", monitor.samples)
    (args.out / "summary.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    sys.exit(0 if report["finished"] else 1)


if __name__ == "__main__":
    main()
