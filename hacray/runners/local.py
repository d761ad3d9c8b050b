"""The whole algorithm in one process: collect -> store -> train -> publish -> evaluate -> save."""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from hacray import checkpoint, seeding
from hacray.algo.rollout import run_episode
from hacray.blueprint import Blueprint
from hacray.config import Config, save_config
from hacray.envs import make_env
from hacray.evaluation import evaluate, summarize
from hacray.logging import RunLogger
from hacray.rundir import check_resume_config, prepare_run_dir
from hacray.runners.common import StopFlag, Throughput, check_resources, hyperparameter_table
from hacray.types import EpisodeStats


class LocalTrainer:
    """Runs training for ``config.train.max_env_steps`` env steps in this process."""

    def __init__(self, config: Config, run_dir: Path, resume: bool = False,
                 overwrite: bool = False, progress: bool | None = None):
        check_resources(config)
        self.env = make_env(config.env)  # validates env.id before anything is written
        self.eval_env = make_env(config.env, render=config.train.video_every > 0)
        self.blueprint = Blueprint.of(config, self.env.spec)  # checks the levels' spaces
        if resume:
            check_resume_config(run_dir, config)
        self.lock = prepare_run_dir(run_dir, partial(save_config, config), resume, overwrite)
        try:
            self.config, self.run_dir = config, run_dir
            self.learner = self.blueprint.learner()
            self.replay = self.blueprint.replay()
            self.policy = self.blueprint.policy()
            self.env_rng = seeding.rng(config.train.seed, "env", 0, 0)
            self.env_steps = self.episodes = self.evaluations = 0
            self.video_every = config.train.video_every if config.train.tensorboard else 0
            self.best_success = -1.0
            self.wall_offset = 0.0
            self.recent: list = []
            if resume:
                self._restore()
            self.logger = RunLogger(run_dir, config.train.tensorboard)
            self.logger.text("hyperparameters", hyperparameter_table(config))
            self.progress = sys.stderr.isatty() if progress is None else progress
        except BaseException:
            self.lock.release()
            raise

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config.train
        self.policy.set_weights(self.learner.weights())
        start = time.perf_counter() - self.wall_offset
        rates = Throughput(self.env_steps, self.learner.updates)
        next_eval = (self.env_steps // cfg.eval_every + 1) * cfg.eval_every
        last: dict[str, Any] = {}
        with StopFlag() as stop:
            while self.env_steps < cfg.max_env_steps and not stop.requested:
                self.collect(cfg.episodes_per_cycle)
                train_metrics = self.train()
                self.policy.set_weights(self.learner.weights())
                if self.env_steps >= next_eval or self.env_steps >= cfg.max_env_steps:
                    next_eval += cfg.eval_every
                    last = self.evaluate_and_save(start, rates, train_metrics)
        if stop.requested:
            last = self.evaluate_and_save(start, rates, {})
        self.logger.close()
        return last

    def collect(self, episodes: int) -> None:
        """Exploration episodes into replay."""
        for _ in range(episodes):
            seed = int(self.env_rng.integers(2**31))
            episode = run_episode(self.env, self.policy, self.config.agent, seed,
                                  self.env_rng, explore=True)
            self.replay.add_episode(episode)
            self.env_steps += episode.stats.env_steps
            self.episodes += 1
            self.recent = (self.recent + [episode.stats])[-100:]

    def train(self) -> dict[str, Any]:
        """Updates owed at the fixed replay ratio (updates per env step), with fresh statistics."""
        if not self.replay.ready(self.config.replay.min_size):
            return {}
        self.learner.set_normalizer(*self.replay.normalizer_stats())
        owed = int(self.config.replay.updates_per_env_step * self.env_steps) - self.learner.updates
        metrics: dict[str, Any] = {}
        for _ in range(max(owed, 0)):
            metrics = self.learner.update(self.replay.sample(self.config.learner.batch_size))
        return metrics

    def evaluate_and_save(self, start: float, rates: Throughput,
                          train_metrics: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "env_steps": self.env_steps, "updates": self.learner.updates,
            "episodes": self.episodes, "wall_time_s": time.perf_counter() - start,
            "policy_version": self.learner.version}
        record.update(summarize(evaluate(self.eval_env, self.policy, self.config), "eval"))
        record.update(summarize(self.recent, "train"))
        record.update(rates.rates(self.env_steps, self.learner.updates))
        record.update({f"replay/level{i}_size": n for i, n in enumerate(self.replay.sizes())})
        record["train/degenerate_episodes"] = self.replay.degenerate_episodes
        record["train/rejected_episodes"] = self.replay.rejected_episodes
        record["skipped_updates"] = self.learner.skipped_updates
        record.update(train_metrics)
        self.logger.write(record, self.env_steps, record=True)
        self._video()
        success = record["eval/success_rate"]
        is_best = success > self.best_success
        self.best_success = max(self.best_success, success)
        replay = self.replay.state_dict() if self.config.train.save_replay else None
        checkpoint.save(self.run_dir, self._state(record["wall_time_s"]), self.env_steps,
                        self.config.train.checkpoint_keep, is_best=is_best, replay=replay)
        self._report(record)
        return record

    def _video(self) -> None:
        """Every ``train.video_every`` evaluations, one evaluation episode as a TensorBoard GIF.
        Rendering trouble (no GL back end) turns videos off with a note; training goes on."""
        self.evaluations += 1
        if not self.video_every or (self.evaluations - 1) % self.video_every:
            return
        from hacray.video import episode_frames
        try:
            frames = episode_frames(self.eval_env, self.policy, self.config)
        except Exception as err:  # a missing GL library must not end a training run
            print(f"hacray: note: evaluation videos off ({type(err).__name__}: {err})",
                  file=sys.stderr)
            self.video_every = 0
            return
        self.logger.gif("eval/video", frames, self.env_steps)

    # -- state ------------------------------------------------------------------------------
    def _state(self, wall_time_s: float) -> dict[str, Any]:
        return {"learner": self.learner.state_dict(),
                "counters": {"env_steps": self.env_steps, "episodes": self.episodes,
                             "best_success": self.best_success, "wall_time_s": wall_time_s},
                "recent": [tuple(stats) for stats in self.recent],
                "rng": {"env": self.env_rng.bit_generator.state,
                        "replay": self.replay.rng.bit_generator.state}}

    def _restore(self) -> None:
        path, state, warnings = checkpoint.load_latest(self.run_dir)
        for note in warnings + [f"resumed from {path.name}"]:
            print(f"hacray: {note}", file=sys.stderr)
        self.learner.load_state_dict(state["learner"])
        counters = state["counters"]
        replay, note = checkpoint.load_replay(self.run_dir, counters["env_steps"])
        print(f"hacray: {note}", file=sys.stderr)
        if replay is not None:
            self.replay.load_state_dict(replay)
        else:  # an empty replay's normaliser statistics go on from the learner's, which
            # train() would otherwise replace with those of the new episodes alone
            self.replay.restore_normalizer_stats(
                self.learner.obs_norm.stats,
                tuple(level.goal_norm.stats for level in self.learner.levels))
        self.recent = [EpisodeStats(*stats) for stats in state.get("recent", [])]
        self.env_steps, self.episodes = counters["env_steps"], counters["episodes"]
        self.best_success, self.wall_offset = counters["best_success"], counters["wall_time_s"]
        if "env" in state["rng"]:  # a distributed run's checkpoint has per-worker streams only
            self.env_rng.bit_generator.state = state["rng"]["env"]
        self.replay.rng.bit_generator.state = state["rng"]["replay"]  # the snapshot's too

    def _report(self, record: dict[str, Any]) -> None:
        line = (f"env_steps {record['env_steps']:>9,d}  updates {record['updates']:>8,d}  "
                f"eval success {record['eval/success_rate']:.2f}  "
                f"{record['charts/env_steps_per_s']:7.0f} steps/s  "
                f"{record['wall_time_s']:7.1f} s")
        if self.progress:
            done = record["env_steps"] / self.config.train.max_env_steps
            eta = record["wall_time_s"] * (1 - done) / max(done, 1e-9)
            print(f"{line}  ETA {eta:6.0f} s", file=sys.stderr, flush=True)


def train_local(config: Config, run_dir: Path, resume: bool = False, overwrite: bool = False,
                progress: bool | None = None) -> dict[str, Any]:
    trainer = LocalTrainer(config, run_dir, resume, overwrite, progress)
    try:
        return trainer.run()
    finally:
        trainer.lock.release()


