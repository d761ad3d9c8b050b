"""The driver of a run on Ray: starts the actors, then watches.

The actors, one module each: ``replay_actor``, ``learner_actor``, ``worker_actor`` and
``evaluator_actor`` (``ray_util`` holds what they share). Data flows one way: rollout workers
push whole episodes straight to the replay actor; the learner actor samples from it and
publishes weights (one ``ray.put`` per version); workers pull the newest weights' ref once per
round of episodes. Every blocking call has a timeout: a dead peer fails the run loudly instead
of hanging it.

Learner and replay are placed together (with the GPU, if any); rollout workers and the
evaluator wherever Ray likes. The driver evaluates, logs and checkpoints every eval_every env
steps, and stops everybody in order at the end or on SIGINT/SIGTERM. Actor names carry a
per-run tag (``hacray-replay-<run tag>``, …), so two runs on one cluster never collide.
``distributed.synchronous`` runs the same actors in the local runner's lockstep instead
(collect a cycle, train what it owes).
"""
from __future__ import annotations

import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Optional

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from hacray import checkpoint
from hacray.algo.learner import level_threads
from hacray.blueprint import Blueprint
from hacray.checkpoint import RunState
from hacray.config import Config, ConfigError, save_config
from hacray.envs import EnvSpec, make_env
from hacray.rundir import check_resume_config, prepare_run_dir
from hacray.runners.common import StopFlag, Throughput, check_resources
from hacray.runners.evaluator_actor import Evaluator
from hacray.runners.learner_actor import LearnerActor
from hacray.runners.ray_util import get, init_ray, meters, shutdown_local_ray
from hacray.runners.replay_actor import start_shards
from hacray.runners.runbook import RunBook
from hacray.runners.shards import join_snapshots, merge_statuses, role, shard_metrics, shard_of
from hacray.runners.worker_actor import RolloutWorker
from hacray.types import Counters, LearnerSnapshot, ReplayStatus

WATCH_S = 0.5           # how often the driver reads the counters
STARTUP_S = 300.0       # how long new actors may take to start on a loaded machine
# the learner's is per level thread (see _resources); each worker's is distributed.worker_cpus
CPUS = {"learner": 1.0, "replay": 1.0, "eval": 0.5}
REPLAY_DIED = ("hacray: the replay actor died; its buffer is lost. Resume with --resume to "
               "continue from the last checkpoint")


def actor_name(role: str, run_tag: str) -> str:
    """``hacray-<role>-<run tag>``: roles read in the dashboard; two runs never collide."""
    return f"hacray-{role}-{run_tag}"


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
    Blueprint.of(config, spec)  # and the levels' spaces
    if resume:
        check_resume_config(run_dir, config)
    lock = prepare_run_dir(run_dir, partial(save_config, config), resume, overwrite)
    try:
        return _train_held(config, spec, run_dir, resume, progress)
    finally:
        lock.release()


def _train_held(config: Config, spec: EnvSpec, run_dir: Path, resume: bool,
                progress: Optional[bool]) -> dict[str, Any]:
    """The run, once its directory is held and ready."""
    state = snapshot = None
    if resume:
        path, state, notes = checkpoint.load_latest(run_dir)
        snapshot, note = checkpoint.load_replay(run_dir, state.counters.env_steps)
        print(*notes, f"hacray: resuming from {path.name}", f"hacray: {note}", sep="\n",
              file=sys.stderr)
    started = init_ray(config.distributed.address)
    trainer = DistributedTrainer(config, spec, run_dir, state, progress, snapshot)
    try:
        trainer.start()
        return trainer.run()
    finally:
        trainer.close()
        if started:
            shutdown_local_ray()


