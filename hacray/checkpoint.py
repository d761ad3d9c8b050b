"""Checkpoints: one object holding the learner's whole state plus the run's counters.

Written to a temporary file and renamed (a crash never leaves half a checkpoint under a real
name), rotated (``keep`` newest), with ``best.pt`` copied from the best evaluation success.
Loaded with ``torch.load(weights_only=True)``: no arbitrary code runs from a checkpoint file.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

PATTERN = re.compile(r"^ckpt_(\d{12})\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint; the message says which file and why."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save(run_dir: Path, state: dict[str, Any], env_steps: int, keep: int,
         is_best: bool = False) -> Path:
    """Atomically write ``ckpt_<env_steps>.pt``, drop the oldest beyond ``keep``, copy to best."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{env_steps:012d}.pt"
    _atomic_save(state, path)
    for old in list_checkpoints(run_dir)[:-keep]:
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


def load_latest(run_dir: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """Newest readable checkpoint of a run, and a warning for each damaged newer one skipped."""
    warnings = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load(path), warnings
        except CheckpointError as err:
            warnings.append(f"{err}; falling back to an older checkpoint")
    raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(run_dir)}")


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
