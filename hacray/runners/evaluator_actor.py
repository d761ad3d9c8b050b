"""The evaluator as a Ray actor: deterministic episodes, and evaluation videos for TensorBoard."""
from __future__ import annotations

import ray

from hacray.blueprint import Blueprint
from hacray.config import Config
from hacray.envs import make_env
from hacray.evaluation import evaluate, summarize
from hacray.types import PolicyWeights


@ray.remote
class Evaluator:
    """Deterministic episodes on the run's fixed evaluation seeds, in an env of its own."""

    def __init__(self, config: Config):
        from hacray.render import default_gl_backend
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
