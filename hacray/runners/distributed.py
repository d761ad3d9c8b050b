"""The same components as Ray actors: the only module in hacray that imports ``ray``.

Data flows one way: rollout workers push whole episodes straight to the replay actor; the
learner actor samples from it and publishes weights (one ``ray.put`` per version); workers pull
the newest weights' ref once per episode. The replay's RateLimiter holds updates per env step
near ``replay.updates_per_env_step``. The driver watches counters, has an evaluator actor
evaluate, logs and checkpoints. Every blocking call has a timeout: a dead peer fails the run
loudly instead of hanging it. Actors get each other's handles from the driver; their names
(``hacray-replay-<run tag>``, …) are for the dashboard. ``distributed.synchronous`` runs the
same actors in the local runner's lockstep instead (collect a cycle, train what it owes).
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import ray
from ray.util import metrics
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from hacray import checkpoint, seeding
from hacray.algo.replay import RateLimiter
from hacray.algo.rollout import play, run_episodes
from hacray.config import Config, ConfigError
from hacray.envs import EnvSpec, make_env
from hacray.logging import RunLogger
from hacray.runners.common import (Blueprint, StopFlag, Throughput, check_resources,
                                   check_resume_config, evaluate, hyperparameter_table,
                                   prepare_run_dir, summarize)
from hacray.types import (Episode, LearnerSnapshot, NormalizerStats, PolicyWeights,
                          ReplayStatus, Sample, Turn)

HOLD_S = 1.0            # longest the replay holds a reply while its limiter says wait
WATCH_S = 0.5           # how often the driver reads the counters
SAMPLES_IN_FLIGHT = 2   # sample requests queued at the replay, so sampling overlaps the update
RECENT, LAG_WINDOW = 100, 10  # episodes behind train/* statistics, and behind policy_lag
STARTUP_S = 300.0       # how long new actors may take to start on a loaded machine
CPUS = {"learner": 1.0, "replay": 1.0, "eval": 0.5}  # each worker's: distributed.worker_cpus
REPLAY_DIED = ("hacray: the replay actor died; its buffer is lost. Resume with --resume to "
               "continue from the last checkpoint")


def actor_name(role: str, run_tag: str) -> str:
    """``hacray-<role>-<run tag>``: roles read in the dashboard; two runs never collide."""
    return f"hacray-{role}-{run_tag}"


def _meters(role: str, counters: tuple[str, ...] = (), gauges: tuple[str, ...] = ()) -> dict:
    """Ray dashboard metrics ``hacray_<name>``, tagged with the role that reports them."""
    made = {n: metrics.Counter(f"hacray_{n}", tag_keys=("role",)) for n in counters}
    made.update({n: metrics.Gauge(f"hacray_{n}", tag_keys=("role",)) for n in gauges})
    for meter in made.values():
        meter.set_default_tags({"role": role})
    return made


def _get(ref: Any, timeout_s: float, peer: str) -> Any:
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
                 learner_state: Optional[dict[str, Any]] = None):
        self.replay = Blueprint.of(config, spec).replay()
        if rng_state:
            self.replay.rng.bit_generator.state = rng_state
        if learner_state:  # resumed: the normaliser statistics go on from the checkpoint's
            def stats(d: dict[str, Any]) -> NormalizerStats:
                return NormalizerStats(float(d["count"]), d["sum"].numpy(), d["sumsq"].numpy())
            self.replay.obs_stats = stats(learner_state["obs_stats"])
            self.replay.goal_stats = [stats(lv["goal_stats"]) for lv in learner_state["levels"]]
        self.limiter = RateLimiter(config.replay.updates_per_env_step, config.replay.tolerance)
        self.limiter.env_steps, self.limiter.updates = counters["env_steps"], updates
        self.min_size, self.episodes_before = config.replay.min_size, counters["episodes"]
        self.synchronous = config.distributed.synchronous  # no limiter: the driver paces
        self.from_worker: dict[int, int] = {}
        self.recent: deque[Episode] = deque(maxlen=RECENT)
        self.changed, self.closed = asyncio.Condition(), False
        self.meters = _meters("replay", gauges=tuple(
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

    async def sample(self, batch_size: int) -> Optional[Sample]:
        """A batch per level once the limiter allows one more update (it counts as done);
        None if it did not within HOLD_S, and the learner asks again. Synchronous runs sample
        whenever replay is ready (None at once when it is not)."""
        if self.synchronous:
            if not self._ready():
                return None
        elif not await self._wait(lambda: self._ready() and self.limiter.can_update()):
            return None
        self.limiter.updates += 1
        await self._notify()
        return Sample(self.replay.sample(batch_size), *self.replay.normalizer_stats())

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


@ray.remote
class LearnerActor:
    """The Learner fed by the replay actor. An asyncio actor: weight requests and snapshots are
    answered between two updates, never during one."""

    def __init__(self, config: Config, spec: EnvSpec, state: Optional[dict[str, Any]],
                 replay: ray.actor.ActorHandle):
        # sampled batches arrive as read-only numpy views; the learner only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.learner = Blueprint.of(config, spec).learner()
        if state is not None:
            self.learner.load_state_dict(state)
        self.replay, self.batch_size = replay, config.learner.batch_size
        self.updates_per_env_step = config.replay.updates_per_env_step
        self.timeout_s = config.distributed.timeout_s
        # publish as often as the local runner does: once per cycle of exploration episodes
        self.publish_every = max(1, round(config.train.episodes_per_cycle * spec.max_episode_steps
                                          * config.replay.updates_per_env_step))
        self.metrics: dict[str, Any] = {}
        self.stopping, self.published_at = False, -1
        self.meters = _meters("learner", ("updates",), ("policy_version",))
        self._publish()

    async def run(self) -> None:
        """Sample -> set normaliser statistics -> update -> publish, until ``stop``."""
        requests = deque(self.replay.sample.remote(self.batch_size)
                         for _ in range(SAMPLES_IN_FLIGHT))
        while not self.stopping:
            try:
                sample = await asyncio.wait_for(requests.popleft(), self.timeout_s)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"hacray: replay did not answer within {self.timeout_s:.0f} s") from None
            requests.append(self.replay.sample.remote(self.batch_size))
            if sample is None:  # replay still filling, or the learner far enough ahead
                continue
            self._update(sample)
            if self.learner.updates % self.publish_every == 0:
                self._publish()

    async def train(self, env_steps: int) -> None:
        """Synchronous mode: the updates owed at ``env_steps`` (the local runner's ``train``),
        then publish."""
        owed = int(self.updates_per_env_step * env_steps) - self.learner.updates
        for _ in range(max(owed, 0)):
            sample = await asyncio.wait_for(self.replay.sample.remote(self.batch_size),
                                            self.timeout_s)
            if sample is None:  # replay not filled to min_size yet
                break
            self._update(sample)
        self._publish()

    def _update(self, sample: Sample) -> None:
        self.learner.set_normalizer(sample.obs_stats, sample.goal_stats)
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

    def __init__(self, config: Config, worker_id: int, replay: ray.actor.ActorHandle,
                 learner: ray.actor.ActorHandle):
        envs = range(config.distributed.envs_per_worker)
        self.envs = [make_env(config.env) for _ in envs]
        self.rngs = [seeding.rng(config.train.seed, "env", worker_id, i) for i in envs]
        self.policy = Blueprint.of(config, self.envs[0].spec).policy()
        self.agent, self.worker_id = config.agent, worker_id
        self.replay, self.learner = replay, learner
        self.timeout_s = config.distributed.timeout_s
        self.meters = _meters(f"worker-{worker_id}", ("env_steps", "episodes"))

    def run(self) -> None:
        """Act -> push, round after round; returns when replay answers STOP."""
        reply = None
        while True:
            episodes = self._play(len(self.envs))
            if self._await_turn(reply) is Turn.STOP:
                return
            reply = self.replay.add_episodes.remote(episodes)  # answered while we act

    def collect(self, episodes: int) -> None:
        """Synchronous mode: ``episodes`` episodes into replay, each insert awaited."""
        while episodes > 0:
            played = self._play(min(episodes, len(self.envs)))
            _get(self.replay.add_episodes.remote(played), self.timeout_s, "replay")
            episodes -= len(played)

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
        worker holds version 0, so it always fetches before it acts."""
        newer = _get(self.learner.latest.remote(self.policy.version), self.timeout_s, "learner")
        if newer is not None:
            self.policy.set_weights(_get(newer[0], self.timeout_s, "the weights' object"))

    def _await_turn(self, reply: Optional[ray.ObjectRef]) -> Turn:
        """Wait while replay defers inserts (the learner lags by more than its tolerance)."""
        deadline = time.monotonic() + self.timeout_s
        turn = Turn.GO if reply is None else _get(reply, self.timeout_s, "replay")
        while turn is Turn.WAIT:
            if time.monotonic() > deadline:
                raise TimeoutError(f"hacray: replay deferred inserts for {self.timeout_s:.0f} s; "
                                   "is the learner alive?")
            turn = _get(self.replay.turn.remote(), self.timeout_s, "replay")
        return turn


@ray.remote
class Evaluator:
    """Deterministic episodes on the run's fixed evaluation seeds, in an env of its own."""

    def __init__(self, config: Config):
        from hacray.video import default_gl_backend
        default_gl_backend()  # before the env imports MuJoCo, on whichever node this runs
        self.config, self.env = config, make_env(config.env)
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


def train_distributed(config: Config, run_dir: Path, resume: bool = False,
                      overwrite: bool = False, *, progress: Optional[bool] = None
                      ) -> dict[str, Any]:
    """Train with ``distributed.workers`` rollout actors; return the last metrics record.

    Joins ``distributed.address`` or starts a local Ray, and shuts it down at the end; a Ray the
    caller started is used as it is and left running.
    """
    if config.distributed.workers < 1:
        raise ConfigError("config: distributed.workers must be >= 1 to train on Ray")
    check_resources(config)
    env = make_env(config.env)  # validates env.id before anything is written
    spec = env.spec
    env.close()
    if resume:
        check_resume_config(run_dir, config)
    prepare_run_dir(run_dir, config, resume, overwrite)
    state = None
    if resume:
        path, state, notes = checkpoint.load_latest(run_dir)
        print(*notes, f"hacray: resuming from {path.name}", sep="\n", file=sys.stderr)
    started = _init_ray(config.distributed.address)
    trainer = DistributedTrainer(config, spec, run_dir, state, progress)
    try:
        trainer.start()
        return trainer.run()
    finally:
        trainer.close()
        if started:
            ray.shutdown()


def _init_ray(address: Optional[str]) -> bool:
    """Join ``address``, or start a local Ray whose dashboard listens on localhost only.
    Returns whether this call connected (False: the caller's Ray, left as it is)."""
    if ray.is_initialized():
        return False
    # actors print nothing in normal operation: what they do print (errors) belongs on screen
    options: dict[str, Any] = dict(log_to_driver=True, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **options)
    else:  # include_dashboard=None: the dashboard starts where its dependencies are installed
        ray.init(include_dashboard=None, dashboard_host="127.0.0.1", **options)
    return True


def _resources(config: Config) -> tuple[dict[str, float], float]:
    """CPUs per role and the learner's GPUs. A local Ray too small for every role shrinks all
    CPU requests alike, so that all roles start and share its cores; a cluster is taken at its
    word. learner_gpus -1: one GPU when the cluster has any."""
    worker_cpus = config.distributed.worker_cpus
    want = {**CPUS, "worker": worker_cpus}
    total = sum(CPUS.values()) + config.distributed.workers * worker_cpus
    have = ray.cluster_resources()
    scale = min(1.0, have.get("CPU", 0.0) / total) if config.distributed.address is None else 1.0
    gpus = config.distributed.learner_gpus
    if gpus == -1:
        gpus = 1.0 if have.get("GPU", 0) > 0 else 0.0
    return {role: int(cpus * scale * 1e4) / 1e4 for role, cpus in want.items()}, gpus


def _metrics(learner: LearnerSnapshot, replay: ReplayStatus) -> dict[str, float]:
    """What only a distributed run has to say, plus the learner's last losses."""
    return {**{f"replay/level{i}_size": n for i, n in enumerate(replay.sizes)},
            **{f"replay/episodes_from_worker_{w}": n
               for w, n in sorted(replay.episodes_from_worker.items())},
            "train/degenerate_episodes": replay.degenerate_episodes,
            "train/rejected_episodes": replay.rejected_episodes,
            "skipped_updates": learner.skipped_updates,
            "policy_lag": learner.version - replay.mean_policy_version, **learner.metrics}


class DistributedTrainer:
    """Starts the actors, then watches: evaluate, log and checkpoint every eval_every env steps."""

    def __init__(self, config: Config, spec: EnvSpec, run_dir: Path,
                 state: Optional[dict[str, Any]], progress: Optional[bool]):
        self.config, self.spec, self.run_dir, self.state = config, spec, run_dir, state
        self.counters = state["counters"] if state else {
            "env_steps": 0, "episodes": 0, "best_success": -1.0, "wall_time_s": 0.0}
        self.best_success = self.counters["best_success"]
        self.timeout_s = config.distributed.timeout_s
        self.actors: list[ray.actor.ActorHandle] = []
        self.group: Optional[PlacementGroup] = None
        self.logger = RunLogger(run_dir, config.train.tensorboard)
        self.logger.text("hyperparameters", hyperparameter_table(config))
        self.meters = _meters("driver", gauges=("eval_success", "policy_lag"))
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.evaluations = 0
        self.video_every = config.train.video_every if config.train.tensorboard else 0
        self.run_tag = uuid.uuid4().hex[:8]

    def start(self) -> None:
        """Learner and replay packed on one node (the GPU's, if the learner takes one), so that
        batches cross no network; rollout workers and the evaluator wherever Ray likes."""
        config, state = self.config, self.state
        cpus, gpus = _resources(config)
        name = lambda role: actor_name(role, self.run_tag)
        self.group = placement_group([{"CPU": cpus["learner"], **({"GPU": gpus} if gpus else {})},
                                      {"CPU": cpus["replay"]}], strategy="STRICT_PACK")
        _get(self.group.ready(), self.timeout_s, "placement of learner and replay on one node")
        bundle = [PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i)
                  for i in range(2)]
        self.replay = ReplayActor.options(
            name=name("replay"), num_cpus=cpus["replay"], scheduling_strategy=bundle[1]).remote(
            config, self.spec, self.counters, state["learner"]["updates"] if state else 0,
            state["rng"].get("replay") if state else None, state and state["learner"])
        self.learner = LearnerActor.options(
            name=name("learner"), num_cpus=cpus["learner"], num_gpus=gpus,
            scheduling_strategy=bundle[0]).remote(config, self.spec, state and state["learner"],
                                                  self.replay)
        # a crashed worker comes back fresh (policy version 0) and its run() is retried
        self.workers = [RolloutWorker.options(
            name=name(f"worker-{i}"), num_cpus=cpus["worker"], max_restarts=-1,
            max_task_retries=-1).remote(config, i, self.replay, self.learner)
            for i in range(config.distributed.workers)]
        self.evaluator = Evaluator.options(name=name("eval"), num_cpus=cpus["eval"]).remote(
            config)
        self.actors = [*self.workers, self.learner, self.replay, self.evaluator]

    def run(self) -> dict[str, Any]:
        """Until max_env_steps or SIGINT/SIGTERM; then a final evaluation and checkpoint."""
        start = time.perf_counter() - self.counters["wall_time_s"]
        rates = Throughput(self.counters["env_steps"],
                           self.state["learner"]["updates"] if self.state else 0)
        # start-up (imports, envs, networks) is not a peer's silence: it gets its own allowance
        _get([actor.__ray_ready__.remote() for actor in self.actors],
             max(self.timeout_s, STARTUP_S), "actor start-up")
        try:
            if self.config.distributed.synchronous:
                return self._lockstep(start, rates)
            return self._free_running(start, rates)
        except ray.exceptions.RayError:  # a peer's failure: name the replay when it is the one
            if self._replay_died():
                raise RuntimeError(REPLAY_DIED) from None
            raise

    def _free_running(self, start: float, rates: Throughput) -> dict[str, Any]:
        """Workers act and the learner learns, each at its own pace within the limiter's."""
        train = self.config.train
        learning = self.learner.run.remote()
        acting = [worker.run.remote() for worker in self.workers]
        next_eval = (self.counters["env_steps"] // train.eval_every + 1) * train.eval_every
        return self._watch(learning, acting, next_eval, start, rates)

    def _lockstep(self, start: float, rates: Throughput) -> dict[str, Any]:
        """The local runner's loop with its parts in actors: every worker collects a cycle of
        episodes, the learner trains what they owe and publishes, then maybe evaluate."""
        train, timeout_s = self.config.train, self.timeout_s
        env_steps, last = self.counters["env_steps"], {}
        next_eval = (env_steps // train.eval_every + 1) * train.eval_every
        with StopFlag() as stop:
            while env_steps < train.max_env_steps and not stop.requested:
                _get([worker.collect.remote(train.episodes_per_cycle) for worker in self.workers],
                     timeout_s, "rollout workers")
                env_steps = _get(self.replay.status.remote(), timeout_s, "replay").env_steps
                _get(self.learner.train.remote(env_steps), timeout_s, "learner")
                if env_steps >= next_eval or env_steps >= train.max_env_steps:
                    next_eval += train.eval_every
                    last = self.evaluate_and_save(start, rates)
            if stop.requested:
                last = self.evaluate_and_save(start, rates)
        return last

    def _replay_died(self) -> bool:
        try:
            ray.get(self.replay.status.remote(), timeout=self.timeout_s)
        except ray.exceptions.RayActorError:
            return True
        except ray.exceptions.RayError:
            pass
        return False

    def _watch(self, learning: ray.ObjectRef, acting: list[ray.ObjectRef], next_eval: int,
               start: float, rates: Throughput) -> dict[str, Any]:
        """Evaluate every eval_every env steps until the end; then stop everybody in order."""
        train = self.config.train
        with StopFlag() as stop:
            while not stop.requested:
                time.sleep(WATCH_S)
                ended, _ = ray.wait([learning, *acting], timeout=0)
                if ended:  # these loops end only by failing: raise the failure here
                    _get(ended[0], self.timeout_s, "an actor")
                env_steps = _get(self.replay.status.remote(), self.timeout_s, "replay").env_steps
                if env_steps >= train.max_env_steps:
                    break
                if env_steps >= next_eval:
                    next_eval = (env_steps // train.eval_every + 1) * train.eval_every
                    self.evaluate_and_save(start, rates)
            _get(self.replay.close.remote(), self.timeout_s, "replay")
            _get(acting, self.timeout_s, "rollout workers, stopping")
            _get(self.learner.stop.remote(), self.timeout_s, "learner")
            _get(learning, self.timeout_s, "learner, stopping")
            return self.evaluate_and_save(start, rates)

    def evaluate_and_save(self, start: float, rates: Throughput) -> dict[str, Any]:
        """Evaluate the newest weights; write one metrics record (the local runner's keys plus
        distributed ones) and one checkpoint."""
        learner = _get(self.learner.snapshot.remote(), self.timeout_s, "learner")
        replay = _get(self.replay.status.remote(), self.timeout_s, "replay")
        evaluation = _get(self.evaluator.evaluate.remote(learner.weights[0]), self.timeout_s,
                          "evaluator")
        record: dict[str, Any] = {
            "env_steps": replay.env_steps, "updates": learner.updates,
            "episodes": replay.episodes, "wall_time_s": time.perf_counter() - start,
            "policy_version": learner.version, **evaluation, **summarize(replay.recent, "train"),
            **rates.rates(replay.env_steps, learner.updates), **_metrics(learner, replay)}
        self.logger.write(record, replay.env_steps, record=True)
        self._video(replay.env_steps)
        self.meters["eval_success"].set(record["eval/success_rate"])
        self.meters["policy_lag"].set(record["policy_lag"])
        self._save(record, learner, replay)
        if self.progress:
            print(f"env_steps {record['env_steps']:>9,d}  updates {record['updates']:>8,d}  "
                  f"eval success {record['eval/success_rate']:.2f}  "
                  f"{record['charts/env_steps_per_s']:7.0f} steps/s  "
                  f"policy lag {record['policy_lag']:4.1f}  {record['wall_time_s']:7.1f} s",
                  file=sys.stderr, flush=True)
        return record

    def _video(self, env_steps: int) -> None:
        """Every ``train.video_every`` evaluations, one evaluation episode to TensorBoard."""
        self.evaluations += 1
        if not self.video_every or (self.evaluations - 1) % self.video_every:
            return
        frames = _get(self.evaluator.video.remote(), max(self.timeout_s, STARTUP_S), "evaluator")
        if isinstance(frames, str):
            print(f"hacray: note: evaluation videos off ({frames})", file=sys.stderr)
            self.video_every = 0
            return
        self.logger.gif("eval/video", frames, env_steps)

    def _save(self, record: dict[str, Any], learner: LearnerSnapshot,
              replay: ReplayStatus) -> None:
        """The local runner's checkpoint layout: learner state, counters, RNG states."""
        is_best = record["eval/success_rate"] > self.best_success
        self.best_success = max(self.best_success, record["eval/success_rate"])
        counters = {"env_steps": replay.env_steps, "episodes": replay.episodes,
                    "best_success": self.best_success, "wall_time_s": record["wall_time_s"]}
        checkpoint.save(self.run_dir, {"learner": learner.state, "counters": counters,
                                       "rng": {"replay": replay.rng_state}},
                        replay.env_steps, self.config.train.checkpoint_keep, is_best=is_best)

    def close(self) -> None:
        """Kill every actor that is left, release the placement group, close the logs."""
        for actor in self.actors:
            ray.kill(actor)
        if self.group is not None:
            remove_placement_group(self.group)
        self.logger.close()
