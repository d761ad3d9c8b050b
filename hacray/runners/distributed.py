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

import logging
import os
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
from hacray.config import Config, ConfigError, save_config
from hacray.envs import EnvSpec, make_env
from hacray.evaluation import summarize
from hacray.logging import RunLogger
from hacray.rundir import check_resume_config, prepare_run_dir
from hacray.runners.common import StopFlag, Throughput, check_resources, hyperparameter_table
from hacray.runners.evaluator_actor import Evaluator
from hacray.runners.learner_actor import LearnerActor
from hacray.runners.ray_util import get, meters
from hacray.runners.replay_actor import ReplayActor
from hacray.runners.worker_actor import RolloutWorker
from hacray.types import LearnerSnapshot, ReplayStatus

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
        snapshot, note = checkpoint.load_replay(run_dir, state["counters"]["env_steps"])
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


def _resources(config: Config) -> tuple[dict[str, float], float]:
    """CPUs per role and the learner's GPUs. A local Ray too small for every role shrinks all
    CPU requests alike, so that all roles start and share its cores; a cluster is taken at its
    word. learner_gpus -1: one GPU when the cluster has any."""
    worker_cpus = config.distributed.worker_cpus
    # the learner updates the levels side by side: a CPU for each thread (0: one per level)
    learner_cpus = float(level_threads(config.learner, config.agent.levels,
                                       cpus=config.agent.levels))
    want = {**CPUS, "learner": learner_cpus, "worker": worker_cpus}
    total = sum(want.values()) - worker_cpus + config.distributed.workers * worker_cpus
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
                 state: Optional[dict[str, Any]], progress: Optional[bool],
                 replay_snapshot: Optional[dict[str, Any]] = None):
        self.config, self.spec, self.run_dir, self.state = config, spec, run_dir, state
        self.replay_snapshot = replay_snapshot
        self.counters = state["counters"] if state else {
            "env_steps": 0, "episodes": 0, "best_success": -1.0, "wall_time_s": 0.0}
        self.best_success = self.counters["best_success"]
        self.timeout_s = config.distributed.timeout_s
        self.actors: list[ray.actor.ActorHandle] = []
        self.group: Optional[PlacementGroup] = None
        self.logger = RunLogger(run_dir, config.train.tensorboard)
        self.logger.text("hyperparameters", hyperparameter_table(config))
        self.meters = meters("driver", gauges=("eval_success", "policy_lag"))
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
        get(self.group.ready(), self.timeout_s, "placement of learner and replay on one node")
        bundle = [PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i)
                  for i in range(2)]
        self.replay = ReplayActor.options(
            name=name("replay"), num_cpus=cpus["replay"], scheduling_strategy=bundle[1]).remote(
            config, self.spec, self.counters, state["learner"]["updates"] if state else 0,
            state["rng"].get("replay") if state else None, state and state["learner"],
            self.replay_snapshot)
        self.replay_snapshot = None  # the actor holds it now
        self.learner = LearnerActor.options(
            name=name("learner"), num_cpus=cpus["learner"], num_gpus=gpus,
            scheduling_strategy=bundle[0]).remote(config, self.spec, state and state["learner"],
                                                  self.replay)
        # a crashed worker comes back fresh (policy version 0) and its run() is retried
        self.workers = [RolloutWorker.options(
            name=name(f"worker-{i}"), num_cpus=cpus["worker"], max_restarts=-1,
            max_task_retries=-1).remote(config, i, name("replay"), name("learner"))
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
                get([worker.collect.remote(train.episodes_per_cycle) for worker in self.workers],
                    timeout_s, "rollout workers")
                env_steps = get(self.replay.status.remote(), timeout_s, "replay").env_steps
                get(self.learner.train.remote(env_steps), timeout_s, "learner")
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
                    get(ended[0], self.timeout_s, "an actor")
                env_steps = get(self.replay.status.remote(), self.timeout_s, "replay").env_steps
                if env_steps >= train.max_env_steps:
                    break
                if env_steps >= next_eval:
                    next_eval = (env_steps // train.eval_every + 1) * train.eval_every
                    self.evaluate_and_save(start, rates)
            get(self.replay.close.remote(), self.timeout_s, "replay")
            get(acting, self.timeout_s, "rollout workers, stopping")
            get(self.learner.stop.remote(), self.timeout_s, "learner")
            get(learning, self.timeout_s, "learner, stopping")
            return self.evaluate_and_save(start, rates)

    def evaluate_and_save(self, start: float, rates: Throughput) -> dict[str, Any]:
        """Evaluate the newest weights; write one metrics record (the local runner's keys plus
        distributed ones) and one checkpoint."""
        learner = get(self.learner.snapshot.remote(), self.timeout_s, "learner")
        replay = get(self.replay.status.remote(), self.timeout_s, "replay")
        evaluation = get(self.evaluator.evaluate.remote(learner.weights[0]), self.timeout_s,
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
        frames = get(self.evaluator.video.remote(), max(self.timeout_s, STARTUP_S), "evaluator")
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
        # the buffer as it is now: in a free-running run it may hold a few more episodes than
        # the counters (workers go on sending); resuming from it is warm, not exact
        snapshot = (get(self.replay.snapshot.remote(), self.timeout_s, "replay")
                    if self.config.train.save_replay else None)
        checkpoint.save(self.run_dir, {"learner": learner.state, "counters": counters,
                                       "rng": {"replay": replay.rng_state}},
                        replay.env_steps, self.config.train.checkpoint_keep, is_best=is_best,
                        replay=snapshot)

    def close(self) -> None:
        """Kill every actor that is left, release the placement group, close the logs."""
        for actor in self.actors:
            ray.kill(actor)
        if self.group is not None:
            remove_placement_group(self.group)
        self.logger.close()
