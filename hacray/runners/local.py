"""The whole algorithm in one process: collect -> store -> train -> publish -> evaluate -> save."""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from hacray import checkpoint, seeding
from hacray.algo.replay import updates_owed
from hacray.algo.rollout import run_episode
from hacray.blueprint import Blueprint
from hacray.config import Config, save_config
from hacray.envs import make_env
from hacray.evaluation import evaluate, summarize
from hacray.rundir import check_resume_config, prepare_run_dir
from hacray.runners.common import StopFlag, Throughput, check_resources
from hacray.runners.runbook import RunBook
from hacray.types import Counters, EpisodeStats


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
            self.env_steps = self.episodes = 0
            self.recent: list[EpisodeStats] = []
            counters = self._restore() if resume else Counters()
            self.book = RunBook(config, run_dir, counters, progress)
        except BaseException:
            self.lock.release()
            raise

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config.train
        self.policy.set_weights(self.learner.weights())
        start = time.perf_counter() - self.book.counters.wall_time_s
        rates = Throughput(self.env_steps, self.learner.updates)
        last: dict[str, Any] = {}
        with StopFlag() as stop:
            while self.env_steps < cfg.max_env_steps and not stop.requested:
                self.collect(cfg.episodes_per_cycle)
                train_metrics = self.train()
                self.policy.set_weights(self.learner.weights())
                if self.book.due(self.env_steps):
                    last = self.evaluate_and_save(start, rates, train_metrics)
        if stop.requested:
            last = self.evaluate_and_save(start, rates, {})
        self.book.close()
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
        owed = updates_owed(self.config.replay.updates_per_env_step, self.env_steps,
                            self.learner.updates)
        metrics: dict[str, Any] = {}
        while owed > 0:  # batches drawn in the same order whatever the calls' size
            n = min(owed, self.config.learner.updates_per_call)
            metrics = self.learner.update_many(
                [self.replay.sample(self.config.learner.batch_size) for _ in range(n)])
            owed -= n
        return metrics

    def evaluate_and_save(self, start: float, rates: Throughput,
                          train_metrics: dict[str, Any]) -> dict[str, Any]:
        replay, learner = self.replay, self.learner
        record = self.book.record(
            env_steps=self.env_steps, updates=learner.updates, episodes=self.episodes,
            wall_time_s=time.perf_counter() - start, policy_version=learner.version,
            evaluation=summarize(evaluate(self.eval_env, self.policy, self.config), "eval"),
            recent=self.recent, rates=rates.rates(self.env_steps, learner.updates),
            extra={**{f"replay/level{i}_size": n for i, n in enumerate(replay.sizes())},
                   "train/degenerate_episodes": replay.degenerate_episodes,
                   "train/rejected_episodes": replay.rejected_episodes,
                   "skipped_updates": learner.skipped_updates, **train_metrics})
        self.book.film(self._frames, self.env_steps)
        self.book.save(record, learner.state_dict(),
                       {"env": self.env_rng.bit_generator.state,
                        "replay": replay.rng.bit_generator.state},
                       self.recent, replay.state_dict() if self.config.train.save_replay else None)
        self.book.report(record)
        return record

    def _frames(self) -> list | str:
        from hacray.video import episode_frames
        try:
            return episode_frames(self.eval_env, self.policy, self.config)
        except Exception as err:  # a missing GL library must not end a training run
            return f"{type(err).__name__}: {err}"

    # -- state ------------------------------------------------------------------------------
    def _restore(self) -> Counters:
        path, state, warnings = checkpoint.load_latest(self.run_dir)
        for note in warnings + [f"resumed from {path.name}"]:
            print(f"hacray: {note}", file=sys.stderr)
        self.learner.load_state_dict(state.learner)
        counters = state.counters
        replay, note = checkpoint.load_replay(self.run_dir, counters.env_steps)
        print(f"hacray: {note}", file=sys.stderr)
        if replay is not None:
            self.replay.load_state_dict(replay)
        else:  # an empty replay's normaliser statistics go on from the learner's, which
            # train() would otherwise replace with those of the new episodes alone
            self.replay.restore_normalizer_stats(
                self.learner.obs_norm.stats,
                tuple(level.goal_norm.stats for level in self.learner.levels))
        self.recent = [EpisodeStats(*stats) for stats in state.recent]
        self.env_steps, self.episodes = counters.env_steps, counters.episodes
        if "env" in state.rng:  # a distributed run's checkpoint has per-worker streams only
            self.env_rng.bit_generator.state = state.rng["env"]
        self.replay.rng.bit_generator.state = state.rng["replay"]  # the snapshot's too
        return counters


def train_local(config: Config, run_dir: Path, resume: bool = False, overwrite: bool = False,
                progress: bool | None = None) -> dict[str, Any]:
    trainer = LocalTrainer(config, run_dir, resume, overwrite, progress)
    try:
        return trainer.run()
    finally:
        trainer.lock.release()
