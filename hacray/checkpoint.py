"""Checkpoints: one record (:class:`RunState`) holding the learner's whole state plus the run's
counters, RNG streams and recent episodes' statistics, written and read only here.

Written to a temporary file and renamed (a crash never leaves half a checkpoint under a real
name), rotated (``keep`` newest), with ``best.pt`` copied from the best evaluation success.
Loaded with ``torch.load(weights_only=True)``: no arbitrary code runs from a checkpoint file.

The replay buffer, optionally, goes to ``replay_<env steps>.pt`` beside the checkpoint of the
same step (written first; only the newest is kept: it is large), so that a resumed run can go
on exactly where it stopped.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from hacray.errors import CheckpointError
from hacray.types import Counters

PATTERN = re.compile(r"^ckpt_(\d{12})\.pt$")
REPLAY_PATTERN = re.compile(r"^replay_(\d{12})\.pt$")


LAYOUT_VERSION = 1
"""The layout of :meth:`RunState.to_dict`; checkpoints written before the field existed have
the same layout, and read as version 1."""


@dataclass
class RunState:
    """One checkpoint. ``rng``: the run's RNG streams' states (``replay``; ``env`` in a local
    run, whose env stream a distributed run splits per worker); ``recent``: the statistics of
    the last training episodes (``EpisodeStats`` as tuples), behind ``train/*``; ``config``: the
    run's resolved config as a plain dict, so that a checkpoint copied out of its run directory
    can still be evaluated (None in checkpoints written before it was kept)."""

    learner: dict[str, Any]
    counters: Counters
    rng: dict[str, Any]
    recent: list[tuple] = field(default_factory=list)
    config: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        state = {"version": LAYOUT_VERSION, "learner": self.learner,
                 "counters": dataclasses.asdict(self.counters), "rng": self.rng,
                 "recent": self.recent}
        if self.config is not None:
            state["config"] = self.config
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any], path: Path) -> RunState:
        """The record of a loaded checkpoint file; CheckpointError naming what is wrong."""
        version = state.get("version", 1)
        if version != LAYOUT_VERSION:
            raise CheckpointError(f"{path} has checkpoint layout {version!r}; this hacray reads "
                                  f"layout {LAYOUT_VERSION}: use the hacray that wrote it")
        if "learner" not in state:
            raise CheckpointError(f"{path} holds no policy (a replay snapshot?); give a "
                                  "ckpt_*.pt, best.pt or a run directory")
        try:
            counters = Counters(**state["counters"])
        except (KeyError, TypeError):
            raise CheckpointError(f"{path} has no usable counters") from None
        config = state.get("config")
        return cls(state["learner"], counters, dict(state.get("rng", {})),
                   list(state.get("recent", [])), dict(config) if config is not None else None)


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save(run_dir: Path, run_state: RunState, keep: int, is_best: bool = False,
         replay: Optional[dict[str, Any]] = None) -> Path:
    """Atomically write ``ckpt_<env_steps>.pt``, drop the oldest beyond ``keep``, copy to best.
    With ``replay`` (a replay's ``state_dict``), write it first as ``replay_<env_steps>.pt``;
    every other replay snapshot is deleted once the checkpoint is in place."""
    env_steps, state = run_state.counters.env_steps, run_state.to_dict()
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{env_steps:012d}.pt"
    replay_path = folder / f"replay_{env_steps:012d}.pt"
    if replay is not None:
        _atomic_save(_to_tensors(replay), replay_path)
    try:
        _atomic_save(state, path)
    except BaseException:  # a snapshot without its checkpoint is only lost disk space
        if replay is not None:
            replay_path.unlink(missing_ok=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for old in folder.iterdir():
        if REPLAY_PATTERN.match(old.name) and old != replay_path:
            old.unlink(missing_ok=True)
    if is_best:
        tmp = folder / ".best.pt.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, folder / "best.pt")
    return path


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Rotated checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.match(p.name))


def load(path: Path) -> dict[str, Any]:
    """Read one checkpoint safely; a truncated or foreign file raises CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__})") from None


def read(path: Path) -> RunState:
    """One checkpoint file as its record."""
    return RunState.from_dict(load(path), path)


def load_latest(run_dir: Path) -> tuple[Path, RunState, list[str]]:
    """Newest readable checkpoint of a run, and a warning for each damaged newer one skipped."""
    warnings = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, read(path), warnings
        except CheckpointError as err:
            warnings.append(f"{err}; falling back to an older checkpoint")
    raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(run_dir)}")


def load_replay(run_dir: Path, env_steps: int) -> tuple[Optional[dict[str, Any]], str]:
    """The replay snapshot saved with the checkpoint of ``env_steps`` (numpy arrays again), or
    None and the reason the replay has to start empty."""
    path = checkpoint_dir(run_dir) / f"replay_{env_steps:012d}.pt"
    if not path.is_file():
        return None, f"no replay snapshot for step {env_steps}: the replay restarts empty"
    try:
        return _to_arrays(load(path)), f"replay restored from {path.name}"
    except CheckpointError as err:
        return None, f"{err}: the replay restarts empty"


def _to_tensors(tree: Any) -> Any:
    """numpy arrays -> tensors (sharing memory), so that the file loads with weights_only."""
    if isinstance(tree, dict):
        return {k: _to_tensors(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_tensors(v) for v in tree]
    if not isinstance(tree, np.ndarray):
        return tree
    with warnings.catch_warnings():  # Ray hands out read-only arrays; torch.save only reads
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(tree)


def _to_arrays(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_arrays(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_arrays(v) for v in tree]
    return tree.numpy() if isinstance(tree, torch.Tensor) else tree


def resolve(path_or_run: Path) -> Path:
    """A checkpoint file, or a run directory's best (else newest) checkpoint."""
    if path_or_run.is_file():
        return path_or_run
    best = checkpoint_dir(path_or_run) / "best.pt"
    if best.is_file():
        return best
    found = list_checkpoints(path_or_run)
    if not found:
        raise CheckpointError(f"no checkpoint found at {path_or_run}")
    return found[-1]
