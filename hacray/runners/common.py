"""What the local and the distributed runner share: resource checks, the stop flag, throughput
and the hyperparameter table. Building components is ``hacray.blueprint``; evaluating,
``hacray.evaluation``; run directories, ``hacray.rundir``."""
from __future__ import annotations

import signal
import time
from typing import Any

from hacray.config import Config, ConfigError


def check_resources(config: Config) -> None:
    """Refuse GPU requests this machine cannot serve, before anything is written."""
    import torch
    if config.learner.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config: learner.device is cuda but this machine has no CUDA GPU")
    if config.distributed.learner_gpus > 0 and config.distributed.address is None \
            and not torch.cuda.is_available():
        raise ConfigError(f"config: distributed.learner_gpus is "
                          f"{config.distributed.learner_gpus} but this machine has no GPU")


def hyperparameter_table(config: Config) -> str:
    """The resolved config as a two-column markdown table, for TensorBoard's text tab."""
    from hacray.config import to_dict
    rows = [f"|{section}.{key}|{value}|" for section, values in to_dict(config).items()
            for key, value in values.items()]
    return "|key|value|\n|-|-|\n" + "\n".join(rows)


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after a final checkpoint; a second exits now."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the host program
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise SystemExit(128 + signum)
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Throughput:
    """Rates between two calls of ``rates``."""

    def __init__(self, env_steps: int, updates: int):
        self.t, self.env_steps, self.updates = time.perf_counter(), env_steps, updates

    def rates(self, env_steps: int, updates: int) -> dict[str, float]:
        now = time.perf_counter()
        dt = max(now - self.t, 1e-9)
        out = {"charts/env_steps_per_s": (env_steps - self.env_steps) / dt,
               "charts/updates_per_s": (updates - self.updates) / dt}
        self.t, self.env_steps, self.updates = now, env_steps, updates
        return out
