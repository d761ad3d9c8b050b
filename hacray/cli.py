"""``hacray train``, ``hacray evaluate`` and ``hacray tune``; bad input: one line on stderr,
exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hacray.config import Config, ConfigError, load_config
from hacray.errors import CheckpointError, NumericalError
from hacray.rundir import RunDirError

USAGE_ERRORS = (ConfigError, CheckpointError, RunDirError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hacray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a policy (locally, or on Ray with --workers)")
    train.add_argument("config", nargs="?", help="YAML config (default: the built-in short "
                       "FetchReach run)")
    train.add_argument("--run-dir", type=Path, help="where to write (default runs/<name>-<time>)")
    train.add_argument("--seed", type=int, help="root seed (overrides train.seed)")
    train.add_argument("--max-env-steps", type=int, help="overrides train.max_env_steps")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="SECTION.KEY=VALUE", help="override one config value (repeatable)")
    train.add_argument("--workers", type=int, help="Ray rollout workers (0 = one process)")
    train.add_argument("--envs-per-worker", type=int, help="envs stepped by each worker")
    train.add_argument("--address", help="Ray cluster to join ('auto' for the current one)")
    group = train.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --run-dir")
    evaluate = sub.add_parser("evaluate", help="evaluate a run directory or checkpoint")
    evaluate.add_argument("target", type=Path, help="run directory or checkpoint file")
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--video", type=Path, metavar="OUT.gif|OUT.mp4",
                          help="also render the evaluation episodes, each level's goal marked "
                          "(.mp4 needs imageio and imageio-ffmpeg)")
    _tune_parser(sub)
    return parser


def _tune_parser(sub: Any) -> None:
    tune = sub.add_parser("tune", help="sweep a grid of config values x seeds with Ray Tune, "
                          "each trial a local training run")
    tune.add_argument("config", help="YAML config every trial starts from")
    tune.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                      help="values to sweep (repeatable: the grid is the product of all)")
    tune.add_argument("--seeds", type=int, default=1,
                      help="seeds per grid point: train.seed + 0, 1, ... (default 1)")
    tune.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="SECTION.KEY=VALUE", help="override one value in every trial")
    tune.add_argument("--max-env-steps", type=int, help="overrides train.max_env_steps")
    tune.add_argument("--out", type=Path, help="sweep directory (default runs/tune-<config>-"
                      "<time>); must not exist or be empty")
    tune.add_argument("--trial-cpus", type=float, default=1.0,
                      help="CPUs Ray reserves per trial; trials at once = CPUs / this")
    tune.add_argument("--address", help="Ray cluster to run the trials on (default: a local "
                      "Ray); --out must then be on storage that every node shares")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hacray.render import default_gl_backend
    default_gl_backend()  # MuJoCo reads MUJOCO_GL once, at import: set it before any env exists
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "tune":
            return _tune(args)
        return _evaluate(args)
    except USAGE_ERRORS as err:
        print(f"hacray: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # non-finite training, or a run on Ray lost a peer
        if not (isinstance(err, NumericalError) or str(err).startswith("hacray: ")):
            raise
        print(f"hacray: error: {str(err).removeprefix('hacray: ')}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, unwritable run directory: earlier checkpoints stay intact
        # (also TimeoutError: a peer of a run on Ray did not answer)
        where = f"{err.filename}: " if err.filename else ""
        print(f"hacray: error: {where}{err.strerror or str(err).removeprefix('hacray: ')}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def train_config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    for flag, key in ((args.seed, "train.seed"), (args.max_env_steps, "train.max_env_steps"),
                      (args.workers, "distributed.workers"),
                      (args.envs_per_worker, "distributed.envs_per_worker"),
                      (args.address, "distributed.address")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    return load_config(args.config, tuple(overrides))


def _train(args: argparse.Namespace) -> int:
    config = train_config(args)
    if args.resume and args.run_dir is None:
        raise RunDirError("--resume needs --run-dir")
    run_dir = args.run_dir or Path("runs") / (
        f"{config.env.id}-L{config.agent.levels}-s{config.train.seed}-"
        f"{time.strftime('%Y%m%d-%H%M%S')}")
    if config.distributed.workers > 0 or config.distributed.address:
        from hacray.runners.distributed import train_distributed
        result = train_distributed(config, run_dir, args.resume, args.overwrite)
    else:
        from hacray.runners.local import train_local
        result = train_local(config, run_dir, args.resume, args.overwrite)
    print(json.dumps({"run_dir": str(run_dir), **_headline(result)}))
    return 0


def _headline(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("env_steps", "updates", "wall_time_s", "eval/success_rate")
    return {k: record[k] for k in keys if k in record}


def _evaluate(args: argparse.Namespace) -> int:
    from hacray.evaluate import evaluate_checkpoint, format_table
    from hacray.video import VideoError, record_episodes
    video = {}
    if args.video is not None:  # first, so a bad file name fails before any evaluation
        try:
            summary = record_episodes(args.target, args.video, args.episodes)
        except VideoError as err:
            print(f"hacray: error: {err}", file=sys.stderr)
            return 2
        video = {"video": str(summary.path), "video_frames": summary.frames}
    result = {**evaluate_checkpoint(args.target, args.episodes), **video}
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _tune(args: argparse.Namespace) -> int:
    """Plan and validate every trial, then run them on Ray Tune and print the summary table."""
    from hacray.runners import tune as sweep
    from hacray.runners import tune_summary
    overrides = list(args.overrides)
    if args.max_env_steps is not None:
        overrides.append(f"train.max_env_steps={args.max_env_steps}")
    if args.trial_cpus <= 0:
        raise ConfigError("--trial-cpus must be > 0")
    grid = sweep.parse_grid(args.grid)
    trials = sweep.plan_trials(args.config, grid, args.seeds, overrides)
    sweep.check_envs(trials)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"tune-{Path(args.config).stem}-{stamp}"
    sweep.prepare_out(out)
    start = time.perf_counter()
    failed = sweep.run_trials(trials, out, args.trial_cpus, args.address)
    rows = tune_summary.summarize(trials, out)
    tune_summary.write_summary(rows, out, {
        "config": str(args.config), "grid": dict(grid), "seeds": args.seeds,
        "overrides": overrides, "failed": failed, "wall_time_s": time.perf_counter() - start})
    print(tune_summary.format_table(rows))
    print(f"hacray: sweep of {len(trials)} trials in {out}", file=sys.stderr)
    if failed:
        print(f"hacray: error: {len(failed)} of {len(trials)} trials failed: "
              f"{', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
