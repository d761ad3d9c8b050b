"""One hierarchical episode: level i proposes subgoals that level i-1 pursues for up to H attempts.

Plain numpy: the policy is the learner's exported actors plus normaliser statistics. An episode
is a generator (:func:`play`) that yields every action it needs as an :class:`ActRequest` and
is sent the action back, so that :func:`run_episodes` can play several envs side by side with
one batched policy call per level and step; :func:`run_episode` plays one.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Generator, NamedTuple, Sequence

import numpy as np

from hacray.algo.hierarchy import LevelSpace
from hacray.algo.normalizer import Normalizer
from hacray.algo.numpy_policy import Layers, actor_forward, actor_layers
from hacray.config import AgentConfig, LearnerConfig
from hacray.envs import GoalEnv, goal_kind
from hacray.goals import distance_reached
from hacray.types import Episode, EpisodeStats, PolicyWeights, Segment

StepHook = Callable[[np.ndarray, tuple[np.ndarray, ...]], None]
"""Called after every env step as ``on_step(obs, goals)``: the new observation, and the goal
each level is pursuing at that step, level 0 first (``goals[-1]`` is the env goal)."""


class ActRequest(NamedTuple):
    """An episode asks for level ``level``'s action on (obs, goal); exploration is its own."""

    level: int
    obs: np.ndarray
    goal: np.ndarray


Play = Generator[ActRequest, np.ndarray, Episode]
"""A running episode: yields requests, is sent deterministic actions, returns the Episode."""


