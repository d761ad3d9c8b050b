"""``hacray tune``: a grid of config values times seeds, each a local training run in a Ray Tune
trial, summarised by final evaluation success.

Every trial is planned (its config built and validated) before Ray starts, so a bad key or value
fails in one line with nothing written. Each trial is the local runner in a Tune function
trainable; a tail of its ``metrics.jsonl`` reports every evaluation to Tune as it is written.
The summary is read back from the run directories, not from Tune's results.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from hacray.config import Config, ConfigError, load_config, to_dict
from hacray.rundir import RunDirError
from hacray.runners.tune_summary import read_records

TUNE_DIR = "_tune"
"""Tune's own experiment folder inside the sweep's output directory."""


@dataclass(frozen=True)
class TrialSpec:
    """One training run of the sweep: grid point ``point`` (its ``values``) with seed ``seed``."""
    name: str
    point: int
    values: tuple[tuple[str, str], ...]
    seed: int
    config: Config


# -- planning (pure, no Ray) ----------------------------------------------------------------
def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["section.key=v1,v2", ...]`` to ``[(key, [v1, v2]), ...]``; commas inside brackets
    stay in their value (``learner.hidden=[64,64],[256,256]`` is two values)."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = _split_values(text)
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", key) or \
                any(not v for v in values):
            raise ConfigError(f"--grid {item!r} must look like section.key=value1,value2,...")
        if key in dict(grid):
            raise ConfigError(f"--grid names {key} twice; give all its values in one --grid")
        grid.append((key, values))
    return grid


def _split_values(text: str) -> list[str]:
    """Split on commas that are not inside [...] or {...}."""
    values, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def grid_points(grid: list[tuple[str, list[str]]]) -> list[tuple[tuple[str, str], ...]]:
    """The cartesian product of the grid, first key slowest; no grid is one empty point."""
    keys = [key for key, _ in grid]
    return [tuple(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def yaml_value(text: str) -> str:
    """A number YAML would read as a string (``1e-3``: PyYAML needs a dot) as one it reads as a
    number; anything else unchanged."""
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if isinstance(yaml.safe_load(text), str) else text


def _numeric(override: str) -> str:
    key, sep, value = override.partition("=")
    return f"{key}={yaml_value(value)}" if sep else override


def plan_trials(config_path: str | Path, grid: list[tuple[str, list[str]]], seeds: int,
                overrides: Sequence[str] = ()) -> list[TrialSpec]:
    """Every grid point's config built and validated, times ``seeds`` seeds (the config's
    ``train.seed`` + 0, 1, ...). Raises ConfigError before anything is written."""
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    fixed = [item.partition("=")[0].strip() for item in overrides]
    for key, _ in grid:
        if key == "train.seed":
            raise ConfigError("--grid cannot set train.seed: --seeds chooses the seeds")
        if key in fixed:
            raise ConfigError(f"{key} is given both by --grid and by --set/--max-env-steps")
    trials = []
    for index, values in enumerate(grid_points(grid)):
        # trials are not resumed (no replay on disk) and take one CPU each (one level thread)
        config = load_config(config_path, tuple(
            _numeric(item) for item in ["train.save_replay=false", "learner.level_threads=1",
                                        *overrides,
                                        *(f"{k}={v}" for k, v in values)]))
        _check_local(config)
        for offset in range(seeds):
            seed = config.train.seed + offset
            trials.append(TrialSpec(_trial_name(index, values, seed), index, values, seed,
                                    dataclasses.replace(config, train=dataclasses.replace(
                                        config.train, seed=seed))))
    return trials


def _check_local(config: Config) -> None:
    if config.distributed.workers > 0 or config.distributed.address:
        raise ConfigError("config: tune trials are local runs (one process each, Ray Tune "
                          "spreads them); set distributed.workers=0 and no distributed.address")


def _trial_name(index: int, values: tuple[tuple[str, str], ...], seed: int) -> str:
    label = "_".join(f"{key.split('.', 1)[1]}={value}" for key, value in values)
    label = re.sub(r"[^\w.=+-]", "", label)[:60]
    return f"g{index}{'-' + label if label else ''}-s{seed}"


def check_envs(trials: Sequence[TrialSpec]) -> None:
    """Build each distinct env once (a bad env.id or subgoal range is a ConfigError) and check
    the learner device, as a run would on start, but before any trial is launched."""
    from hacray.envs import make_env
    from hacray.algo.hierarchy import level_spaces
    from hacray.runners.common import check_resources
    specs: dict[str, Any] = {}
    for trial in trials:
        check_resources(trial.config)
        key = json.dumps(to_dict(trial.config)["env"], sort_keys=True)
        if key not in specs:
            env = make_env(trial.config.env)
            specs[key] = env.spec
            env.close()
        level_spaces(trial.config, specs[key])


def prepare_out(out: Path) -> None:
    """Create the sweep's output directory; an existing non-empty one is never reused."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"output directory {out} already exists and is not empty; "
                          "choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create output directory {out}: {err.strerror}") from None


