"""Exceptions that cross layers, in a module that imports nothing heavy (the CLI catches them
without importing torch)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration; the message names the key and fits on one line."""


class CheckpointError(RuntimeError):
    """No usable checkpoint; the message says which file and why."""


class NumericalError(RuntimeError):
    """Training produced non-finite numbers it cannot recover from; nothing bad was saved."""
