"""Screen one variant the way issue 19's protocol does, and print its rows for BENCHMARKS.md.

Each seed trains from a clone of one fixed commit (made once under ``--out``, so that editing
the working tree beside a long screen cannot change it), on one core (one torch thread, one
level thread), ``--parallel`` seeds at a time; then the last checkpoint is evaluated on
``--eval-episodes`` episodes. A run directory that exists is resumed (``--resume``) up to the
budget, so a screen can go on across days; one that reached it is only evaluated. Prints one
markdown row per seed and one JSON line with the median.

    python benchmarks/screen.py --name push-rel15 --config configs/fetch_push_l2.yaml \\
        --seeds 0 1 --budget 300000 --out ~/screens -- \\
        --set learner.hidden=[64,64,64] --set agent.subgoal_offset=[0.15,0.15,0.1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from hacray.runners.tune_summary import read_records

ROOT = Path(__file__).resolve().parent.parent


def frozen_clone(out: Path, commit: str) -> tuple[Path, str]:
    """A clone of this repository at ``commit`` under ``out`` (made once), and its full sha."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True,
                         capture_output=True, text=True).stdout.strip()
    clone = out / f"src-{sha[:12]}"
    if not clone.exists():
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", sha], check=True)
    return clone, sha


def last_record(run_dir: Path) -> Optional[dict[str, Any]]:
    records = read_records(run_dir / "metrics.jsonl")
    return records[-1] if records else None


def run_seed(clone: Path, config: str, seed: int, budget: int, run_dir: Path,
             overrides: list[str], eval_episodes: int) -> dict[str, Any]:
    """Train (or resume) one seed to the budget on one core, then evaluate its last checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"}
    hacray = [sys.executable, "-m", "hacray"]
    before = last_record(run_dir)
    start = time.perf_counter()
    if before is None or before["env_steps"] < budget:
        command = [*hacray, "train", str(clone / config), "--seed", str(seed),
                   "--max-env-steps", str(budget), "--run-dir", str(run_dir),
                   "--set", "learner.level_threads=1", "--set", "learner.torch_threads=1",
                   "--set", "train.video_every=0", *overrides]
        if before is not None:
            command.append("--resume")
        with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
            subprocess.run(command, env=env, cwd=clone, stdout=log, stderr=log, check=True)
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    evaluated = json.loads(subprocess.run(
        [*hacray, "evaluate", str(checkpoints[-1]), "--episodes", str(eval_episodes), "--json"],
        env=env, cwd=clone, check=True, capture_output=True, text=True).stdout)
    record = last_record(run_dir)
    return {"seed": seed, "env_steps": record["env_steps"], "wall_s": record["wall_time_s"],
            "this_call_s": round(time.perf_counter() - start, 1),
            "success": evaluated["eval/success_rate"],
            "level0_subgoal_reach": evaluated.get("eval/level0_subgoal_reach"),
            "episode_steps": evaluated["eval/episode_steps"]}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    ours, overrides = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the variant's name (run directories)")
    parser.add_argument("--config", required=True, help="relative to the repository root")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, required=True, help="env steps")
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2, help="seeds at a time (one core each)")
    parser.add_argument("--commit", default="HEAD", help="what the clone checks out")
    parser.add_argument("--out", type=Path, required=True, help="clones and run directories")
    args = parser.parse_args(ours)
    args.out.mkdir(parents=True, exist_ok=True)
    clone, sha = frozen_clone(args.out, args.commit)
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda seed: run_seed(
            clone, args.config, seed, args.budget, args.out / f"{args.name}-s{seed}",
            overrides, args.eval_episodes), args.seeds))
    for row in rows:
        print(f"| {args.name} | `{' '.join(overrides)}` | {row['env_steps']:,} | {row['seed']} | "
              f"{row['success']:.3f} on {args.eval_episodes} episodes | reach "
              f"{row['level0_subgoal_reach']} | {row['wall_s']:,.0f} s | {sha[:7]} |")
    summary = {"name": args.name, "commit": sha, "config": args.config, "overrides": overrides,
               "budget": args.budget, "eval_episodes": args.eval_episodes, "runs": rows,
               "median_success": statistics.median(r["success"] for r in rows)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
