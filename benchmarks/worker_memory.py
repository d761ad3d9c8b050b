"""Resident memory of each Ray actor of a running ``hacray train --workers N`` (by role).

Starts the run in a subprocess, samples ``ps`` for Ray's actor processes (``ray::RolloutWorker``,
``ray::LearnerActor``, ...) every half second for ``--seconds``, stops the run with SIGTERM and
prints one JSON line: the largest RSS seen per role, in MiB, and whether torch was mapped into
each role's processes (``/proc/PID/maps``). Runs from any checkout (``--checkout``), so two
commits can be compared on the same machine:

    python benchmarks/worker_memory.py --checkout . --config configs/fetch_push_l2.yaml
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional


def actor_processes(root: int) -> dict[int, str]:
    """pid -> role of the Ray actor processes under ``root`` (the run's local Ray is its child):
    their titles read ``ray::ClassName.method`` or ``ray::hacray-<role>-<run tag>``."""
    done = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in done.stdout.splitlines()]
    parent = {int(r[0]): int(r[1]) for r in rows}
    found = {}
    for pid, _, args in (r for r in rows if len(r) == 3):
        pid = int(pid)
        ancestor = parent.get(pid)
        while ancestor not in (None, 0, 1, root):
            ancestor = parent.get(ancestor)
        if ancestor != root or not args.startswith("ray::") or args.startswith("ray::IDLE"):
            continue
        title = args[5:].split(" ")[0]
        role = (title.split("-")[1] if title.startswith("hacray-")
                else title.split(".")[0].split(":")[0])
        found[pid] = {"RolloutWorker": "worker", "LearnerActor": "learner",
                      "ReplayActor": "replay", "Evaluator": "eval"}.get(role, role)
    return found


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def maps_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=Path("."))
    parser.add_argument("--config", default="configs/fetch_push_l2.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        run = subprocess.Popen(
            [sys.executable, "-m", "hacray", "train", str(checkout / args.config), "--run-dir",
             f"{tmp}/run", "--workers", str(args.workers), "--max-env-steps", "100000000",
             "--set", "train.video_every=0", "--set", "train.tensorboard=false"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak: dict[str, float] = defaultdict(float)
        torch_in: dict[str, bool] = {}
        end = time.time() + args.seconds
        try:
            while time.time() < end and run.poll() is None:
                for pid, role in actor_processes(run.pid).items():
                    peak[role] = max(peak[role], rss_mib(pid))
                    torch_in[role] = torch_in.get(role, False) or maps_torch(pid)
                time.sleep(0.5)
        finally:
            run.send_signal(signal.SIGTERM)
            _, err = run.communicate(timeout=120)
    if not peak:
        sys.exit(f"worker_memory: no Ray actor seen; the run said: {err.decode()[-500:]}")
    report = {"checkout": str(checkout), "config": args.config, "workers": args.workers,
              "peak_rss_mib": {role: round(mib, 1) for role, mib in sorted(peak.items())},
              "torch_mapped": dict(sorted(torch_in.items()))}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
