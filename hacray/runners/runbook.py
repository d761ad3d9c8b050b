"""A run's bookkeeping, the same for both runners: when to evaluate, the metrics record of each
evaluation, its progress line, the evaluation video's cadence, the best success so far and the
checkpoint. The runners only gather the numbers (in one process, or from their actors)."""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Sequence

from hacray import checkpoint
from hacray.checkpoint import RunState
from hacray.config import Config, to_dict
from hacray.evaluation import summarize
from hacray.logging import RunLogger
from hacray.runners.common import hyperparameter_table
from hacray.types import Counters, EpisodeStats

Frames = Callable[[], "list | str"]
"""Makes one evaluation episode's frames, or says in one line why it cannot."""


class RunBook:
    """Bookkeeping of one run in ``run_dir``, going on from ``counters`` (a resumed run's)."""

    def __init__(self, config: Config, run_dir: Any, counters: Counters,
                 progress: Optional[bool]):
        self.config, self.run_dir, self.counters = config, run_dir, counters
        self.logger = RunLogger(run_dir, config.train.tensorboard)
        self.logger.text("hyperparameters", hyperparameter_table(config))
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.video_every = config.train.video_every if config.train.tensorboard else 0
        self.evaluations = 0
        every = config.train.eval_every
        self.next_eval = (counters.env_steps // every + 1) * every

    def due(self, env_steps: int) -> bool:
        """Whether an evaluation is due at ``env_steps`` (every eval_every, and at the end);
        if so, the next one is set an interval on (``skip_past`` moves it past ``env_steps``)."""
        train = self.config.train
        if env_steps >= self.next_eval or env_steps >= train.max_env_steps:
            self.next_eval += train.eval_every
            return True
        return False

    def skip_past(self, env_steps: int) -> None:
        """A free-running run evaluates once however many intervals it crossed."""
        every = self.config.train.eval_every
        self.next_eval = max(self.next_eval, (env_steps // every + 1) * every)

    def record(self, *, env_steps: int, updates: int, episodes: int, wall_time_s: float,
               policy_version: int, evaluation: dict[str, float],
               recent: Sequence[EpisodeStats], rates: dict[str, float],
               extra: dict[str, Any]) -> dict[str, Any]:
        """The metrics record of one evaluation, logged (metrics.jsonl, TensorBoard)."""
        record: dict[str, Any] = {
            "env_steps": env_steps, "updates": updates, "episodes": episodes,
            "wall_time_s": wall_time_s, "policy_version": policy_version, **evaluation,
            **summarize(recent, "train"), **rates, **extra}
        self.logger.write(record, env_steps, record=True)
        return record

    def film(self, frames: Frames, env_steps: int) -> None:
        """Every ``train.video_every`` evaluations, one evaluation episode as a TensorBoard GIF.
        Rendering trouble (no GL back end) turns videos off with a note; training goes on."""
        self.evaluations += 1
        if not self.video_every or (self.evaluations - 1) % self.video_every:
            return
        made = frames()
        if isinstance(made, str):
            print(f"hacray: note: evaluation videos off ({made})", file=sys.stderr)
            self.video_every = 0
            return
        self.logger.gif("eval/video", made, env_steps)

    def save(self, record: dict[str, Any], learner: dict[str, Any], rng: dict[str, Any],
             recent: Sequence[EpisodeStats], replay: Optional[dict[str, Any]]) -> None:
        """The checkpoint of this record (best.pt too if its success is the best so far)."""
        success = record["eval/success_rate"]
        is_best = success > self.counters.best_success
        self.counters = Counters(record["env_steps"], record["episodes"],
                                 max(self.counters.best_success, success), record["wall_time_s"])
        state = RunState(learner, self.counters, rng, [tuple(stats) for stats in recent],
                         to_dict(self.config))
        checkpoint.save(self.run_dir, state, self.config.train.checkpoint_keep, is_best=is_best,
                        replay=replay)

    def report(self, record: dict[str, Any]) -> None:
        """One progress line on a terminal: counters, success, throughput, time and ETA."""
        if not self.progress:
            return
        lag = f"  policy lag {record['policy_lag']:4.1f}" if "policy_lag" in record else ""
        done = record["env_steps"] / self.config.train.max_env_steps
        eta = record["wall_time_s"] * (1 - done) / max(done, 1e-9)
        print(f"env_steps {record['env_steps']:>9,d}  updates {record['updates']:>8,d}  "
              f"eval success {record['eval/success_rate']:.2f}  "
              f"{record['charts/env_steps_per_s']:7.0f} steps/s{lag}  "
              f"{record['wall_time_s']:7.1f} s  ETA {eta:6.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.logger.close()
