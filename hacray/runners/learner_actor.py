"""The learner as a Ray actor: it samples from the replay actor, updates every level and
publishes weights (one ``ray.put`` per version) for the workers to pull.

torch is imported inside the actor, not by this module: a handle to an actor makes its holder
import the actor's module, and every rollout worker holds one to the learner."""
from __future__ import annotations

import asyncio
import time
import warnings
from dataclasses import replace
from typing import Any, Optional

import ray

from hacray.algo.replay import updates_owed
from hacray.blueprint import Blueprint
from hacray.config import Config
from hacray.envs import EnvSpec
from hacray.runners.ray_util import meters
from hacray.runners.shards import merge_stats
from hacray.types import LearnerPace, LearnerSnapshot, Sample

SAMPLES_IN_FLIGHT = 2   # sample requests queued at the replay, so sampling overlaps the update


def granted_level_threads(config: Config) -> Config:
    """``learner.level_threads`` 0 (one per level) in an actor means at most the CPUs that Ray
    granted it, rounded down: a local Ray on a small machine shrinks every request, and level
    threads beyond the grant would only take cores from the rollout workers."""
    from hacray.algo.learner import level_threads
    granted = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    threads = level_threads(config.learner, config.agent.levels, cpus=granted)
    return replace(config, learner=replace(config.learner, level_threads=threads))


@ray.remote
class LearnerActor:
    """The Learner fed by the replay actor. An asyncio actor: weight requests and snapshots are
    answered between two updates, never during one."""

    def __init__(self, config: Config, spec: EnvSpec, state: Optional[dict[str, Any]],
                 replays: list[ray.actor.ActorHandle]):
        # sampled batches arrive as read-only numpy views; the learner only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.learner = Blueprint.of(granted_level_threads(config), spec).learner()
        if state is not None:
            self.learner.load_state_dict(state)
        self.replays, self.batch_size = replays, config.learner.batch_size
        # one request's batches make one learner call: Ray's cost per call spread over them
        self.per_call = config.learner.updates_per_call
        self.updates_per_env_step = config.replay.updates_per_env_step
        self.timeout_s = config.distributed.timeout_s
        # publish as often as the local runner does: once per cycle of exploration episodes
        cycle_steps = config.train.episodes_per_cycle * spec.max_episode_steps
        self.publish_every = max(1, updates_owed(config.replay.updates_per_env_step,
                                                 cycle_steps, 0))
        self.metrics: dict[str, Any] = {}
        # each shard's newest normaliser statistics; the learner uses them merged (one shard:
        # its own, unchanged)
        self.shard_stats: list[Any] = [None] * len(replays)
        self.next_shard = 0  # synchronous mode asks the shards in turn
        self.stopping, self.published_at = False, -1
        self.meters = meters("learner", ("updates",), ("policy_version",))
        self._publish()

    async def run(self) -> LearnerPace:
        """Sample -> set normaliser statistics -> update -> publish, until ``stop``; a later
        ``run`` goes on from there. Returns its steady pace, for benchmarks."""
        self.stopping = False
        pending = {self._request(shard): shard for shard in range(len(self.replays))
                   for _ in range(SAMPLES_IN_FLIGHT)}
        first, start, updating_s = self.learner.updates, None, 0.0
        while not self.stopping:
            done, _ = await asyncio.wait(pending, timeout=self.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError(
                    f"hacray: replay did not answer within {self.timeout_s:.0f} s")
            for reply in sorted(done, key=pending.get):  # one shard's batches per call
                shard = pending.pop(reply)
                pending[self._request(shard)] = shard
                samples = reply.result()
                if not samples:  # None: that shard still filling, or the learner ahead
                    continue
                began = time.perf_counter()
                self._update(samples, shard)
                if start is None:
                    first, start = self.learner.updates, time.perf_counter()
                else:
                    updating_s += time.perf_counter() - began
                if (self.learner.updates // self.publish_every
                        > self.published_at // self.publish_every):
                    self._publish()
        return LearnerPace(self.learner.updates - first,
                           0.0 if start is None else time.perf_counter() - start, updating_s)

    async def train(self, env_steps: int) -> None:
        """Synchronous mode: the updates owed at ``env_steps`` (the local runner's ``train``),
        then publish."""
        owed = updates_owed(self.updates_per_env_step, env_steps, self.learner.updates)
        unready = 0  # shards in a row not filled to min_size yet: all of them ends the cycle
        while owed > 0 and unready < len(self.replays):
            shard, self.next_shard = self.next_shard, (self.next_shard + 1) % len(self.replays)
            samples = await asyncio.wait_for(
                self.replays[shard].sample.remote(self.batch_size, min(owed, self.per_call)),
                self.timeout_s)
            if samples is None:
                unready += 1
                continue
            unready = 0
            self._update(samples, shard)
            owed -= len(samples)
        self._publish()

    def _request(self, shard: int) -> asyncio.Future:
        """A sample request, its reply handed to the event loop as it arrives: awaiting the
        ref itself would only start listening for it at the ``await``, after the update before
        it (with 4 batches per request: learner efficiency 0.937 -> 0.991, BENCHMARKS.md).
        Not ``ref.as_future()``: Ray 2.60 logs a deprecation line on every call of it."""
        ref = self.replays[shard].sample.remote(self.batch_size, self.per_call)
        return asyncio.wrap_future(ref.future())

    def _update(self, samples: list[Sample], shard: int) -> None:
        """One learner call for one shard's reply (its batches carry the same statistics)."""
        stats = (samples[-1].obs_stats, samples[-1].goal_stats)
        if counts(stats) != counts(self.shard_stats[shard]):  # new only when replay got episodes
            self.shard_stats[shard] = stats
            self.learner.set_normalizer(*merge_stats([s for s in self.shard_stats if s]))
        self.metrics = self.learner.update_many([s.batches for s in samples])
        self.meters["updates"].inc(len(samples))

    async def stop(self) -> None:
        self.stopping = True

    async def latest(self, known_version: int) -> Optional[list[ray.ObjectRef]]:
        """The newest weights' ref, unless ``known_version`` is already the newest."""
        return None if known_version == self.learner.version else [self.weights]

    async def snapshot(self) -> LearnerSnapshot:
        """The current weights (published now if there are newer ones) and the whole state."""
        self._publish()
        learner = self.learner
        return LearnerSnapshot(learner.updates, learner.version, learner.skipped_updates,
                               {k: float(v) for k, v in self.metrics.items()}, [self.weights],
                               learner.state_dict())

    def _publish(self) -> None:
        """One ``ray.put`` per version (none without new updates); all workers get this ref."""
        if self.learner.updates != self.published_at:
            self.weights, self.published_at = ray.put(self.learner.weights()), self.learner.updates
            self.meters["policy_version"].set(self.learner.version)


def counts(stats: Any) -> tuple[float, ...]:
    """How many rows an (observation, per-level goal) statistics pair holds; () for none."""
    if stats is None:
        return ()
    obs_stats, goal_stats = stats
    return (obs_stats.count, *(s.count for s in goal_stats))