def _resources(config: Config) -> tuple[dict[str, float], float]:
    """CPUs per role and the learner's GPUs. A local Ray too small for every role shrinks all
    CPU requests alike, so that all roles start and share its cores; a cluster is taken at its
    word. learner_gpus -1: one GPU when the cluster has any."""
    worker_cpus = config.distributed.worker_cpus
    # the learner updates the levels side by side: a CPU for each thread (0: one per level)
    learner_cpus = float(level_threads(config.learner, config.agent.levels,
                                       cpus=config.agent.levels))
    want = {**CPUS, "learner": learner_cpus, "worker": worker_cpus}
    total = (sum(want.values()) - worker_cpus + config.distributed.workers * worker_cpus
             + (config.distributed.replay_shards - 1) * want["replay"])
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
                 state: Optional[RunState], progress: Optional[bool],
                 replay_snapshot: Optional[dict[str, Any]] = None):
        self.config, self.spec, self.run_dir, self.state = config, spec, run_dir, state
        self.replay_snapshot = replay_snapshot
        self.book = RunBook(config, run_dir, state.counters if state else Counters(), progress)
        self.timeout_s = config.distributed.timeout_s
        self.actors: list[ray.actor.ActorHandle] = []
        self.group: Optional[PlacementGroup] = None
        self.meters = meters("driver", gauges=("eval_success", "policy_lag"))
        self.run_tag = uuid.uuid4().hex[:8]

    def start(self) -> None:
        """Learner and replay shards packed on one node (the GPU's, if the learner takes one),
        so that batches cross no network; rollout workers and the evaluator wherever Ray likes."""
        config, state = self.config, self.state
        cpus, gpus = _resources(config)
        name = lambda role: actor_name(role, self.run_tag)
        shards = config.distributed.replay_shards
        self.group = placement_group(
            [{"CPU": cpus["learner"], **({"GPU": gpus} if gpus else {})}]
            + [{"CPU": cpus["replay"]}] * shards, strategy="STRICT_PACK")
        get(self.group.ready(), self.timeout_s, "placement of learner and replay on one node")
        bundle = [PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i)
                  for i in range(1 + shards)]
        learner_state = state.learner if state else None
        self.replays = start_shards(config, self.spec, self.book.counters, state,
                                    self.replay_snapshot, cpus["replay"], bundle[1:], name)
        self.replay_snapshot = None  # the actors hold it now
        self.learner = LearnerActor.options(
            name=name("learner"), num_cpus=cpus["learner"], num_gpus=gpus,
            scheduling_strategy=bundle[0]).remote(config, self.spec, learner_state, self.replays)
        # a crashed worker comes back fresh (policy version 0) and its run() is retried
        self.workers = [RolloutWorker.options(
            name=name(f"worker-{i}"), num_cpus=cpus["worker"], max_restarts=-1,
            max_task_retries=-1).remote(config, i, name(role(shard_of(i, shards))),
                                        name("learner"))
            for i in range(config.distributed.workers)]
        self.evaluator = Evaluator.options(name=name("eval"), num_cpus=cpus["eval"]).remote(
            config)
        self.actors = [*self.workers, self.learner, *self.replays, self.evaluator]

    def replay_statuses(self) -> list[ReplayStatus]:
        return get([r.status.remote() for r in self.replays], self.timeout_s, "replay")

    def replay_status(self) -> ReplayStatus:
        """The run's replay totals, over every shard."""
        return merge_statuses(self.replay_statuses())

    def run(self) -> dict[str, Any]:
        """Until max_env_steps or SIGINT/SIGTERM; then a final evaluation and checkpoint."""
        start = time.perf_counter() - self.book.counters.wall_time_s
        rates = Throughput(self.book.counters.env_steps,
                           self.state.learner["updates"] if self.state else 0)
        # start-up (imports, envs, networks) is not a peer's silence: it gets its own allowance
        get([actor.__ray_ready__.remote() for actor in self.actors],
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
        learning = self.learner.run.remote()
        acting = [worker.run.remote() for worker in self.workers]
        return self._watch(learning, acting, start, rates)

    def _lockstep(self, start: float, rates: Throughput) -> dict[str, Any]:
        """The local runner's loop with its parts in actors: every worker collects a cycle of
        episodes, the learner trains what they owe and publishes, then maybe evaluate."""
        train, timeout_s = self.config.train, self.timeout_s
        env_steps, last = self.book.counters.env_steps, {}
        with StopFlag() as stop:
            while env_steps < train.max_env_steps and not stop.requested:
                get([worker.collect.remote(train.episodes_per_cycle) for worker in self.workers],
                    timeout_s, "rollout workers")
                env_steps = self.replay_status().env_steps
                get(self.learner.train.remote(env_steps), timeout_s, "learner")
                if self.book.due(env_steps):
                    last = self.evaluate_and_save(start, rates)
            if stop.requested:
                last = self.evaluate_and_save(start, rates)
        return last

    def _replay_died(self) -> bool:
        for replay in self.replays:
            try:
                ray.get(replay.status.remote(), timeout=self.timeout_s)
            except ray.exceptions.RayActorError:
                return True
            except ray.exceptions.RayError:
                pass
        return False

    def _watch(self, learning: ray.ObjectRef, acting: list[ray.ObjectRef], start: float,
               rates: Throughput) -> dict[str, Any]:
        """Evaluate every eval_every env steps until the end; then stop everybody in order."""
        train = self.config.train
        with StopFlag() as stop:
            while not stop.requested:
                time.sleep(WATCH_S)
                ended, _ = ray.wait([learning, *acting], timeout=0)
                if ended:  # these loops end only by failing: raise the failure here
                    get(ended[0], self.timeout_s, "an actor")
                env_steps = self.replay_status().env_steps
                if env_steps >= train.max_env_steps:
                    break
                if self.book.due(env_steps):
                    self.book.skip_past(env_steps)
                    self.evaluate_and_save(start, rates)
            get([r.close.remote() for r in self.replays], self.timeout_s, "replay")
            get(acting, self.timeout_s, "rollout workers, stopping")
            get(self.learner.stop.remote(), self.timeout_s, "learner")
            get(learning, self.timeout_s, "learner, stopping")
            return self.evaluate_and_save(start, rates)

    def evaluate_and_save(self, start: float, rates: Throughput) -> dict[str, Any]:
        """Evaluate the newest weights; write one metrics record (the local runner's keys plus
        distributed ones) and one checkpoint."""
        learner = get(self.learner.snapshot.remote(), self.timeout_s, "learner")
        statuses = self.replay_statuses()
        replay = merge_statuses(statuses)
        evaluation = get(self.evaluator.evaluate.remote(learner.weights[0]), self.timeout_s,
                         "evaluator")
        record = self.book.record(
            env_steps=replay.env_steps, updates=learner.updates, episodes=replay.episodes,
            wall_time_s=time.perf_counter() - start, policy_version=learner.version,
            evaluation=evaluation, recent=replay.recent,
            rates=rates.rates(replay.env_steps, learner.updates),
            extra={**_metrics(learner, replay), **shard_metrics(statuses)})
        self.book.film(lambda: get(self.evaluator.video.remote(), max(self.timeout_s, STARTUP_S),
                                   "evaluator"), replay.env_steps)
        self.meters["eval_success"].set(record["eval/success_rate"])
        self.meters["policy_lag"].set(record["policy_lag"])
        # the buffer as it is now: in a free-running run it may hold a few more episodes than
        # the counters (workers go on sending); resuming from it is warm, not exact
        snapshot = (join_snapshots(get([r.snapshot.remote() for r in self.replays],
                                       self.timeout_s, "replay"))
                    if self.config.train.save_replay else None)
        self.book.save(record, learner.state,
                       {role(s): status.rng_state for s, status in enumerate(statuses)},
                       replay.recent, snapshot)
        self.book.report(record)
        return record

    def close(self) -> None:
        """Kill every actor that is left, release the placement group, close the logs."""
        for actor in self.actors:
            ray.kill(actor)
        if self.group is not None:
            remove_placement_group(self.group)
        self.book.close()
