"""The components as Ray actors: replay, learner, rollout workers and the evaluator.

Data flows one way: rollout workers push whole episodes straight to the replay actor; the
learner actor samples from it and publishes weights (one ``ray.put`` per version); workers pull
the newest weights' ref once per round of episodes. The replay's RateLimiter holds updates per
env step near ``replay.updates_per_env_step``. Every blocking call has a timeout: a dead peer
fails the run loudly instead of hanging it. The driver (``hacray.runners.distributed``)
starts the actors, tells each its peers, and paces them in synchronous mode.
"""
from __future__ import annotations

import asyncio
import time
import warnings
from collections import deque
from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np
import ray
from ray.util import metrics

from hacray import seeding
from hacray.algo.learner import level_threads, normalizer_stats
from hacray.algo.replay import RateLimiter
from hacray.algo.rollout import play, run_episodes
from hacray.config import Config
from hacray.envs import EnvSpec, make_env, make_envs
from hacray.runners.common import Blueprint, evaluate, summarize
from hacray.types import (Episode, LearnerPace, LearnerSnapshot, PolicyWeights, ReplayStatus,
                          Sample, Turn)

HOLD_S = 1.0            # longest the replay holds a reply while its limiter says wait
SAMPLES_IN_FLIGHT = 2   # sample requests queued at the replay, so sampling overlaps the update
BATCHES_PER_SAMPLE = 4  # updates' batches per request: Ray's cost per call spread over four
RECENT, LAG_WINDOW = 100, 10  # episodes behind train/* statistics, and behind policy_lag


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


@ray.remote
class ReplayActor:
    """HierarchicalReplay and its RateLimiter. An asyncio actor: an insert or a sample that the
    limiter defers waits (at most HOLD_S per call) without blocking anybody else's calls."""

    def __init__(self, config: Config, spec: EnvSpec, counters: dict[str, Any], updates: int,
                 rng_state: Optional[dict[str, Any]],
                 learner_state: Optional[dict[str, Any]] = None,
                 snapshot: Optional[dict[str, Any]] = None):
        self.replay = Blueprint.of(config, spec).replay()
        if snapshot:  # resumed with the checkpoint's replay snapshot: rows, statistics, rng
            self.replay.load_state_dict(snapshot)
        elif learner_state:  # resumed empty: the normaliser statistics go on from the learner's
            obs_stats, goal_stats = normalizer_stats(learner_state)
            self.replay.obs_stats, self.replay.goal_stats = obs_stats, list(goal_stats)
        if rng_state:
            self.replay.rng.bit_generator.state = rng_state
        self.limiter = RateLimiter(config.replay.updates_per_env_step, config.replay.tolerance)
        self.limiter.env_steps, self.limiter.updates = counters["env_steps"], updates
        self.min_size = config.replay.min_size
        self.episodes_before = counters["episodes"] - self.replay.episodes
        self.synchronous = config.distributed.synchronous  # no limiter: the driver paces
        self.from_worker: dict[int, int] = {}
        self.recent: deque[Episode] = deque(maxlen=RECENT)
        self.changed, self.closed = asyncio.Condition(), False
        self.meters = meters("replay", gauges=tuple(
            f"replay_size_level{i}" for i in range(config.agent.levels)))

    async def add_episodes(self, episodes: list[Episode]) -> Turn:
        """Relabel and store a worker's episodes; answer whether it may send its next ones."""
        for episode in episodes:
            self.replay.add_episode(episode)
            self.limiter.env_steps += episode.stats.env_steps
            self.from_worker[episode.worker_id] = self.from_worker.get(episode.worker_id, 0) + 1
            self.recent.append(episode._replace(segments=()))
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
            rng_state=self.replay.rng.bit_generator.state)

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


def granted_level_threads(config: Config) -> Config:
    """``learner.level_threads`` 0 (one per level) in an actor means at most the CPUs that Ray
    granted it, rounded down: a local Ray on a small machine shrinks every request, and level
    threads beyond the grant would only take cores from the rollout workers."""
    granted = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    threads = level_threads(config.learner, config.agent.levels, cpus=granted)
    return replace(config, learner=replace(config.learner, level_threads=threads))


