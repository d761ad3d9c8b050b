"""Run directories: created, replaced or resumed as asked, and held by one writer at a time.

A run holds an exclusive ``flock`` on ``RUN_DIR/.hacray.lock`` from before it writes anything
until it ends. The kernel drops the lock when the holding process dies, however it dies
(SIGKILL included), so a crashed run never blocks ``--resume``; a second ``hacray train`` on a
directory in use (a second ``--resume``, an ``--overwrite``, the same ``ray job submit`` sent
twice) is refused with the holder's process and host, and writes nothing. The lock file also
says who holds it, for that message. No torch here: the CLI imports this module.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

from hacray.config import Config, ConfigError, load_config

LOCK_NAME = ".hacray.lock"


class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists, in use, missing, unwritable)."""


class RunDirLock:
    """The exclusive hold on one run directory; released by ``release`` or the process's end."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir, self.fd = run_dir, fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunDirLock:
        """Hold ``run_dir`` (which must exist); RunDirError naming the holder if it is taken."""
        path = run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirError(f"cannot write run directory {run_dir}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise RunDirError(f"run directory {run_dir} is in use by {holder}; wait for it to "
                              "end (or stop it) before resuming or replacing it") from None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return cls(run_dir, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


def holder(run_dir: Path) -> str | None:
    """Who holds ``run_dir`` now, or None; looks without creating anything."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails while a writer holds it
        return None
    except BlockingIOError:
        return _describe(os.pread(fd, 4096, 0))
    finally:
        os.close(fd)


def _describe(record: bytes) -> str:
    try:
        info: dict[str, Any] = json.loads(record)
        return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def prepare_run_dir(run_dir: Path, write_config: Callable[[Path], None], resume: bool,
                    overwrite: bool) -> RunDirLock:
    """Hold the run directory and make it ready: reused as it is when resuming, else created
    (an existing non-empty one only with ``overwrite``) with ``write_config(path)``'s file.
    Nothing is written or removed unless the directory is free."""
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"cannot resume: {run_dir} holds no hacray run (no config.yaml)")
        return RunDirLock.acquire(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            in_use = holder(run_dir)
            if in_use:
                raise RunDirError(f"run directory {run_dir} is in use by {in_use}")
            raise RunDirError(f"run directory {run_dir} already exists; "
                              "pass --resume to continue it or --overwrite to replace it")
        lock = RunDirLock.acquire(run_dir)  # a live run is refused before anything goes
        for entry in run_dir.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    else:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot write run directory {run_dir}: {err.strerror}") from None
        lock = RunDirLock.acquire(run_dir)
    try:
        write_config(run_dir / "config.yaml")
    except OSError as err:
        lock.release()
        raise RunDirError(f"cannot write run directory {run_dir}: {err.strerror}") from None
    return lock


def check_resume_config(run_dir: Path, config: Config) -> None:
    """A resumed run must keep the shapes of the saved one: its networks' and its replay
    buffer's (the hindsight columns of replay.her_at_sample, the weights of
    replay.lift_priority)."""
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"cannot resume: {run_dir} holds no hacray run (no config.yaml)")
    saved = load_config(run_dir / "config.yaml")
    for section, key in (("env", "id"), ("agent", "levels"), ("learner", "hidden"),
                         ("learner", "top_hidden"), ("learner", "layer_norm"),
                         ("learner", "twin_critics"),
                         ("agent", "lower_sees_goal"), ("replay", "her_at_sample"),
                         ("replay", "lift_priority")):
        old, new = getattr(getattr(saved, section), key), getattr(getattr(config, section), key)
        if old != new:
            raise ConfigError(f"config: {section}.{key} is {new!r} but the run being resumed "
                              f"used {old!r}")
