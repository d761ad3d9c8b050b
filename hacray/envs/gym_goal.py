"""Any gymnasium goal-conditioned env behind the GoalEnv interface: the generic adapter.

An env qualifies when its observation space is a Dict of flat Boxes named ``observation``,
``achieved_goal`` and ``desired_goal`` (gymnasium-robotics' GoalEnv API) and its action space
is a bounded Box. It comes from ``gym.make(env.id, **env.kwargs)`` for a registered id
(gymnasium-robotics' ids included), or from ``env.entry_point: "package.module:factory"`` for a
user's own env: ``factory(**env.kwargs)`` returns the env, and the module is imported from the
installed packages or else from the working directory (on Ray workers too: a local Ray's
workers share the driver's working directory, and ``ray job submit --working-dir`` puts the
upload there).

- Success is the env's own ``info["is_success"]`` or ``info["success"]`` where it reports one,
  else the achieved goal within ``goal_threshold`` of the desired goal. HER rewards relabelled
  goals by that distance, so ``goal_threshold`` is needed: from the config, else the env's
  ``distance_threshold``.
- Level 0 acts in [-1, 1]^d (rollouts keep its actions there), scaled to the env's box.
- The default subgoal space is the whole observation where its box is bounded; elsewhere the
  config names it (``env.subgoal_indices``, with ``_low`` / ``_high`` where the box has no
  finite bounds there).
- Fetch tasks keep their own faster adapter (``hacray.envs.fetch``); this one is the fallback.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import sys
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from hacray.config import ConfigError, EnvConfig
from hacray.goals import distance_reached

if TYPE_CHECKING:
    from hacray.envs import Subgoal

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def gym():
    """gymnasium with gymnasium-robotics' envs registered."""
    import gymnasium
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics  # prints a notice about Adroit envs on import
    gymnasium.register_envs(gymnasium_robotics)
    return gymnasium


