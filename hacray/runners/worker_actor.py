"""A rollout worker as a Ray actor: its envs side by side with the numpy policy, whole episodes
pushed to the replay actor, the newest weights pulled from the learner actor once per round.
No torch here: a node of 32 workers would hold 32 copies of it."""
from __future__ import annotations

import time
from typing import Optional

import ray

from hacray import seeding
from hacray.algo.rollout import play, run_episodes
from hacray.blueprint import Blueprint
from hacray.config import Config
from hacray.envs import make_envs
from hacray.runners.ray_util import get, meters
from hacray.types import Episode, Turn


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