# -- the trials, on Ray ---------------------------------------------------------------------
def run_trials(trials: Sequence[TrialSpec], out: Path, trial_cpus: float = 1.0,
               address: Optional[str] = None) -> list[str]:
    """Run every trial through Ray Tune (as many at once as the CPUs allow); returns the names
    of the trials that failed. Tune keeps its own files under ``out/_tune``."""
    # Tune's newer console output prints an experiment banner even at verbose=0; the older
    # one is silent there. Set before Tune reads it, in fit().
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    from hacray.runners.ray_util import init_ray, shutdown_local_ray
    # no dashboard: it doubles Ray's start-up time, and the trials report on stderr
    started = init_ray(address, include_dashboard=False)
    try:
        specs = {trial.name: trial for trial in trials}
        trainable = tune.with_resources(
            tune.with_parameters(trial_trainable, specs=specs, out=str(out.resolve())),
            {"cpu": trial_cpus})
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(list(specs))},
            tune_config=tune.TuneConfig(trial_name_creator=_tune_trial_name,
                                        trial_dirname_creator=_tune_trial_name,
                                        reuse_actors=True),  # torch imported once per actor
            run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(out.resolve()), verbose=0,
                                      callbacks=[_trial_lines()],
                                      failure_config=tune.FailureConfig(max_failures=0)))
        results = tuner.fit()
        return [result.config["trial"] for result in results if result.error is not None]
    finally:
        if started:
            shutdown_local_ray()


def _tune_trial_name(trial: Any) -> str:
    return trial.config["trial"]


def trial_trainable(params: dict[str, Any], specs: dict[str, TrialSpec], out: str) -> None:
    """Tune function trainable: the local runner in a thread, each evaluation it writes to
    ``metrics.jsonl`` reported to Tune as it appears."""
    from ray import tune
    spec = specs[params["trial"]]
    run_dir = Path(out) / spec.name
    runner = _RunnerThread(spec.config, run_dir)
    runner.start()
    reported = 0
    while True:
        finished = not runner.is_alive()  # checked before reading: no record is missed
        records = read_records(run_dir / "metrics.jsonl")
        for record in records[reported:]:
            tune.report(_tune_metrics(record))
        reported = len(records)
        if finished:
            break
        time.sleep(0.5)
    if runner.error is not None:
        raise runner.error


class _RunnerThread(threading.Thread):
    """``train_local`` in a thread, keeping its exception for the trainable to raise."""

    def __init__(self, config: Config, run_dir: Path):
        super().__init__(daemon=True)
        self.config, self.run_dir = config, run_dir
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        from hacray.runners.local import train_local
        try:
            train_local(self.config, self.run_dir, progress=False)
        except BaseException as err:  # noqa: BLE001 - re-raised in the trainable's thread
            self.error = err


def _tune_metrics(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("env_steps", "updates", "wall_time_s", "eval/success_rate")
    return {key: record[key] for key in keys if record.get(key) is not None}


def _trial_lines() -> Any:
    """A Tune callback printing one line on stderr per finished or failed trial."""
    from ray import tune

    class TrialLines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            print(f"hacray: trial {trial.config['trial']} done: eval success "
                  f"{result.get('eval/success_rate', float('nan')):.2f} at "
                  f"{result.get('env_steps', 0):,d} env steps, "
                  f"{result.get('wall_time_s', 0.0):.0f} s", file=sys.stderr, flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"hacray: trial {trial.config['trial']} failed (Tune's error.txt is under "
                  f"{TUNE_DIR}/{trial.config['trial']})", file=sys.stderr, flush=True)

    return TrialLines()
