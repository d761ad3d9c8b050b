"""Exceptions that cross layers, in a module that imports nothing heavy (the CLI catches them
without importing torch)."""
from __future__ import annotations

import sys
from typing import Any, Callable


class ConfigError(ValueError):
    """A bad configuration; the message names the key and fits on one line."""


class CheckpointError(RuntimeError):
    """No usable checkpoint; the message says which file and why."""


class NumericalError(RuntimeError):
    """Training produced non-finite numbers it cannot recover from; nothing bad was saved."""


def run_script(main: Callable[[], Any], name: str) -> None:
    """Run a script's ``main``: a ConfigError or CheckpointError ends it with one line on
    stderr, ``name: message``, and status 2, as hacray's own commands do."""
    try:
        main()
    except (CheckpointError, ConfigError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        sys.exit(2)
