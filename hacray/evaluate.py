"""Evaluate a saved policy: success overall and per level, return, subgoal reach rate."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from hacray import checkpoint
from hacray.algo.rollout import Policy
from hacray.blueprint import Blueprint
from hacray.config import Config, config_from_dict, load_config
from hacray.envs import GoalEnv, make_env
from hacray.errors import CheckpointError
from hacray.evaluation import evaluate, summarize


class LoadedPolicy(NamedTuple):
    """A saved policy ready to act: its run's config, a fresh env, and the checkpoint's counters."""

    path: Path
    config: Config
    env: GoalEnv
    policy: Policy
    env_steps_trained: int


def load_policy(target: Path, render: bool = False) -> LoadedPolicy:
    """Load a checkpoint (a file, or a run directory's best) into a Policy.

    The env is open: the caller closes it; ``render``: made to render frames (videos)."""
    path = checkpoint.resolve(target)
    state = checkpoint.read(path)  # before any env: a file that holds no policy is one line
    config = config_of(path, state)
    env = make_env(config.env, render)
    blueprint = Blueprint.of(config, env.spec)
    learner = blueprint.learner()
    learner.load_state_dict(state.learner)
    policy = blueprint.policy()
    policy.set_weights(learner.weights())
    return LoadedPolicy(path, config, env, policy, state.counters.env_steps)


def config_of(path: Path, state: checkpoint.RunState) -> Config:
    """The config a checkpoint was trained with: the one it keeps, else its run's config.yaml
    (checkpoints written before they kept one: these must stay in their run directory)."""
    if state.config is not None:
        return config_from_dict(state.config)
    run_config = path.parent.parent / "config.yaml"
    if not run_config.is_file():
        raise CheckpointError(f"{path} keeps no config (written by an older hacray) and "
                              f"{run_config} does not exist: evaluate it inside its run "
                              "directory (RUN/checkpoints/)")
    return load_config(run_config)


def evaluate_checkpoint(target: Path, episodes: int) -> dict[str, Any]:
    """Load a checkpoint (a file, or a run directory's best) and run deterministic episodes."""
    loaded = load_policy(target)
    stats = evaluate(loaded.env, loaded.policy, loaded.config, episodes)
    loaded.env.close()
    result = {"checkpoint": str(loaded.path), "episodes": episodes,
              "env_steps_trained": loaded.env_steps_trained}
    result.update(summarize(stats, "eval"))
    return result


def format_table(result: dict[str, Any]) -> str:
    width = max(len(k) for k in result)
    return "\n".join(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                     for k, v in result.items())
