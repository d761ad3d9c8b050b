"""Learning curves over seeds: success vs env steps and vs wall time, as CSV, PNG and a table.

Run a config over several seeds (each seed a ``hacray train`` process, ``--jobs`` at a time),
or summarise run directories that already exist:

    python benchmarks/learning.py configs/fetch_reach_l2.yaml --seeds 0 1 2 --out bench/reach_l2
    python benchmarks/learning.py --runs runs/push-s0 runs/push-s1 --out bench/push_l2

Writes ``OUT.csv`` (one row per evaluation step: median, min and max success over seeds, and
median wall time; up to where the shortest seed stopped), ``OUT.png`` (both curves; needs
matplotlib) and prints a markdown row for BENCHMARKS.md, with the first step at which the
median curve reaches 0.9 and the median over seeds of each seed's first step at 0.9 (a seed
that has not got there is shown as "not by" its last evaluation). Issue 19's table counts only
evaluations of at least 50 episodes: ``--min-eval-episodes 50`` refuses, in one line, a run whose
``config.yaml`` evaluated on fewer. Extra arguments after ``--`` go to every ``hacray train`` call.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml


def run_seeds(config: str, seeds: list[int], out: Path, jobs: int, extra: list[str]) -> list[Path]:
    """One training process per seed; returns their run directories."""
    def one(seed: int) -> Path:
        run_dir = out.parent / f"{out.name}-runs" / f"seed{seed}"
        cmd = [sys.executable, "-m", "hacray", "train", config, "--run-dir", str(run_dir),
               "--seed", str(seed), "--overwrite", *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return run_dir
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, seeds))


def read_curve(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def eval_episodes(run_dir: Path) -> int:
    """How many episodes each of the run's evaluations played (its saved ``config.yaml``)."""
    return int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["eval_episodes"])


def aggregate(curves: list[list[dict]]) -> list[dict]:
    """Align seeds on evaluation index (evaluations happen at the same env-step marks)."""
    n = min(len(c) for c in curves)
    rows = []
    for i in range(n):
        success = np.array([c[i]["eval/success_rate"] for c in curves])
        rows.append({"env_steps": int(np.median([c[i]["env_steps"] for c in curves])),
                     "wall_time_s": float(np.median([c[i]["wall_time_s"] for c in curves])),
                     "success_median": float(np.median(success)),
                     "success_min": float(success.min()), "success_max": float(success.max()),
                     "seeds": len(curves)})
    return rows


def first_reaching(rows: list[dict], level: float) -> dict | None:
    return next((r for r in rows if r["success_median"] >= level), None)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipping the PNG (pip install matplotlib)",
              file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, key, label in ((axes[0], "env_steps", "env steps"),
                           (axes[1], "wall_time_s", "wall time (s)")):
        x = [r[key] for r in rows]
        ax.plot(x, [r["success_median"] for r in rows], label="median")
        ax.fill_between(x, [r["success_min"] for r in rows], [r["success_max"] for r in rows],
                        alpha=0.25, label="min-max over seeds")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("eval success")
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def seed_first_reaching(curves: list[list[dict]], level: float) -> list[int | None]:
    """Each seed's first evaluation at or above ``level`` (env steps; None: never), over its
    whole curve, also past where the shortest seed stopped."""
    return [next((r["env_steps"] for r in c if r["eval/success_rate"] >= level), None)
            for c in curves]


def median_first(hits: list[int | None]) -> str:
    """The median of per-seed first hits (for an even count the later middle one), a seed that
    never got there counting as infinitely late: 'not reached' unless over half got there."""
    ordered = sorted(h if h is not None else float("inf") for h in hits)
    middle = ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else max(
        ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2])
    return "not reached" if middle == float("inf") else f"{middle:,}"


def summary_row(rows: list[dict], name: str, curves: list[list[dict]]) -> str:
    final = rows[-1]
    hit = first_reaching(rows, 0.9)
    reach = f"{hit['env_steps']:,} steps / {hit['wall_time_s']:.0f} s" if hit else "not reached"
    hits = seed_first_reaching(curves, 0.9)
    per_seed = ", ".join(f"not by {c[-1]['env_steps']:,}" if h is None else f"{h:,}"
                         for h, c in zip(hits, curves))
    return (f"| {name} | {final['seeds']} | {final['env_steps']:,} | {final['wall_time_s']:.0f} | "
            f"{final['success_median']:.2f} ({final['success_min']:.2f}-"
            f"{final['success_max']:.2f}) | {reach} | {median_first(hits)} ({per_seed}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, nargs="+", help="summarise existing run dirs")
    parser.add_argument("--out", type=Path, required=True, help="output prefix")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--min-eval-episodes", type=int, default=0,
                        help="refuse runs whose evaluations played fewer episodes")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if not args.runs and not args.config:
        parser.error("give a config to run, or --runs to summarise")
    if not args.runs:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    run_dirs = args.runs or run_seeds(args.config, args.seeds, args.out, args.jobs, extra)
    for run_dir in run_dirs:
        if not all((run_dir / name).is_file() for name in ("config.yaml", "metrics.jsonl")):
            parser.exit(2, f"learning.py: error: {run_dir} is not a run directory (no "
                           f"config.yaml and metrics.jsonl)\n")
        if (n := eval_episodes(run_dir)) < args.min_eval_episodes:
            parser.exit(2, f"learning.py: error: {run_dir} evaluated on {n} episodes, fewer "
                           f"than --min-eval-episodes {args.min_eval_episodes}\n")
    curves = [read_curve(d) for d in run_dirs]
    if not all(any("eval/success_rate" in r for r in c) for c in curves):
        parser.exit(2, "learning.py: error: a run has no evaluation yet\n")
    curves = [[r for r in c if "eval/success_rate" in r] for c in curves]
    rows = aggregate(curves)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out.with_suffix(".csv"))
    plot(rows, args.out.with_suffix(".png"), args.out.name)
    print("| run | seeds | env steps | wall s | final success median (min-max) | "
          "median first >= 0.9 | median of per-seed first >= 0.9 (per seed) |")
    print(summary_row(rows, args.out.name, curves))


if __name__ == "__main__":
    main()
