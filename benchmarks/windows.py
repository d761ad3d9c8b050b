"""Evaluation success in windows of env steps, per run and the median over runs (the maze tables).

Each evaluation counts at its nominal point, the multiple of the run's ``train.eval_every``
nearest to its env steps (an episode may run past the point), and a window's value is the mean
of the evaluations whose points lie in (end - window, end]. A window is reported only when the
run's last evaluation reached its end. Also: the first evaluation at ``--level`` or more, and
the last evaluation's per-level subgoal reach. ``--metric`` picks another evaluation figure
(e.g. ``eval/success_rate_table``: PickAndPlace's goals on the table alone); an evaluation that
lacks it does not count.

    python benchmarks/windows.py RUN [RUN ...] [--window 100000] [--ends 100000 200000 300000]

Prints a markdown table: one row per run, then the median of the runs per window.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median
from typing import Any, Optional

from hacray.config import load_config


SUCCESS = "eval/success_rate"


def evaluations(run_dir: Path, metric: str = SUCCESS) -> list[dict[str, Any]]:
    with open(run_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if metric in r]


def windows(evals: list[dict[str, Any]], every: int, window: int,
            ends: list[int], metric: str = SUCCESS) -> dict[int, Optional[float]]:
    """Window end -> mean ``metric`` of the evaluations whose nominal points lie in it (None
    where the run stopped before the end, or no evaluation falls in it)."""
    points = [(round(r["env_steps"] / every) * every, r[metric]) for r in evals]
    last = points[-1][0] if points else -1
    out: dict[int, Optional[float]] = {}
    for end in ends:
        inside = [s for p, s in points if end - window < p <= end]
        out[end] = sum(inside) / len(inside) if inside and last >= end else None
    return out


def first_at(evals: list[dict[str, Any]], level: float,
             metric: str = SUCCESS) -> Optional[int]:
    return next((r["env_steps"] for r in evals if r[metric] >= level), None)


def reach(evals: list[dict[str, Any]]) -> str:
    last = evals[-1] if evals else {}
    found = [f"L{i} {last[f'eval/level{i}_subgoal_reach']:.2f}" for i in range(8)
             if f"eval/level{i}_subgoal_reach" in last]
    return ", ".join(found) or "-"


def main(argv: Optional[list[str]] = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--ends", type=int, nargs="+", default=[100_000, 200_000, 300_000])
    parser.add_argument("--level", type=float, default=0.5)
    parser.add_argument("--metric", default=SUCCESS, help="the evaluation figure to average "
                        f"(default {SUCCESS})")
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "metrics.jsonl").is_file() or not (run / "config.yaml").is_file():
            parser.exit(2, f"windows.py: error: {run} is not a run directory (no metrics.jsonl "
                           "and config.yaml)\n")
    ends = [f"{e // 1000}k" for e in args.ends]
    lines = [f"| run | env steps | {' | '.join(ends)} | first >= {args.level:g} | reach (last) |",
             "|---" * (len(ends) + 4) + "|"]
    columns: list[list[float]] = [[] for _ in args.ends]
    for run in args.runs:
        evals = evaluations(run, args.metric)
        every = load_config(run / "config.yaml").train.eval_every
        values = windows(evals, every, args.window, args.ends, args.metric)
        for column, end in zip(columns, args.ends):
            if values[end] is not None:
                column.append(values[end])
        cells = ["-" if values[e] is None else f"{values[e]:.2f}" for e in args.ends]
        steps = evals[-1]["env_steps"] if evals else 0
        first = first_at(evals, args.level, args.metric)
        lines.append(f"| {run.name} | {steps:,} | {' | '.join(cells)} | "
                     f"{'never' if first is None else f'{first:,}'} | {reach(evals)} |")
    medians = [f"{median(c):.2f} ({min(c):.2f}-{max(c):.2f}), {len(c)} runs" if c else "-"
               for c in columns]
    lines.append(f"| median | | {' | '.join(medians)} | | |")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
