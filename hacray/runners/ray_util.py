"""What every actor of a run on Ray shares: dashboard metrics and calls that cannot hang."""
from __future__ import annotations

from typing import Any

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
