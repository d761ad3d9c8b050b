"""Evaluate a saved policy: success overall and per level, return, subgoal reach rate."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hacray import checkpoint
from hacray.config import load_config
from hacray.envs import make_env
from hacray.runners.common import Blueprint, evaluate, summarize


def evaluate_checkpoint(target: Path, episodes: int) -> dict[str, Any]:
    """Load a checkpoint (a file, or a run directory's best) and run deterministic episodes."""
    path = checkpoint.resolve(target)
    run_dir = path.parent.parent
    config = load_config(run_dir / "config.yaml")
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    learner = blueprint.learner()
    state = checkpoint.load(path)
    learner.load_state_dict(state["learner"])
    policy = blueprint.policy()
    policy.set_weights(learner.weights())
    stats = evaluate(env, policy, config, episodes)
    env.close()
    result = {"checkpoint": str(path), "episodes": episodes,
              "env_steps_trained": state["counters"]["env_steps"]}
    result.update(summarize(stats, "eval"))
    return result


def format_table(result: dict[str, Any]) -> str:
    width = max(len(k) for k in result)
    return "\n".join(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                     for k, v in result.items())