@ray.remote
class LearnerActor:
    """The Learner fed by the replay actor. An asyncio actor: weight requests and snapshots are
    answered between two updates, never during one."""

    def __init__(self, config: Config, spec: EnvSpec, state: Optional[dict[str, Any]],
                 replay: ray.actor.ActorHandle):
        # sampled batches arrive as read-only numpy views; the learner only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.learner = Blueprint.of(granted_level_threads(config), spec).learner()
        if state is not None:
            self.learner.load_state_dict(state)
        self.replay, self.batch_size = replay, config.learner.batch_size
        self.updates_per_env_step = config.replay.updates_per_env_step
        self.timeout_s = config.distributed.timeout_s
        # publish as often as the local runner does: once per cycle of exploration episodes
        self.publish_every = max(1, round(config.train.episodes_per_cycle * spec.max_episode_steps
                                          * config.replay.updates_per_env_step))
        self.metrics: dict[str, Any] = {}
        self.stats_counts: tuple[float, ...] = ()  # of the normaliser statistics in use
        self.stopping, self.published_at = False, -1
        self.meters = meters("learner", ("updates",), ("policy_version",))
        self._publish()

    async def run(self) -> LearnerPace:
        """Sample -> set normaliser statistics -> update -> publish, until ``stop``; a later
        ``run`` goes on from there. Returns its steady pace, for benchmarks."""
        self.stopping = False
        requests = deque(self._request() for _ in range(SAMPLES_IN_FLIGHT))
        first, start, updating_s = self.learner.updates, None, 0.0
        while not self.stopping:
            try:
                samples = await asyncio.wait_for(requests.popleft(), self.timeout_s)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"hacray: replay did not answer within {self.timeout_s:.0f} s") from None
            requests.append(self._request())
            for sample in samples or ():  # None: replay still filling, or the learner ahead
                began = time.perf_counter()
                self._update(sample)
                if start is None:
                    first, start = self.learner.updates, time.perf_counter()
                else:
                    updating_s += time.perf_counter() - began
                if self.learner.updates % self.publish_every == 0:
                    self._publish()
        return LearnerPace(self.learner.updates - first,
                           0.0 if start is None else time.perf_counter() - start, updating_s)

    async def train(self, env_steps: int) -> None:
        """Synchronous mode: the updates owed at ``env_steps`` (the local runner's ``train``),
        then publish."""
        owed = int(self.updates_per_env_step * env_steps) - self.learner.updates
        while owed > 0:
            samples = await asyncio.wait_for(
                self.replay.sample.remote(self.batch_size, min(owed, BATCHES_PER_SAMPLE)),
                self.timeout_s)
            if samples is None:  # replay not filled to min_size yet
                break
            for sample in samples:
                self._update(sample)
            owed -= len(samples)
        self._publish()

    def _request(self) -> asyncio.Future:
        """A sample request, its reply handed to the event loop as it arrives: awaiting the
        ref itself would only start listening for it at the ``await``, after the update before
        it (with 4 batches per request: learner efficiency 0.937 -> 0.991, BENCHMARKS.md).
        Not ``ref.as_future()``: Ray 2.60 logs a deprecation line on every call of it."""
        ref = self.replay.sample.remote(self.batch_size, BATCHES_PER_SAMPLE)
        return asyncio.wrap_future(ref.future())

    def _update(self, sample: Sample) -> None:
        counts = (sample.obs_stats.count, *(stats.count for stats in sample.goal_stats))
        if counts != self.stats_counts:  # statistics change only when replay got new episodes
            self.learner.set_normalizer(sample.obs_stats, sample.goal_stats)
            self.stats_counts = counts
        self.metrics = self.learner.update(sample.batches)
        self.meters["updates"].inc()

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


