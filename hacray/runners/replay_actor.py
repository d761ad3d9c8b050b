"""The replay as a Ray actor: HierarchicalReplay behind the RateLimiter that holds updates per
env step near ``replay.updates_per_env_step``. Rollout workers push whole episodes to it; the
learner actor samples from it."""
from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import ray

from hacray.algo.replay import RateLimiter
from hacray.blueprint import Blueprint
from hacray.config import Config
from hacray.envs import EnvSpec
from hacray.runners.ray_util import meters
from hacray.runners.shards import role, split_snapshot
from hacray.types import Counters, Episode, ReplayStatus, Sample, Turn

if TYPE_CHECKING:  # checkpoint imports torch: not for the handle holders (rollout workers)
    from hacray.checkpoint import RunState

HOLD_S = 1.0            # longest the replay holds a reply while its limiter says wait
RECENT, LAG_WINDOW = 100, 10  # episodes behind train/* statistics, and behind policy_lag


@ray.remote
class ReplayActor:
    """HierarchicalReplay and its RateLimiter. An asyncio actor: an insert or a sample that the
    limiter defers waits (at most HOLD_S per call) without blocking anybody else's calls."""

    def __init__(self, config: Config, spec: EnvSpec, counters: Counters, updates: int,
                 rng_state: Optional[dict[str, Any]],
                 learner_state: Optional[dict[str, Any]] = None,
                 snapshot: Optional[dict[str, Any]] = None, shard: int = 0):
        self.replay = Blueprint.of(config, spec).replay(shard)
        if snapshot:  # resumed with the checkpoint's replay snapshot: rows, statistics, rng
            self.replay.load_state_dict(snapshot)
        elif learner_state:  # resumed empty: the normaliser statistics go on from the learner's
            from hacray.algo.learner import normalizer_stats  # torch: not for handle holders
            self.replay.restore_normalizer_stats(*normalizer_stats(learner_state))
        if rng_state:
            self.replay.rng.bit_generator.state = rng_state
        self.limiter = RateLimiter(config.replay.updates_per_env_step, config.replay.tolerance)
        self.limiter.env_steps, self.limiter.updates = counters.env_steps, updates
        self.min_size = config.replay.min_size
        self.episodes_before = counters.episodes - self.replay.episodes
        self.synchronous = config.distributed.synchronous  # no limiter: the driver paces
        self.from_worker: dict[int, int] = {}
        self.recent: deque[Episode] = deque(maxlen=RECENT)
        self.changed, self.closed = asyncio.Condition(), False
        self.meters = meters(role(shard), gauges=tuple(
            f"replay_size_level{i}" for i in range(config.agent.levels)))

    async def add_episodes(self, episodes: list[Episode]) -> Turn:
        """Relabel and store a worker's episodes; answer whether it may send its next ones."""
        for episode in episodes:
            self.replay.add_episode(episode)
            self.limiter.env_steps += episode.stats.env_steps
            self.from_worker[episode.worker_id] = self.from_worker.get(episode.worker_id, 0) + 1
            self.recent.append(episode._replace(segments=()))
            await asyncio.sleep(0)  # a waiting sample request goes next, not after the call
        for i, size in enumerate(self.replay.sizes()):
            self.meters[f"replay_size_level{i}"].set(size)
        await self._notify()
        return await self.turn()

    async def turn(self) -> Turn:
        """Inserts wait while the learner lags by more than the tolerance (not while filling)."""
        if self.synchronous:
            return Turn.STOP if self.closed else Turn.GO
        if await self._wait(lambda: self.closed or not self._ready() or self.limiter.can_insert()):
            return Turn.STOP if self.closed else Turn.GO
        return Turn.WAIT

    async def sample(self, batch_size: int, batches: int = 1) -> Optional[list[Sample]]:
        """A batch per level for each of up to ``batches`` updates, as many as the limiter
        allows once it allows one (they count as done); None if it did not within HOLD_S, and
        the learner asks again. Synchronous runs get ``batches`` whenever replay is ready (None
        at once when it is not)."""
        if self.synchronous:
            if not self._ready():
                return None
        elif not await self._wait(lambda: self._ready() and self.limiter.can_update()):
            return None
        else:
            batches = self.limiter.updates_allowed(batches)
        self.limiter.updates += batches
        await self._notify()
        stats = self.replay.normalizer_stats()  # one copy on the wire: pickle shares it
        return [Sample(self.replay.sample(batch_size), *stats) for _ in range(batches)]

    async def snapshot(self) -> dict[str, Any]:
        """The buffer as ``HierarchicalReplay.state_dict`` (copies), for the checkpoint."""
        return self.replay.state_dict()

    async def close(self) -> None:
        """Answer every worker's next insert with STOP."""
        self.closed = True
        await self._notify()

    async def status(self) -> ReplayStatus:
        """Counters for the driver's records and checkpoints."""
        recent = list(self.recent)
        return ReplayStatus(
            env_steps=self.limiter.env_steps, episodes=self.episodes_before + self.replay.episodes,
            sizes=self.replay.sizes(), episodes_from_worker=dict(self.from_worker),
            degenerate_episodes=self.replay.degenerate_episodes,
            rejected_episodes=self.replay.rejected_episodes, recent=[e.stats for e in recent],
            mean_policy_version=float(np.mean([e.policy_version for e in recent[-LAG_WINDOW:]]
                                              or [0])),
            rng_state=self.replay.rng.bit_generator.state, updates_granted=self.limiter.updates)

    def _ready(self) -> bool:
        return self.replay.ready(self.min_size)

    async def _wait(self, allowed: Callable[[], bool]) -> bool:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(allowed), HOLD_S)
            except asyncio.TimeoutError:
                pass
            return allowed()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


def start_shards(config: Config, spec: EnvSpec, counters: Counters, state: Optional[RunState],
                 snapshot: Optional[dict[str, Any]], cpus: float, bundles: list[Any],
                 name: Callable[[str], str]) -> list[ray.actor.ActorHandle]:
    """``distributed.replay_shards`` replay actors, shard s in ``bundles[s]``, each from its part
    of the checkpoint's snapshot. Shard 0 carries the run's totals so far (env steps, updates,
    the learner's statistics for an empty replay); the others start from nothing."""
    shards = config.distributed.replay_shards
    parts, note = split_snapshot(snapshot, shards)
    if note:
        print(f"hacray: {note}", file=sys.stderr)
    learner_state = state.learner if state else None
    return [ReplayActor.options(name=name(role(s)), num_cpus=cpus,
                                scheduling_strategy=bundles[s]).remote(
        config, spec, counters if s == 0 else Counters(),
        learner_state["updates"] if learner_state and s == 0 else 0,
        state.rng.get(role(s)) if state else None, learner_state if s == 0 else None,
        parts[s], shard=s) for s in range(shards)]
