"""Does the top level's actor pick the action its own critic rates best? A saved policy is
played twice on the same evaluation episodes: as trained, and with the top level's action
replaced by the best of ``--candidates`` uniform random actions plus the actor's own, by the
top level's critic (nothing is retrained). If the second plays much better, the actor is stuck
in a local optimum of a critic that knows better (DDPG's actor only climbs the critic's slope);
if not, the critic itself does not know the way. A third play is the control: the top level's
action moved by uniform noise of ``--jitter`` of its half-range (``agent.test_top_noise``), so that a gain that any
perturbation would give (a policy knocked out of a dead end) is not read as the critic's.

Prints one JSON line: success of both, and of the argmax play, how much higher the critic
rated its pick than the actor's (mean) and how often it picked something else (more than
``--differ`` of the action's half-range away in some coordinate).

    python benchmarks/argmax_top.py runs/maze/checkpoints/ckpt_000000500000.pt --episodes 100
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from hacray import checkpoint, seeding
from hacray.algo.rollout import Policy, run_episode
from hacray.algo.networks import Critic
from hacray.blueprint import Blueprint
from hacray.errors import run_script
from hacray.evaluate import load_policy


class ArgmaxTop:
    """A Policy whose top level acts by the critic's best of random candidates and the actor."""

    def __init__(self, policy: Policy, critic: Critic, candidates: int, differ: float,
                 rng: np.random.Generator):
        self.policy, self.critic, self.candidates, self.differ = policy, critic, candidates, differ
        self.rng = rng
        self.top = len(policy.spaces) - 1
        self.gains: list[float] = []
        self.changed: list[bool] = []

    @property
    def spaces(self):
        return self.policy.spaces

    @property
    def version(self) -> int:
        return self.policy.version

    def act(self, level: int, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        action = self.policy.act(level, obs, goal)
        if level != self.top:
            return action
        space = self.policy.spaces[level]
        own = (action - space.act_centre) / space.act_half
        units = np.vstack([own, self.rng.uniform(-1.0, 1.0, (self.candidates, space.act_dim))])
        inputs = self.policy.input_norms[level](np.concatenate([obs, goal]))
        with torch.no_grad():
            rows = torch.as_tensor(np.hstack([np.repeat(inputs[None], len(units), axis=0),
                                              units]), dtype=torch.float32)
            q = self.critic.net(rows).squeeze(-1).numpy()
        best = int(np.argmax(q))
        self.gains.append(float(q[best] - q[0]))
        self.changed.append(bool(np.abs(units[best] - own).max() > self.differ))
        return space.unscale_action(units[best][None])[0].astype(np.float32)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a checkpoint, or a run directory (its best)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=512)
    parser.add_argument("--differ", type=float, default=0.1)
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--seed-offset", type=int, default=1000)
    args = parser.parse_args(argv)
    loaded = load_policy(args.target)
    config = loaded.config
    learner = Blueprint.of(config, loaded.env.spec).learner()
    learner.load_state_dict(checkpoint.read(loaded.path).learner)
    critic = learner.levels[-1].critic.to("cpu").eval()
    argmax = ArgmaxTop(loaded.policy, critic, args.candidates, args.differ,
                       np.random.default_rng(0))
    seeds = seeding.eval_env_seeds(config.train.seed + args.seed_offset, args.episodes)
    success = {}
    try:
        jitter = dataclasses.replace(config.agent, test_top_noise=args.jitter)
        plays = (("as_trained", loaded.policy, config.agent), ("argmax_top", argmax, config.agent),
                 ("jitter_top", loaded.policy, jitter))
        for name, policy, agent in plays:
            success[name] = float(np.mean([run_episode(
                loaded.env, policy, agent, seed, np.random.default_rng(0),
                explore=False).stats.success for seed in seeds]))
    finally:
        loaded.env.close()
    report = {"checkpoint": str(loaded.path), "env_steps": loaded.env_steps_trained,
              "levels": len(loaded.policy.spaces), "episodes": args.episodes,
              "candidates": args.candidates, "success_as_trained": success["as_trained"],
              "success_argmax_top": success["argmax_top"],
              "jitter": args.jitter, "success_jitter_top": success["jitter_top"],
              "q_gain_mean": round(float(np.mean(argmax.gains)), 3),
              "changed_fraction": round(float(np.mean(argmax.changed)), 3)}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run_script(main, "benchmarks/argmax_top.py")
