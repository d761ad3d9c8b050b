"""Ray helpers of every run on Ray: starting and stopping a local Ray, dashboard metrics, and
calls that cannot hang."""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import ray
from ray.util import metrics


def meters(role: str, counters: tuple[str, ...] = (), gauges: tuple[str, ...] = ()) -> dict:
    """Ray dashboard metrics ``hacray_<name>``, tagged with the role that reports them."""
    made = {n: metrics.Counter(f"hacray_{n}", tag_keys=("role",)) for n in counters}
    made.update({n: metrics.Gauge(f"hacray_{n}", tag_keys=("role",)) for n in gauges})
    for meter in made.values():
        meter.set_default_tags({"role": role})
    return made


def get(ref: Any, timeout_s: float, peer: str) -> Any:
    """``ray.get`` that fails loudly, naming the peer, instead of hanging on a dead one."""
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"hacray: {peer} did not answer within {timeout_s:.0f} s") from None


def shutdown_local_ray(grace_s: float = 3.0) -> None:
    """Stop the Ray this process started, and wait for its processes: a worker notices its
    raylet is gone on its own, seconds later under load; after ``grace_s`` it is killed."""
    import psutil  # shipped with ray[default]
    processes = psutil.Process().children(recursive=True)
    ray.shutdown()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def init_ray(address: Optional[str], include_dashboard: Optional[bool] = None) -> bool:
    """Join ``address``, or start a local Ray whose dashboard listens on localhost only.
    Returns whether this call connected (False: the caller's Ray, left as it is).

    A local Ray runs its workers at normal priority: Ray's default (nice 15) starves them
    ~30-fold beside any other busy process on the machine (measured: actors got 3-4% of a core
    next to two training runs, and a 3,000-step run took minutes instead of 20 s).
    """
    if ray.is_initialized():
        return False
    # actors print nothing in normal operation: what they do print (errors) belongs on screen
    options: dict[str, Any] = dict(log_to_driver=True, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **options)
    else:  # include_dashboard=None: the dashboard starts where its dependencies are installed
        os.environ.setdefault("RAY_worker_niceness", "0")  # read by the raylet it starts
        ray.init(include_dashboard=include_dashboard, dashboard_host="127.0.0.1", **options)
    return True