@ray.remote
class RolloutWorker:
    """Plays exploration episodes in its envs side by side, each round with the newest weights,
    into replay until told STOP."""

    def __init__(self, config: Config, worker_id: int, replay_name: str, learner_name: str):
        # names, not handles: Ray restarts a crashed worker from its constructor arguments, and
        # handles among them would have to stay alive in the object store for that
        envs = range(config.distributed.envs_per_worker)
        self.envs = make_envs(config.env, len(envs))
        self.rngs = [seeding.rng(config.train.seed, "env", worker_id, i) for i in envs]
        self.policy = Blueprint.of(config, self.envs[0].spec).policy()
        self.agent, self.worker_id = config.agent, worker_id
        self.replay, self.learner = ray.get_actor(replay_name), ray.get_actor(learner_name)
        self.timeout_s = config.distributed.timeout_s
        self.meters = meters(f"worker-{worker_id}", ("env_steps", "episodes"))
        # asynchronous runs ask for the next round's weights while this round plays; a
        # synchronous run must act on the weights of the cycle just trained, so it waits
        self.prefetch = not config.distributed.synchronous
        self.asked: Optional[ray.ObjectRef] = None

    def run(self) -> None:
        """Act -> push, round after round; returns when replay answers STOP."""
        reply = None
        while True:
            episodes = self._play(len(self.envs))
            if self._await_turn(reply) is Turn.STOP:
                return
            reply = self.replay.add_episodes.remote(episodes)  # answered while we act

    def collect(self, episodes: int) -> None:
        """Synchronous mode: ``episodes`` episodes into replay, all stored when this returns;
        as in ``run``, a round's insert is stored while the next round plays."""
        reply = None
        while episodes > 0:
            played = self._play(min(episodes, len(self.envs)))
            if reply is not None:
                get(reply, self.timeout_s, "replay")
            reply = self.replay.add_episodes.remote(played)
            episodes -= len(played)
        if reply is not None:
            get(reply, self.timeout_s, "replay")

    def _play(self, n_envs: int) -> list[Episode]:
        """One episode in each of the first ``n_envs`` envs, side by side, with one version."""
        self._refresh_weights()
        episodes = run_episodes([
            play(env, self.policy, self.agent, int(rng.integers(2**31)), rng, explore=True,
                 worker_id=self.worker_id)
            for env, rng in zip(self.envs[:n_envs], self.rngs[:n_envs])], self.policy)
        self.meters["env_steps"].inc(sum(e.stats.env_steps for e in episodes))
        self.meters["episodes"].inc(len(episodes))
        return episodes

    def _refresh_weights(self) -> None:
        """Once per round, so that one policy version acts a whole episode. A (re)started
        worker holds version 0, so it always fetches before it acts.

        With ``prefetch`` the answer is the one asked for when the previous round started (at
        most a round older than the learner's newest), so the learner's reply never holds up
        a round: waiting for it took ~6% of a worker's time on 2 cores."""
        if self.asked is None:
            self.asked = self.learner.latest.remote(self.policy.version)
        newer = get(self.asked, self.timeout_s, "learner")
        if newer is not None:
            self.policy.set_weights(get(newer[0], self.timeout_s, "the weights' object"))
        self.asked = self.learner.latest.remote(self.policy.version) if self.prefetch else None

    def _await_turn(self, reply: Optional[ray.ObjectRef]) -> Turn:
        """Wait while replay defers inserts (the learner lags by more than its tolerance)."""
        deadline = time.monotonic() + self.timeout_s
        turn = Turn.GO if reply is None else get(reply, self.timeout_s, "replay")
        while turn is Turn.WAIT:
            if time.monotonic() > deadline:
                raise TimeoutError(f"hacray: replay deferred inserts for {self.timeout_s:.0f} s; "
                                   "is the learner alive?")
            turn = get(self.replay.turn.remote(), self.timeout_s, "replay")
        return turn


@ray.remote
class Evaluator:
    """Deterministic episodes on the run's fixed evaluation seeds, in an env of its own."""

    def __init__(self, config: Config):
        from hacray.video import default_gl_backend
        default_gl_backend()  # before the env imports MuJoCo, on whichever node this runs
        video = config.train.video_every > 0 and config.train.tensorboard
        self.config, self.env = config, make_env(config.env, render=video)
        self.policy = Blueprint.of(config, self.env.spec).policy()

    def evaluate(self, weights: PolicyWeights) -> dict[str, float]:
        self.policy.set_weights(weights)
        return summarize(evaluate(self.env, self.policy, self.config), "eval")

    def video(self) -> list | str:
        """The first evaluation episode as frames (PIL images) for TensorBoard, with the weights
        of the last ``evaluate``; a one-line reason instead when rendering is not possible."""
        from hacray.video import episode_frames
        try:
            return episode_frames(self.env, self.policy, self.config)
        except Exception as err:  # no GL back end on this node: videos off, training goes on
            return f"{type(err).__name__}: {err}"