def load_entry_point(entry_point: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:factory"``; ConfigError naming what failed."""
    module_name, _, attribute = entry_point.partition(":")
    try:
        target: Any = _import(module_name)
    except Exception as err:  # the user's module may fail in any way while importing
        raise ConfigError(f"config: env.entry_point {entry_point!r} does not import "
                          f"({_one_line(err)})") from None
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise ConfigError(f"config: env.entry_point {entry_point!r}: {module_name} has no "
                              f"attribute {attribute!r}")
        target = getattr(target, name)
    if not callable(target):
        raise ConfigError(f"config: env.entry_point {entry_point!r} is not callable")
    return target


def _import(module_name: str) -> Any:
    """Import from the installed packages, else from the working directory (``hacray`` is a
    console script: unlike ``python script.py``, it does not put the working directory on
    sys.path)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        top = module_name.split(".")[0]
        here = os.getcwd()
        if err.name not in (top, module_name) or here in sys.path:
            raise  # a module the user's module imports is missing: say so as it is
        sys.path.append(here)
        return importlib.import_module(module_name)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def construct(config: EnvConfig, render: bool) -> Any:
    """The gymnasium env the config names, made to render rgb_array frames when ``render`` and
    the env can (MuJoCo envs render only when asked, so this costs no step time)."""
    kwargs = dict(config.kwargs)
    if config.entry_point is not None:
        factory = load_entry_point(config.entry_point)
        if render and _accepts(factory, "render_mode"):
            kwargs.setdefault("render_mode", "rgb_array")
        try:
            env = factory(**kwargs)
        except Exception as err:
            raise ConfigError(f"config: env.entry_point {config.entry_point!r} failed to make "
                              f"the env ({_one_line(err)})") from None
        if not (hasattr(env, "reset") and hasattr(env, "step")
                and hasattr(env, "observation_space") and hasattr(env, "action_space")):
            raise ConfigError(f"config: env.entry_point {config.entry_point!r} returned a "
                              f"{type(env).__name__}, not a gymnasium env")
        return env
    gymnasium = gym()
    if config.id not in gymnasium.registry:
        raise ConfigError(f"config: env.id {config.id!r} is not a registered gymnasium env")
    if config.max_episode_steps:
        kwargs["max_episode_steps"] = config.max_episode_steps
    if render and "rgb_array" in _registered_render_modes(gymnasium, config.id):
        kwargs.setdefault("render_mode", "rgb_array")
    try:
        return gymnasium.make(config.id, disable_env_checker=True, **kwargs)
    except Exception as err:
        raise ConfigError(f"config: gym.make({config.id!r}) with env.kwargs failed "
                          f"({_one_line(err)})") from None


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def _registered_render_modes(gymnasium: Any, env_id: str) -> list[str]:
    """The render modes a registered env's class declares (read without making it)."""
    creator = gymnasium.spec(env_id).entry_point
    if isinstance(creator, str):
        from gymnasium.envs.registration import load_env_creator
        creator = load_env_creator(creator)
    return list(getattr(creator, "metadata", {}).get("render_modes", []))


def goal_spaces(env: Any, name: str) -> tuple[Any, Any, Any]:
    """(observation, achieved_goal, desired_goal) Boxes of a goal env; ConfigError otherwise."""
    spaces = getattr(env.observation_space, "spaces", None)
    if not isinstance(spaces, dict) or not all(k in spaces for k in GOAL_KEYS):
        raise ConfigError(f"config: env {name!r} is not goal-conditioned (its observation must "
                          "be a Dict with observation, achieved_goal and desired_goal)")
    for key in GOAL_KEYS:
        shape = getattr(spaces[key], "shape", None)
        if shape is None or len(shape) != 1 or not hasattr(spaces[key], "low"):
            raise ConfigError(f"config: env {name!r}: its {key} must be a flat Box, "
                              f"not {spaces[key]}")
    return spaces["observation"], spaces["achieved_goal"], spaces["desired_goal"]


def action_box(env: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The env's (low, high) action bounds; ConfigError unless a bounded flat Box."""
    space = env.action_space
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or len(space.shape) != 1 or not (np.all(np.isfinite(low))
                                                    and np.all(np.isfinite(high))):
        raise ConfigError(f"config: env {name!r}: its action space must be a bounded flat Box, "
                          f"not {space}")
    return low.astype(np.float64), high.astype(np.float64)


def default_subgoal(low: np.ndarray, high: np.ndarray) -> "Subgoal":
    """The whole observation where its box is bounded, else no subgoal space (enough for one
    level: a hierarchy needs env.subgoal_indices then, as level_spaces says)."""
    if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
        return list(range(low.shape[0])), low.tolist(), high.tolist()
    return [], [], []


class GymGoalEnv:
    """One gymnasium goal env; observations and goals come back as float32.

    ``render``: make the env render rgb_array frames where it can (for videos); stepping costs
    the same either way.
    """

    def __init__(self, config: EnvConfig, render: bool = False):
        from hacray.envs import resolve_spec
        name = config.entry_point or config.id
        self.env = construct(config, render)
        try:
            obs_space, achieved_space, goal_space = goal_spaces(self.env, name)
            self.act_low, act_high = action_box(self.env, name)
            self.act_half = (act_high - self.act_low) / 2
            # level 0 acts in [-1, 1] (its actions already clipped there): most envs' own box
            self.unit_box = bool(np.all(self.act_low == -1.0) and np.all(act_high == 1.0))
            self.with_achieved = config.observe_achieved_goal
            low, high = obs_space.low, obs_space.high
            if self.with_achieved:
                low = np.concatenate([low, achieved_space.low])
                high = np.concatenate([high, achieved_space.high])
            threshold = (config.goal_threshold if config.goal_threshold is not None
                         else getattr(self.env.unwrapped, "distance_threshold", None))
            if threshold is None:
                raise ConfigError(f"config: env.goal_threshold is needed: {name} has no "
                                  "distance_threshold (HER rewards relabelled goals by distance)")
            spec = getattr(self.env, "spec", None)
            steps = config.max_episode_steps or getattr(spec, "max_episode_steps", None)
            if not steps:
                raise ConfigError(f"config: env.max_episode_steps is needed: {name} has no "
                                  "time limit of its own")
            self.spec = resolve_spec(
                config, id=config.id, obs_dim=low.shape[0], goal_dim=goal_space.shape[0],
                action_dim=self.act_low.shape[0], max_episode_steps=steps,
                goal_threshold=float(threshold),
                default_subgoal=default_subgoal(low, high), obs_bounds=(low, high))
        except BaseException:
            self.env.close()
            raise
        self.reached = distance_reached(self.spec.goal_threshold)
        self.goal = np.zeros(self.spec.goal_dim, np.float32)
        self.elapsed = 0

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        observation, _ = self.env.reset(seed=int(seed))
        self.elapsed = 0
        obs, achieved = self._split(observation)
        self.goal = np.asarray(observation["desired_goal"], np.float32)
        return obs, achieved, self.goal

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        if not self.unit_box:
            action = self.act_low + self.act_half * (action + 1.0)
        observation, _, terminated, truncated, info = self.env.step(action)
        self.elapsed += 1
        obs, achieved = self._split(observation)
        flag = info.get("is_success", info.get("success"))
        success = bool(self.reached(achieved, self.goal) if flag is None else flag)
        ended = terminated or truncated or self.elapsed >= self.spec.max_episode_steps
        return obs, achieved, success, bool(ended)

    def _split(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        achieved = np.asarray(observation["achieved_goal"], np.float32)
        obs = np.asarray(observation["observation"], np.float32)
        if self.with_achieved:
            obs = np.concatenate([obs, achieved])
        return obs, achieved

    def render(self) -> np.ndarray | None:
        """The env's own rgb_array frame; None when it was not made to render one."""
        if getattr(self.env, "render_mode", None) != "rgb_array":
            return None
        return self.env.render()

    def close(self) -> None:
        self.env.close()
