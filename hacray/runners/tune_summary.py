"""The summary of a ``hacray tune`` sweep, read back from its trials' run directories (not from
Tune's results): per grid point, success over seeds and the first arrival at SUCCESS_TARGET."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from hacray.runners.tune import TrialSpec

SUCCESS_TARGET = 0.9
"""Evaluation success whose first arrival the summary reports, in env steps."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a metrics.jsonl (a line still being written is left for later)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def trial_result(trial: TrialSpec, out: Path) -> Optional[dict[str, Any]]:
    """Final success, env steps, wall time and first arrival at SUCCESS_TARGET of a finished
    trial's run; None when it recorded no evaluation."""
    records = read_records(out / trial.name / "metrics.jsonl")
    if not records:
        return None
    reached = [r["env_steps"] for r in records
               if (r.get("eval/success_rate") or 0.0) >= SUCCESS_TARGET]
    last = records[-1]
    return {"trial": trial.name, "seed": trial.seed, "final_success": last["eval/success_rate"],
            "env_steps": last["env_steps"], "wall_time_s": last["wall_time_s"],
            "steps_to_target": reached[0] if reached else None}


def summarize(trials: Sequence[TrialSpec], out: Path) -> list[dict[str, Any]]:
    """One row per grid point: its values, seeds finished, success median/mean/min/max over
    seeds, the env steps by which half its seeds first reached SUCCESS_TARGET (lower median,
    seeds that never did counting as never), and the median wall time of a trial."""
    rows = []
    for point in sorted({trial.point for trial in trials}):
        mine = [t for t in trials if t.point == point]
        results = [r for r in (trial_result(t, out) for t in mine) if r is not None]
        success = [r["final_success"] for r in results]
        steps = [r["steps_to_target"] or math.inf for r in results]
        to_target = statistics.median_low(steps) if steps else math.inf
        rows.append({
            **dict(mine[0].values), "seeds": len(results), "seeds_planned": len(mine),
            "success_median": statistics.median(success) if success else None,
            "success_mean": statistics.fmean(success) if success else None,
            "success_min": min(success, default=None), "success_max": max(success, default=None),
            f"steps_to_{SUCCESS_TARGET}": None if math.isinf(to_target) else to_target,
            "wall_time_s": statistics.median(r["wall_time_s"] for r in results)
            if results else None,
            "trials": results})
    return rows


def write_summary(rows: list[dict[str, Any]], out: Path, extra: dict[str, Any]) -> None:
    """``summary.json`` (rows with their trials, plus ``extra``) and ``summary.csv`` (rows)."""
    (out / "summary.json").write_text(json.dumps({**extra, "rows": rows}, indent=2) + "\n")
    columns = [key for key in rows[0] if key != "trials"]
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as an aligned text table."""
    columns = [key for key in rows[0] if key not in ("trials", "seeds_planned")]
    cells = [[_cell(row, key) for key in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = [columns] + cells
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def _cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key == "seeds":
        return f"{value}" if value == row["seeds_planned"] else f"{value}/{row['seeds_planned']}"
    if value is None:
        return "-"
    if key.startswith("success_"):
        return f"{value:.2f}"
    if key == "wall_time_s":
        return f"{value:.1f}"
    return f"{value:,d}" if isinstance(value, int) else str(value)