class Policy:
    """Deterministic actors of every level, evaluated in numpy on normalised inputs."""

    def __init__(self, spaces: list[LevelSpace], obs_dim: int, config: LearnerConfig):
        self.spaces = spaces
        norm = (config.norm_eps, config.norm_clip, config.obs_clip)
        self.obs_norm = Normalizer(obs_dim, *norm)
        self.goal_norms = [Normalizer(s.goal_dim, *norm) for s in spaces]
        self.weights: PolicyWeights | None = None
        self.layers: list[Layers] = []
        self.input_norms: list[Normalizer] = []  # per level: (obs, goal) normalised at once

    @property
    def version(self) -> int:
        return 0 if self.weights is None else self.weights.version

    def set_weights(self, weights: PolicyWeights) -> None:
        self.weights = weights
        self.layers = [actor_layers(actor) for actor in weights.actors]
        self.obs_norm.set_stats(weights.obs_stats)
        for norm, stats in zip(self.goal_norms, weights.goal_stats):
            norm.set_stats(stats)
        self.input_norms = [Normalizer.joined(self.obs_norm, norm) for norm in self.goal_norms]

    def act(self, level: int, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The level's deterministic action in env units (random-init weights before training).
        ``obs`` (obs_dim,) and ``goal`` (goal_dim,), or a batch of rows of each."""
        assert self.weights is not None, "Policy.set_weights must be called before acting"
        inputs = self.input_norms[level](np.concatenate([obs, goal], axis=-1))
        unit = actor_forward(self.layers[level], np.atleast_2d(inputs))
        action = self.spaces[level].unscale_action(unit).astype(np.float32)
        return action if inputs.ndim == 2 else action[0]


@dataclass
class _Recorder:
    """Mutable bookkeeping of one episode while it runs."""

    segments: list[list[Segment]]
    obs: np.ndarray
    env_achieved: np.ndarray
    env_steps: int = 0
    done: bool = False
    success: bool = False
    episode_return: float = 0.0
    subgoals_given: np.ndarray | None = None
    subgoals_reached: np.ndarray | None = None
    tests: int = 0
    tests_failed: int = 0
    goals: list[np.ndarray] = field(default_factory=list)
    on_step: StepHook | None = None
    reached_top: Callable[[np.ndarray, np.ndarray], bool] | None = None
    holds: Callable[[np.ndarray, np.ndarray], bool] | None = None
    """Whether the env goal is near enough for agent.hold_at_goal's hold (agent.hold_radius)."""
    direct: np.ndarray | None = None
    """The env action values the top level set with its current subgoal (top_action_indices)."""


def run_episode(env: GoalEnv, policy: Policy, agent: AgentConfig, env_seed: int,
                rng: np.random.Generator, explore: bool, worker_id: int = 0,
                on_step: StepHook | None = None) -> Episode:
    """Play one episode from ``env.reset(env_seed)``; exploration noise and subgoal tests only
    when ``explore``. Returns every level's segments and the episode's statistics.
    ``on_step`` (optional, e.g. a video recorder) sees every step; it changes nothing else."""
    episode = play(env, policy, agent, env_seed, rng, explore, worker_id, on_step)
    action = None  # the first send must be None (a generator not yet started)
    while True:
        try:
            request = episode.send(action)
        except StopIteration as done:  # also an episode that asked nothing (held throughout)
            return done.value
        action = policy.act(*request)


def run_episodes(episodes: Sequence[Play], policy: Policy) -> list[Episode]:
    """Play episodes side by side (one env each): every round, the pending requests of each
    level are answered by one batched policy call. Returns the Episodes in the given order.

    A round goes from the top level down, so that an episode given a subgoal asks its level-0
    action in the same round's level-0 call: every episode steps its env once per round, and a
    round makes at most one call per level."""
    pending: dict[int, ActRequest] = {}
    finished: dict[int, Episode] = {}
    for i, episode in enumerate(episodes):
        try:
            pending[i] = next(episode)
        except StopIteration as done:  # an episode that asked nothing (held throughout)
            finished[i] = done.value
    top = len(policy.spaces) - 1
    while pending:
        for level in range(top, -1, -1):
            asking = [i for i, request in pending.items() if request.level == level]
            if not asking:
                continue
            # np.array of equal-shaped rows is np.stack's result at a third of its cost
            actions = policy.act(level, np.array([pending[i].obs for i in asking]),
                                 np.array([pending[i].goal for i in asking]))
            for i, action in zip(asking, actions):
                try:
                    pending[i] = episodes[i].send(action)
                except StopIteration as done:
                    finished[i] = done.value
                    del pending[i]
    return [finished[i] for i in range(len(episodes))]


def play(env: GoalEnv, policy: Policy, agent: AgentConfig, env_seed: int,
         rng: np.random.Generator, explore: bool, worker_id: int = 0,
         on_step: StepHook | None = None) -> Play:
    """The episode of :func:`run_episode` as a generator of action requests (``policy`` gives
    the spaces and the version; its actions come back through ``send``)."""
    spaces = policy.spaces
    top = len(spaces) - 1
    obs, achieved, goal = env.reset(env_seed)
    if explore and env.spec.grasp_start and rng.random() < env.spec.grasp_start:
        obs, achieved, goal = env.start_grasped()  # training only: evaluation never draws
    rec = _Recorder(segments=[[] for _ in spaces], obs=obs, env_achieved=achieved,
                    subgoals_given=np.zeros(len(spaces)), subgoals_reached=np.zeros(len(spaces)),
                    goals=[goal] * len(spaces), on_step=on_step,
                    reached_top=distance_reached(spaces[top].threshold),
                    holds=distance_reached(spaces[top].threshold if agent.hold_radius is None
                                           else agent.hold_radius))
    degenerate = bool(rec.reached_top(achieved, goal))
    yield from _run_level(top, goal, False, env, policy, agent, rng, explore, rec)
    given = rec.subgoals_given
    reach = tuple(float(r / g) if g else float("nan") for r, g in zip(rec.subgoals_reached, given))
    spread = tuple(float("nan") if i == 0 or not rec.segments[i] else float(np.mean(
        np.std(np.vstack([s.actions for s in rec.segments[i]]), axis=0)))
        for i in range(len(spaces)))
    stats = EpisodeStats(
        success=float(rec.success), env_steps=rec.env_steps, episode_return=rec.episode_return,
        degenerate=degenerate, subgoal_reach=reach, subgoal_spread=spread,
        subgoal_tests_failed=rec.tests_failed / rec.tests if rec.tests else 0.0,
        goal_kind=goal_kind(env.spec, goal))
    return Episode(segments=tuple(tuple(s) for s in rec.segments), stats=stats,
                   policy_version=policy.version, worker_id=worker_id)


def _explore(action: np.ndarray, space: LevelSpace, agent: AgentConfig,
             rng: np.random.Generator) -> np.ndarray:
    """Uniform random action with probability random_eps, else Gaussian noise; kept in bounds
    (each level's own with agent.level_random_eps / agent.level_noise_std)."""
    eps = agent.random_eps if agent.level_random_eps is None \
        else agent.level_random_eps[space.index]
    std = agent.noise_std if agent.level_noise_std is None else agent.level_noise_std[space.index]
    if rng.random() < eps:
        # rng.uniform(act_low, act_high): the same draws and arithmetic, without its
        # broadcasting machinery (18 us of a step's ~1 ms)
        low, span = space.uniform_low_span
        return (low + span * rng.random(space.act_dim)).astype(np.float32)
    noisy = action + std * space.act_half * rng.standard_normal(space.act_dim)
    return _in_box(noisy, space)


def _in_box(action: np.ndarray, space: LevelSpace) -> np.ndarray:
    return np.minimum(np.maximum(action, space.act_low), space.act_high).astype(np.float32)


def _jitter(action: np.ndarray, space: LevelSpace, noise: float,
            rng: np.random.Generator) -> np.ndarray:
    """``action`` moved by uniform noise of ``noise`` half-widths, kept in the box."""
    return _in_box(action + noise * space.act_half * rng.uniform(-1.0, 1.0, space.act_dim), space)


def _stay(space: LevelSpace, below: LevelSpace | None, rec: _Recorder) -> np.ndarray:
    """The action that keeps things where they are: a subgoal at where the level below stands
    (absolute or a zero offset), or, on the motor level, the zero action."""
    if below is None:
        return _in_box(np.zeros(space.act_dim, np.float32), space)
    start = below.achieved(rec.obs, rec.env_achieved)
    # the env action values a level sets itself stay as they were (a grasp goes on holding)
    kept = rec.direct if rec.direct is not None else np.zeros(space.direct_dim, np.float32)
    return np.concatenate([space.hindsight_action(start, start), kept[:space.direct_dim]]
                          ).astype(np.float32)


def _run_level(level: int, goal: np.ndarray, testing: bool, env: GoalEnv, policy: Policy,
               agent: AgentConfig, rng: np.random.Generator, explore: bool,
               rec: _Recorder) -> Generator[ActRequest, np.ndarray, bool]:
    """Level ``level`` pursues ``goal`` for up to H attempts; returns whether it reached it.

    Lower levels return as soon as their goal is reached; the top level uses all its attempts
    unless the env's episode ends first, or, with ``agent.top_until_episode_end``, goes on until
    the episode ends. ``testing`` (a subgoal test above) switches off noise.
    """
    space = policy.spaces[level]
    rec.goals[level] = goal
    reached = distance_reached(space.threshold, space.scale)
    env_goal = rec.goals[-1]
    obs_rows = [rec.obs]
    ach_rows = [space.with_context(space.achieved(rec.obs, rec.env_achieved), env_goal)]
    actions, hindsight, tested, missed, steps = [], [], [], [], []
    goal_hit = False
    top = level == len(policy.spaces) - 1
    attempts = itertools.count() if top and agent.top_until_episode_end else range(space.horizon)
    hold, hold_below = top and agent.hold_at_goal, not top and agent.hold_at_goal
    anchor = None   # agent.hold_anchored: the stay subgoal set when the hold began
    for _ in attempts:
        if hold and rec.holds(rec.env_achieved, env_goal):
            action = anchor if anchor is not None else _stay(
                space, policy.spaces[level - 1] if level else None, rec)
            if agent.hold_anchored:
                anchor = action
        else:
            anchor = None
            action = yield ActRequest(level, rec.obs, goal)
            if explore and not testing:
                action = _explore(action, space, agent, rng)
            elif top and not explore and agent.test_top_noise:
                action = _jitter(action, space, agent.test_top_noise, rng)
        env_steps_before = rec.env_steps
        if level == 0:
            _env_step(env, space.env_action(action, rec.direct), rec)
            hindsight.append(action)
            tested.append(False)
            missed.append(False)
        else:
            test = testing or (explore and rng.random() < agent.subgoal_test_prob)
            below = policy.spaces[level - 1]
            start = below.achieved(rec.obs, rec.env_achieved)
            setting = space.split(action)[1]  # the env action values it sets (usually none)
            if space.direct_dim:
                rec.direct = setting
            subgoal = below.with_context(space.subgoal(action, start), env_goal)
            sub_hit = yield from _run_level(level - 1, subgoal, test, env, policy, agent, rng,
                                            explore, rec)
            hindsight.append(np.concatenate([space.hindsight_action(
                below.achieved(rec.obs, rec.env_achieved), start), setting]))
            # a subgoal whose attempts were cut off by the episode's end was not missed
            cut_off = not sub_hit and len(rec.segments[level - 1][-1].actions) < below.horizon
            tested.append(test)
            missed.append(not sub_hit and not cut_off)
            if not cut_off:
                rec.subgoals_given[level - 1] += 1
                rec.subgoals_reached[level - 1] += sub_hit
                rec.tests += test
                rec.tests_failed += test and not sub_hit
        actions.append(action)
        steps.append(rec.env_steps - env_steps_before)
        obs_rows.append(rec.obs)
        ach_rows.append(space.with_context(space.achieved(rec.obs, rec.env_achieved), env_goal))
        goal_hit = bool(reached(ach_rows[-1], goal))
        # holding, a lower level's attempt ends where the env goal is reached (as in HAC, where
        # a level stops when its goal or a goal above is met): the top level then holds it
        held = hold_below and bool(rec.holds(rec.env_achieved, env_goal))
        if rec.done or (goal_hit and not top) or held:
            break
    rec.segments[level].append(Segment(
        level=level, obs=np.array(obs_rows), achieved=np.array(ach_rows),
        goal=np.asarray(goal, np.float32), actions=np.array(actions),
        hindsight_actions=np.array(hindsight, np.float32),
        tested=np.asarray(tested, bool), missed=np.asarray(missed, bool),
        steps=np.asarray(steps, np.int32)))
    return goal_hit


def _env_step(env: GoalEnv, action: np.ndarray, rec: _Recorder) -> None:
    obs, achieved, success, truncated = env.step(action)
    rec.obs, rec.env_achieved = obs, achieved
    rec.env_steps += 1
    rec.success = success
    rec.episode_return += float(success) - 1.0
    rec.done = truncated
    if rec.on_step is not None:
        rec.on_step(obs, tuple(rec.goals))
