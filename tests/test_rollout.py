"""One hierarchical episode on the tiny env: the segments fit together (component tier)."""
import numpy as np
import pytest

from hacray.blueprint import Blueprint
from hacray.config import load_config
from hacray.envs import make_env
from hacray.goals import distance_reached


def play(overrides=(), explore=True, seed=0):
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]", *overrides))
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    from hacray.algo.rollout import run_episode
    rng = np.random.default_rng(seed)
    return run_episode(env, policy, config.agent, seed, rng, explore), config


@pytest.mark.parametrize("levels,horizons", [(1, [30]), (2, [5, 6]), (3, [2, 3, 5])])
def test_segments_tile_the_episode(levels, horizons):
    episode, _ = play((f"agent.levels={levels}", f"agent.horizons={horizons}"))
    bottom = episode.segments[0]
    assert sum(len(s.actions) for s in bottom) == episode.stats.env_steps == 30
    for before, after in zip(bottom, bottom[1:]):  # level 0 segments chain obs to obs
        np.testing.assert_array_equal(before.obs[-1], after.obs[0])
    for level, segments in enumerate(episode.segments):
        assert all(1 <= len(s.actions) <= horizons[level] for s in segments)
        assert all(len(s.obs) == len(s.actions) + 1 == len(s.achieved) for s in segments)
    assert len(episode.segments[-1]) == 1  # the top level runs once, under the env goal
    for level, segments in enumerate(episode.segments):  # the env steps each action took
        assert all(s.steps.dtype == np.int32 and len(s.steps) == len(s.actions) for s in segments)
        assert sum(int(s.steps.sum()) for s in segments) == 30
        if level == 0:
            assert all((s.steps == 1).all() for s in segments)
        else:  # each action ran one segment of the level below, in order
            np.testing.assert_array_equal(
                np.concatenate([s.steps for s in segments]),
                [int(s.steps.sum()) for s in episode.segments[level - 1]])


def test_hindsight_action_is_where_the_level_below_ended():
    episode, _ = play(("agent.levels=2", "agent.horizons=[5,6]"))
    top, bottom = episode.segments[1][0], episode.segments[0]
    assert len(top.actions) == len(bottom)
    for t, seg in enumerate(bottom):
        np.testing.assert_array_equal(top.hindsight_actions[t], seg.achieved[-1])
        np.testing.assert_array_equal(top.actions[t], seg.goal)  # the subgoal it was given


def test_subgoal_tests_only_when_exploring():
    explored, _ = play(("agent.subgoal_test_prob=1.0",), explore=True)
    greedy, _ = play(("agent.subgoal_test_prob=1.0",), explore=False)
    assert explored.segments[1][0].tested.all()
    assert not greedy.segments[1][0].tested.any()


def test_subgoals_stay_inside_their_bounds():
    episode, config = play(("agent.random_eps=0.5", "agent.noise_std=2.0"))
    actions = episode.segments[1][0].actions
    assert np.all(actions >= -1.0) and np.all(actions <= 1.0)


def test_degenerate_episode_is_detected():
    config = load_config(None, ("env.id=PointMass-v0",))
    env = make_env(config.env)
    seed = next(s for s in range(20000)
                if np.linalg.norm(np.subtract(*env.reset(s)[1:])) < env.spec.goal_threshold)
    episode, _ = play(seed=seed)
    assert episode.stats.degenerate


@pytest.mark.parametrize("levels,horizons", [(1, [30]), (2, [5, 6]), (3, [2, 3, 5])])
def test_side_by_side_episodes_equal_one_at_a_time(levels, horizons):
    """run_episodes batches the policy calls of several envs; each episode is still exactly
    the one run_episode plays from the same seed and rng stream (to float rounding)."""
    from hacray.algo.rollout import play as play_episode
    from hacray.algo.rollout import run_episode, run_episodes
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]",
                                f"agent.levels={levels}", f"agent.horizons={horizons}"))
    envs = [make_env(config.env) for _ in range(3)]
    blueprint = Blueprint.of(config, envs[0].spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    together = run_episodes([play_episode(env, policy, config.agent, seed,
                                          np.random.default_rng(seed), explore=True)
                             for seed, env in enumerate(envs)], policy)
    for seed, episode in enumerate(together):
        alone = run_episode(envs[0], policy, config.agent, seed, np.random.default_rng(seed),
                            explore=True)
        # a batched matrix product may round differently in the last bit; NaN == NaN here
        flat = lambda stats: np.hstack([np.asarray(v, float).ravel() for v in stats[:-1]])
        np.testing.assert_allclose(flat(episode.stats), flat(alone.stats), rtol=1e-6)
        assert episode.stats.goal_kind == alone.stats.goal_kind  # the last field, a name
        for level_together, level_alone in zip(episode.segments, alone.segments):
            assert len(level_together) == len(level_alone)
            for a, b in zip(level_together, level_alone):
                for name in a._fields:
                    np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0,
                                               atol=1e-6, err_msg=name)
    assert len({e.segments[0][0].goal.tobytes() for e in together}) == 3  # three episodes


@pytest.mark.parametrize("low,high", [([-1, -1], [1, 1]), ([1.1, 0.5, 0.4], [1.6, 1.0, 0.6])])
def test_exploration_draws_are_generator_uniforms_and_noise_stays_in_the_box(low, high):
    """The random-action branch is ``rng.uniform(low, high)`` draw for draw and bit for bit;
    the Gaussian branch is clipped to the box."""
    from hacray.algo.hierarchy import LevelSpace
    from hacray.algo.rollout import _explore
    from hacray.config import AgentConfig
    low, high = np.array(low, np.float32), np.array(high, np.float32)
    space = LevelSpace(index=0, horizon=5, goal_dim=2, act_dim=len(low), act_low=low,
                       act_high=high, threshold=0.1, q_low=-5.0, goal_indices=None)
    ours, theirs = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(200):
        action = _explore(low, space, AgentConfig(random_eps=1.0), ours)
        theirs.random()  # the branch's coin
        np.testing.assert_array_equal(action, theirs.uniform(low, high).astype(np.float32))
    assert ours.random() == theirs.random()  # the streams are still in step
    for _ in range(200):
        action = _explore(high, space, AgentConfig(random_eps=0.0, noise_std=3.0), ours)
        assert action.dtype == np.float32 and np.all((low <= action) & (action <= high))


@pytest.mark.parametrize("level_eps,level_std,level,expect", [
    (None, None, 0, "random"),          # random_eps=1 everywhere
    ([0.0, 1.0], None, 0, "noisy"),     # level 0 takes no random action: noise_std's noise
    ([0.0, 1.0], None, 1, "random"),
    ([0.0, 1.0], [0.0, 0.2], 0, "same"),  # and no noise either: the action as it came
    ([0.0, 0.0], [0.2, 0.0], 1, "same"),
])
def test_each_level_explores_with_its_own_random_eps_and_noise(level_eps, level_std, level,
                                                               expect):
    from hacray.algo.hierarchy import LevelSpace
    from hacray.algo.rollout import _explore
    from hacray.config import AgentConfig
    low, high = -np.ones(3, np.float32), np.ones(3, np.float32)
    space = LevelSpace(index=level, horizon=5, goal_dim=2, act_dim=3, act_low=low,
                       act_high=high, threshold=0.1, q_low=-5.0, goal_indices=None)
    agent = AgentConfig(random_eps=1.0, noise_std=0.5, level_random_eps=level_eps,
                        level_noise_std=level_std)
    given = np.full(3, 0.25, np.float32)
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(50):
        action = _explore(given, space, agent, ours)
        theirs.random()   # the branch's coin, drawn whatever the level's eps
        if expect == "random":
            np.testing.assert_array_equal(action, theirs.uniform(low, high).astype(np.float32))
        else:
            std = 0.5 if level_std is None else level_std[level]
            noisy = np.clip(given + std * theirs.standard_normal(3), low, high)
            np.testing.assert_allclose(action, noisy, rtol=1e-6)
            assert (expect == "same") == np.array_equal(action, given)


@pytest.mark.parametrize("air_goal_z,z,kind", [
    (None, 0.9, ""),      # a task without air goals tells no kinds
    (0.4, 0.3999, "table"),
    (0.4, 0.4, "table"),  # at the threshold: still the table
    (0.4, 0.4001, "air"),
])
def test_goal_kind_splits_goals_at_the_air_height(air_goal_z, z, kind):
    from dataclasses import replace

    from hacray.envs import goal_kind
    spec = replace(make_env(load_config(None, ("env.id=PointMass-v0",)).env).spec,
                   air_goal_z=air_goal_z)
    assert goal_kind(spec, np.array([1.3, 0.7, z], np.float32)) == kind


def test_summary_splits_success_by_goal_kind():
    from hacray.evaluation import summarize
    from hacray.types import EpisodeStats

    def stats(success, kind):
        return EpisodeStats(success=success, env_steps=50, episode_return=-10.0, degenerate=False,
                            subgoal_reach=(float("nan"),), subgoal_spread=(float("nan"),),
                            subgoal_tests_failed=0.0, goal_kind=kind)
    split = summarize([stats(1.0, "table"), stats(1.0, "table"), stats(0.0, "table"),
                       stats(1.0, "air"), stats(0.0, "air")], "eval")
    assert split["eval/success_rate"] == 0.6
    assert split["eval/success_rate_table"] == pytest.approx(2 / 3)
    assert split["eval/success_rate_air"] == 0.5
    assert (split["eval/episodes_table"], split["eval/episodes_air"]) == (3.0, 2.0)
    plain = summarize([stats(1.0, ""), stats(0.0, "")], "train")  # kinds not told: no split
    assert not [key for key in plain if "_table" in key or "_air" in key or "episodes_" in key]


@pytest.mark.parametrize("until_end,steps,q_low", [(False, 10, -2.0), (True, 30, -50.0)])
def test_the_top_level_is_capped_at_its_horizon_unless_told_to_run_until_the_end(
        until_end, steps, q_low):
    """HAC gives the top level H attempts: with 2 subgoals of up to 5 steps an episode of the
    30-step env ends after at most 10 steps. agent.top_until_episode_end lets it go on."""
    overrides = ("agent.levels=2", "agent.horizons=[5,2]", "agent.subgoal_test_prob=0",
                 "learner.gamma=0.98", f"agent.top_until_episode_end={str(until_end).lower()}")
    episode, config = play(overrides, explore=False)
    top = episode.segments[1][0]
    if until_end:
        assert episode.stats.env_steps == 30 and len(top.actions) >= 6
    else:
        assert episode.stats.env_steps <= steps and len(top.actions) == 2
    assert sum(len(s.actions) for s in episode.segments[0]) == episode.stats.env_steps
    spec = make_env(config.env).spec
    assert Blueprint.of(config, spec).spaces[1].q_low == pytest.approx(q_low)
    assert Blueprint.of(config, spec).spaces[0].q_low == -5.0  # the lower level keeps -H_0


@pytest.mark.parametrize("action,start,subgoal,reached,hindsight", [
    # offset within the box: start + offset; the hindsight offset is where it ended, from start
    ([0.2, -0.1], [0.0, 0.5], [0.2, 0.4], [0.1, 0.45], [0.1, -0.05]),
    # a subgoal past the subgoal box is clipped into it
    ([0.3, 0.3], [0.9, -0.95], [1.0, -0.65], [1.0, -0.7], [0.1, 0.25]),
    # a move larger than the offset box is clipped to the largest offset
    ([0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.5, -0.6], [0.3, -0.3]),
])
def test_relative_subgoals_and_their_hindsight_actions(action, start, subgoal, reached,
                                                       hindsight):
    config = load_config(None, ("env.id=PointMass-v0", "agent.subgoal_offset=[0.3, 0.3]"))
    spaces = Blueprint.of(config, make_env(config.env).spec).spaces
    top = spaces[1]
    assert top.relative and np.allclose(top.act_low, [-0.3, -0.3])
    f32 = lambda x: np.asarray(x, np.float32)
    np.testing.assert_allclose(top.subgoal(f32(action), f32(start)), subgoal, atol=1e-6)
    np.testing.assert_allclose(top.hindsight_action(f32(reached), f32(start)), hindsight,
                               atol=1e-6)
    assert not spaces[0].relative


def test_a_relative_level_acts_in_offsets_and_stores_hindsight_offsets():
    episode, config = play(("agent.levels=2", "agent.horizons=[5,6]",
                            "agent.subgoal_offset=[0.4, 0.4]", "agent.random_eps=0.5"))
    top, bottom = episode.segments[1][0], episode.segments[0]
    assert np.all(np.abs(top.actions) <= 0.4 + 1e-6)
    for t, seg in enumerate(bottom):
        start = seg.achieved[0]
        expected_goal = np.clip(start + top.actions[t], -1.0, 1.0)  # PointMass's subgoal box
        np.testing.assert_allclose(seg.goal, expected_goal, atol=1e-6)
        np.testing.assert_allclose(top.hindsight_actions[t],
                                   np.clip(seg.achieved[-1] - start, -0.4, 0.4), atol=1e-6)


def test_a_subgoal_offset_of_the_wrong_length_is_refused():
    from hacray.config import ConfigError
    config = load_config(None, ("env.id=PointMass-v0", "agent.subgoal_offset=[0.3]"))
    with pytest.raises(ConfigError, match="agent.subgoal_offset needs one half-width per"):
        Blueprint.of(config, make_env(config.env).spec)


@pytest.mark.parametrize("relative", [(), ("agent.subgoal_offset=[0.4, 0.4]",)])
def test_a_lower_level_that_sees_the_goal_gets_subgoal_then_env_goal(relative):
    """agent.lower_sees_goal: level 0's goal is the subgoal from above, then the env goal (its
    achieved rows carry the env goal too, so it never makes a subgoal reached or missed); the
    level above still proposes and is relabelled in the subgoal space alone."""
    episode, config = play(("agent.levels=2", "agent.horizons=[5,6]",
                            "agent.lower_sees_goal=true", *relative))
    top, bottom = episode.segments[1][0], episode.segments[0]
    env_goal = top.goal
    assert top.actions.shape[1] == top.hindsight_actions.shape[1] == 2  # PointMass's x-y
    for t, seg in enumerate(bottom):
        assert seg.goal.shape == (4,) and seg.achieved.shape[1] == 4
        np.testing.assert_array_equal(seg.goal[2:], env_goal)
        np.testing.assert_array_equal(seg.achieved[:, 2:], np.tile(env_goal, (len(seg.obs), 1)))
        if not relative:
            np.testing.assert_array_equal(seg.goal[:2], top.actions[t])
            np.testing.assert_array_equal(top.hindsight_actions[t], seg.achieved[-1, :2])
    spaces = Blueprint.of(config, make_env(config.env).spec).spaces
    assert (spaces[0].goal_dim, spaces[0].context_dim, spaces[1].context_dim) == (4, 2, 0)


def test_a_flat_agent_cannot_be_told_to_see_its_goal_twice():
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match="agent.lower_sees_goal needs agent.levels >= 2"):
        load_config(None, ("env.id=PointMass-v0", "agent.levels=1", "agent.horizons=[30]",
                           "agent.lower_sees_goal=true"))


class LeavesTheGoal:
    """A scripted point-mass policy that goes to the goal and, once it has been there, walks
    off it for good: the top level proposes the goal, then a point 0.5 past it; level 0 steps
    straight to its goal, or (flat) off to the side."""

    def __init__(self, spaces):
        self.spaces, self.version, self.asked_at_goal, self.been = spaces, 0, 0, False

    def act(self, level, obs, goal):
        if obs.ndim == 2:  # a batch (run_episodes)
            return np.stack([self.act(level, o, g) for o, g in zip(obs, goal)])
        if level == len(self.spaces) - 1 and np.linalg.norm(obs - goal) < 0.1:
            self.asked_at_goal += 1
            self.been = True
        if level == 1:
            return np.clip(goal + (0.5 if self.been else 0.0), -1, 1).astype(np.float32)
        if self.been and len(self.spaces) == 1:
            return np.array([1.0, 1.0], np.float32)
        return np.clip((goal - obs) / 0.15, -1, 1).astype(np.float32)


@pytest.mark.parametrize("levels,hold,success,asked_at_goal", [
    (1, False, False, True),   # flat walks off the goal
    (1, True, True, False),    # ... and with hold_at_goal stays, without being asked
    (2, False, False, True),   # the top level sends the level below past the goal
    (2, True, True, False),    # ... or, holding, a subgoal where it stands
])
def test_hold_at_goal_keeps_the_top_level_from_leaving_a_reached_goal(
        levels, hold, success, asked_at_goal):
    from hacray.algo.rollout import run_episode
    config = load_config(None, ("env.id=PointMass-v0", f"agent.levels={levels}",
                                "agent.horizons=[5,6]" if levels == 2 else "agent.horizons=[30]",
                                "agent.top_until_episode_end=true",
                                f"agent.hold_at_goal={str(hold).lower()}"))
    env = make_env(config.env)
    policy = LeavesTheGoal(Blueprint.of(config, env.spec).spaces)
    seed = next(s for s in range(100) if np.linalg.norm(np.subtract(*env.reset(s)[1:])) > 0.5)
    episode = run_episode(env, policy, config.agent, seed, np.random.default_rng(0), False)
    assert episode.stats.success == success and episode.stats.env_steps == 30
    assert (policy.asked_at_goal > 0) == asked_at_goal
    top = episode.segments[-1][0]
    if hold and levels == 2:  # held: subgoals at where level 0 stood, and reached
        held = np.linalg.norm(top.achieved[:-1] - top.goal, axis=1) < 0.1
        assert held.any()
        np.testing.assert_allclose(top.actions[held], top.achieved[:-1][held], atol=1e-6)
    if hold and levels == 1:
        held = np.linalg.norm(top.achieved[:-1] - top.goal, axis=1) < 0.1
        assert held.any() and np.all(top.actions[held] == 0.0)


class Drifts:
    """A scripted 2-level point-mass policy: the top level proposes the env goal; level 0 steps
    to its subgoal but always drifts 0.03 along x (a motor level that meets a stay subgoal
    within its threshold while slowly moving off it)."""

    def __init__(self, spaces):
        self.spaces, self.version = spaces, 0

    def act(self, level, obs, goal):
        if level == 1:
            return np.asarray(goal, np.float32)
        return np.clip((goal - obs) / 0.15 + [0.2, 0.0], -1, 1).astype(np.float32)


@pytest.mark.parametrize("anchored", [False, True])
def test_hold_anchored_keeps_the_stay_subgoal_set_when_the_hold_began(anchored):
    from hacray.algo.rollout import run_episode
    config = load_config(None, ("env.id=PointMass-v0", "agent.horizons=[5,6]",
                                "agent.top_until_episode_end=true", "agent.hold_at_goal=true",
                                f"agent.hold_anchored={str(anchored).lower()}"))
    env = make_env(config.env)
    seed = next(s for s in range(100) if np.linalg.norm(np.subtract(*env.reset(s)[1:])) > 0.5
                and env.reset(s)[2][0] < 0.5)  # room to drift off along x
    episode = run_episode(env, Drifts(Blueprint.of(config, env.spec).spaces), config.agent,
                          seed, np.random.default_rng(0), False)
    top = episode.segments[1][0]
    held = np.flatnonzero(np.linalg.norm(top.achieved[:-1] - top.goal, axis=1) < 0.1)
    first = held[:np.argmax(np.diff(held) > 1) + 1] if (np.diff(held) > 1).any() else held
    stays = top.actions[first]  # the first hold's
    assert len(stays) >= 2
    if anchored:  # one stay for the whole hold, and level 0 keeps near it to the end
        np.testing.assert_array_equal(stays, stays[:1].repeat(len(stays), 0))
        assert episode.stats.success and len(first) == len(held)
    else:  # each stay where level 0 stood: the drift is ratified step by step
        assert np.all(np.diff(stays[:, 0]) > 0.02)


class Approaches:
    """A scripted 2-level point-mass policy: the top level proposes the env goal, level 0 steps
    towards its subgoal, slowing as it nears it (so the goal's sphere is entered gradually)."""

    def __init__(self, spaces):
        self.spaces, self.version = spaces, 0

    def act(self, level, obs, goal):
        if level == 1:
            return np.asarray(goal, np.float32)
        return np.clip((goal - obs) / 0.3, -1, 1).astype(np.float32)


@pytest.mark.parametrize("radius", [None, 0.03])
def test_hold_radius_begins_the_hold_only_that_near_the_goal(radius):
    from hacray.algo.rollout import run_episode
    extra = () if radius is None else (f"agent.hold_radius={radius}",)
    config = load_config(None, ("env.id=PointMass-v0", "agent.horizons=[5,6]",
                                "agent.top_until_episode_end=true", "agent.hold_at_goal=true")
                         + extra)
    env = make_env(config.env)
    seed = next(s for s in range(100) if np.linalg.norm(np.subtract(*env.reset(s)[1:])) > 0.5)
    episode = run_episode(env, Approaches(Blueprint.of(config, env.spec).spaces), config.agent,
                          seed, np.random.default_rng(0), False)
    top = episode.segments[1][0]
    distance = np.linalg.norm(top.achieved[:-1] - top.goal, axis=1)
    stays = np.all(np.abs(top.actions - top.achieved[:-1]) < 1e-6, axis=1)
    near = distance < (env.spec.goal_threshold if radius is None else radius)
    assert near.any() and (~near).any()
    np.testing.assert_array_equal(stays, near)  # the top level acts until then, holds after
    if radius is not None:  # it was inside the goal's sphere, acting, before the hold began
        assert np.any((distance >= radius) & (distance < env.spec.goal_threshold))


def test_hold_radius_needs_a_hold():
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match="agent.hold_radius needs agent.hold_at_goal"):
        load_config(None, ("env.id=PointMass-v0", "agent.hold_radius=0.03"))


def test_hold_anchored_needs_a_hold():
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match="agent.hold_anchored needs agent.levels >= 2 and "
                                          "agent.hold_at_goal"):
        load_config(None, ("env.id=PointMass-v0", "agent.hold_anchored=true"))


@pytest.mark.parametrize("levels", [1, 2])
def test_test_top_noise_moves_only_the_top_levels_evaluation_actions(levels):
    horizons = "agent.horizons=[30]" if levels == 1 else "agent.horizons=[5,6]"
    base = (f"agent.levels={levels}", horizons)
    plain, config = play(base, explore=False)
    again, _ = play(base, explore=False)
    noisy, _ = play((*base, "agent.test_top_noise=0.5"), explore=False)
    top = lambda e: e.segments[-1][0]
    np.testing.assert_array_equal(top(plain).actions, top(again).actions)  # deterministic
    space = Blueprint.of(config, make_env(config.env).spec).spaces[-1]
    first_plain, first_noisy = top(plain).actions[0], top(noisy).actions[0]  # same start
    assert not np.array_equal(first_plain, first_noisy)
    assert np.all(np.abs(first_noisy - first_plain) <= 0.5 * space.act_half + 1e-6)
    assert np.all(top(noisy).actions >= space.act_low) and np.all(
        top(noisy).actions <= space.act_high)


class PushesThrough:
    """A scripted 2-level point-mass policy whose top level aims past the goal (0.4 beyond it,
    on the line from where it stands), and whose level 0 steps straight to its subgoal."""

    def __init__(self, spaces):
        self.spaces, self.version = spaces, 0

    def act(self, level, obs, goal):
        if level == 1:
            way = (goal - obs) / max(np.linalg.norm(goal - obs), 1e-6)
            return np.clip(goal + 0.4 * way, -1, 1).astype(np.float32)
        return ((goal - obs) / max(np.linalg.norm(goal - obs), 0.15)).astype(np.float32)


@pytest.mark.parametrize("hold", [False, True])
def test_hold_at_goal_ends_a_lower_attempt_where_the_env_goal_is_reached(hold):
    from hacray.algo.rollout import run_episode
    config = load_config(None, ("env.id=PointMass-v0", "agent.horizons=[10,6]",
                                "agent.top_until_episode_end=true",
                                f"agent.hold_at_goal={str(hold).lower()}"))
    env = make_env(config.env)
    policy = PushesThrough(Blueprint.of(config, env.spec).spaces)
    seed = next(s for s in range(100)
                if 0.5 < np.linalg.norm(np.subtract(*env.reset(s)[1:])) and
                np.all(np.abs(env.reset(s)[2]) < 0.5))  # room beyond the goal
    episode = run_episode(env, policy, config.agent, seed, np.random.default_rng(0), False)
    first = episode.segments[0][0]
    inside = np.linalg.norm(first.achieved - first.goal, axis=1)  # to its subgoal
    at_env_goal = np.linalg.norm(first.obs - episode.segments[1][0].goal, axis=1) < 0.1
    assert at_env_goal.any()  # the first attempt passes over the env goal either way
    if hold:  # ... and stops there, and the episode ends on the goal
        assert at_env_goal[-1] and inside[-1] > 0.1
        assert not episode.segments[1][0].missed[0]  # cut short: not a missed subgoal
        assert episode.stats.success
    else:  # ... or goes on to its subgoal beyond it
        assert not at_env_goal[-1] and inside[-1] < 0.1


def test_a_flat_episode_held_from_its_first_step_asks_nothing_and_still_ends():
    """Flat with hold_at_goal and an episode that starts (and stays) at its goal: the policy is
    never asked, one at a time or side by side."""
    from hacray.algo.rollout import play, run_episode, run_episodes
    config = load_config(None, ("env.id=PointMass-v0", "agent.levels=1", "agent.horizons=[30]",
                                "agent.hold_at_goal=true"))
    env = make_env(config.env)
    seed = next(s for s in range(20000)
                if np.linalg.norm(np.subtract(*env.reset(s)[1:])) < env.spec.goal_threshold)
    policy = LeavesTheGoal(Blueprint.of(config, env.spec).spaces)
    episode = run_episode(env, policy, config.agent, seed, np.random.default_rng(0), False)
    assert episode.stats.success and episode.stats.env_steps == 30 and policy.asked_at_goal == 0
    assert np.all(episode.segments[0][0].actions == 0.0)
    other = make_env(config.env)
    both = run_episodes([play(env, policy, config.agent, seed, np.random.default_rng(0), False),
                         play(other, policy, config.agent, 1, np.random.default_rng(0), False)],
                        policy)
    assert both[0].stats.success and both[0].stats.env_steps == 30
    assert both[1].stats.env_steps == 30


@pytest.mark.parametrize("context", [(), ("agent.lower_sees_goal=true",)])
def test_a_subgoal_scale_weighs_the_levels_below_the_top(context):
    """env.subgoal_scale reaches every level with subgoals (the env goal's context padded with
    weight 1) and its replay's rewards; the top level keeps the env's plain distance."""
    config = load_config(None, ("env.id=PointMass-v0", "env.subgoal_scale=[1, 4]", *context))
    blueprint = Blueprint.of(config, make_env(config.env).spec)
    bottom, top = blueprint.spaces
    assert bottom.scale.tolist() == [1, 4] + [1, 1] * bool(context) and top.scale is None
    rewarded = blueprint.replay().levels[0].reached
    gap = np.float32([[0.0, 0.05] + [0.0, 0.0] * bool(context)])  # 0.05 m, weighted 0.2
    assert rewarded(gap, 0 * gap).tolist() == [False]  # the threshold is 0.1


def test_a_subgoal_scale_of_the_wrong_length_is_refused():
    from hacray.config import ConfigError
    config = load_config(None, ("env.id=PointMass-v0", "env.subgoal_scale=[1, 2, 3]"))
    with pytest.raises(ConfigError, match=r"env.subgoal_scale needs one weight per subgoal "
                       r"coordinate \(2 for PointMass-v0\), got 3"):
        make_env(config.env)


def test_a_lower_attempt_ends_where_the_weighted_rule_first_holds():
    """Level 0 stops at the first step its subgoal is reached by the weighted rule: not earlier
    where the plain distance alone would say so, and not later."""
    threshold, scale = 1.0, np.float32([1.0, 2.0])
    weighted, plain = distance_reached(threshold, scale), distance_reached(threshold)
    episode, _ = play(("agent.horizons=[5,10]", f"env.subgoal_threshold={threshold}",
                       "env.subgoal_scale=[1, 2]"), seed=2)
    bottom = episode.segments[0]
    plain_only = early = 0
    for k, seg in enumerate(bottom):
        goals = np.tile(seg.goal, (len(seg.achieved), 1))
        hit, near = weighted(seg.achieved, goals), plain(seg.achieved, goals)
        assert not hit[1:-1].any()  # it would have stopped there
        if len(seg.actions) < 5 and k < len(bottom) - 1:
            assert hit[-1]
            early += 1
        plain_only += int((near[1:-1] & ~hit[1:-1]).sum())
    # the episode has both: steps where the plain rule alone would have stopped an attempt,
    # and attempts the weighted rule stopped early
    assert plain_only > 0 and early > 0


@pytest.mark.parametrize("levels,speed", [(1, 0.5), (2, 0.5), (2, 1.0)])
def test_level0_speed_shrinks_the_motor_box_only(levels, speed):
    """The lowest level's actions, its deterministic ones and its exploration alike, stay inside
    [-speed, speed]; the subgoal box above it is the env's."""
    from hacray.algo.rollout import _explore
    from hacray.config import AgentConfig
    config = load_config(None, ("env.id=PointMass-v0", f"agent.levels={levels}",
                                f"agent.horizons={[5, 10][:levels] if levels > 1 else [50]}",
                                f"agent.level0_speed={speed}"))
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    motor = blueprint.spaces[0]
    np.testing.assert_array_equal(motor.act_high, np.full(env.spec.action_dim, speed, np.float32))
    np.testing.assert_array_equal(motor.act_low, -motor.act_high)
    np.testing.assert_array_equal(motor.unscale_action(np.ones((1, env.spec.action_dim)))[0],
                                  motor.act_high)   # a saturated actor moves at `speed`
    rng = np.random.default_rng(0)
    for eps in (1.0, 0.0):   # random actions, then noise around the box's corner
        actions = [_explore(motor.act_high, motor, AgentConfig(random_eps=eps, noise_std=3.0),
                            rng) for _ in range(100)]
        assert np.abs(actions).max() <= speed
    if levels > 1:
        np.testing.assert_array_equal(blueprint.spaces[1].act_high, env.spec.subgoal_high)


@pytest.mark.parametrize("indices,own,direct,env_action", [
    ([1], [0.3], [-0.7], [0.3, -0.7]),     # the top level sets y, level 0 x
    ([0], [0.3], [-0.7], [-0.7, 0.3]),     # ... or x, level 0 y
])
def test_top_action_indices_split_the_env_action(indices, own, direct, env_action):
    """agent.top_action_indices: the top level's action is its subgoal, then the env action
    values it sets; level 0 sets the rest of the env action, in order."""
    config = load_config(None, ("env.id=PointMass-v0", f"agent.top_action_indices={indices}"))
    motor, top = Blueprint.of(config, make_env(config.env).spec).spaces
    assert (motor.act_dim, top.act_dim, top.subgoal_dim, top.direct_dim) == (1, 3, 2, 1)
    np.testing.assert_array_equal(top.act_low, [-1, -1, -1])  # PointMass's subgoal box, then
    np.testing.assert_array_equal(top.act_high, [1, 1, 1])    # the env's action box
    f32 = lambda x: np.asarray(x, np.float32)
    np.testing.assert_array_equal(motor.env_action(f32(own), f32(direct)), f32(env_action))
    sub, setting = top.split(f32([0.1, 0.2, -0.7]))
    np.testing.assert_array_equal(sub, f32([0.1, 0.2]))
    np.testing.assert_array_equal(setting, f32([-0.7]))
    np.testing.assert_array_equal(top.subgoal(f32([0.1, 0.2, -0.7]), f32([0, 0])), sub)


class RecordsActions:
    """The env, with every action it was given kept in ``actions``."""

    def __init__(self, env):
        self.env, self.spec, self.actions = env, env.spec, []

    def reset(self, seed):
        return self.env.reset(seed)

    def step(self, action):
        self.actions.append(np.array(action))
        return self.env.step(action)


@pytest.mark.parametrize("relative", [(), ("agent.subgoal_offset=[0.4, 0.4]",)])
def test_the_top_level_sets_its_env_action_values_for_each_whole_subgoal(relative):
    """Every env step under a subgoal takes the top level's value at index 1 and level 0's at
    index 0; level 0 pursues the subgoal part alone; the top level's hindsight action is where
    level 0 ended, then the value it set (executed as given)."""
    from hacray.algo.rollout import run_episode
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]", "agent.levels=2",
                                "agent.horizons=[5,6]", "agent.top_action_indices=[1]",
                                "agent.random_eps=0.3", *relative))
    env = RecordsActions(make_env(config.env))
    blueprint = Blueprint.of(config, env.spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    episode = run_episode(env, policy, config.agent, 0, np.random.default_rng(0), True)
    top, bottom = episode.segments[1][0], episode.segments[0]
    assert top.actions.shape[1] == top.hindsight_actions.shape[1] == 3
    steps = np.array(env.actions)
    assert len(steps) == episode.stats.env_steps and len(bottom) == len(top.actions) > 1
    first = 0
    for t, seg in enumerate(bottom):
        assert seg.actions.shape[1] == 1
        taken = steps[first:first + len(seg.actions)]
        first += len(seg.actions)
        np.testing.assert_array_equal(taken[:, 0], seg.actions[:, 0])
        np.testing.assert_array_equal(taken[:, 1], np.full(len(taken), top.actions[t, 2]))
        if not relative:
            np.testing.assert_array_equal(seg.goal, top.actions[t, :2])
            np.testing.assert_array_equal(top.hindsight_actions[t, :2], seg.achieved[-1])
        np.testing.assert_array_equal(top.hindsight_actions[t, 2], top.actions[t, 2])
    assert first == len(steps)
    assert len(set(top.actions[:, 2].tolist())) > 1  # it set different values


def test_a_held_top_level_keeps_the_env_action_values_it_set():
    """Holding at the goal, the top level's action keeps the values it set before (a grasp
    goes on holding), with a subgoal at where level 0 stands."""
    from hacray.algo.rollout import _Recorder, _stay
    config = load_config(None, ("env.id=PointMass-v0", "agent.top_action_indices=[1]"))
    motor, top = Blueprint.of(config, make_env(config.env).spec).spaces
    obs = np.float32([0.2, -0.4])
    rec = _Recorder(segments=[[], []], obs=obs, env_achieved=obs)
    np.testing.assert_array_equal(_stay(top, motor, rec), np.float32([0.2, -0.4, 0.0]))  # nothing set yet
    rec.direct = np.float32([-0.9])
    np.testing.assert_array_equal(_stay(top, motor, rec), np.float32([0.2, -0.4, -0.9]))


@pytest.mark.parametrize("overrides,message", [
    (("agent.levels=1", "agent.horizons=[30]", "agent.top_action_indices=[1]"),
     "agent.top_action_indices needs agent.levels >= 2"),
    (("agent.top_action_indices=[1, 1]",), "agent.top_action_indices must be distinct indices"),
    (("agent.top_action_indices=[-1]",), "agent.top_action_indices must be distinct indices"),
])
def test_top_action_indices_that_make_no_sense_are_refused(overrides, message):
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        load_config(None, ("env.id=PointMass-v0", *overrides))


@pytest.mark.parametrize("indices", ["[2]", "[0, 1]"])
def test_top_action_indices_outside_the_env_or_leaving_level_0_nothing_are_refused(indices):
    from hacray.config import ConfigError
    config = load_config(None, ("env.id=PointMass-v0", f"agent.top_action_indices={indices}"))
    with pytest.raises(ConfigError, match=r"must be indices of PointMass-v0's actions \(0-1\), "
                       "leaving level 0 at least one to set"):
        Blueprint.of(config, make_env(config.env).spec)


@pytest.mark.parametrize("action,start,subgoal", [
    ([0.1, 0.2], [0.0, 0.0], [0.1, 0.2]),      # within reach: as proposed
    ([0.9, -0.9], [0.0, 0.0], [0.3, -0.3]),    # far: clipped towards it, per coordinate
    ([0.9, 0.5], [0.5, 0.4], [0.8, 0.5]),      # clipped in x only
    ([-1.0, -1.0], [0.9, 0.9], [0.6, 0.6]),
])
def test_subgoal_reach_clips_an_absolute_subgoal_to_within_reach(action, start, subgoal):
    config = load_config(None, ("env.id=PointMass-v0", "agent.subgoal_reach=[0.3, 0.3]"))
    top = Blueprint.of(config, make_env(config.env).spec).spaces[1]
    f32 = lambda x: np.asarray(x, np.float32)
    assert not top.relative and np.array_equal(top.act_low, [-1, -1])  # absolute proposals
    np.testing.assert_allclose(top.subgoal(f32(action), f32(start)), subgoal, atol=1e-6)
    # its hindsight action is the absolute state reached
    np.testing.assert_array_equal(top.hindsight_action(f32([0.2, 0.1]), f32(start)),
                                  f32([0.2, 0.1]))


def test_a_level_within_reach_gives_the_clipped_subgoal_and_keeps_its_proposal():
    episode, config = play(("agent.levels=2", "agent.horizons=[5,6]",
                            "agent.subgoal_reach=[0.1, 0.1]", "agent.random_eps=0.5"))
    top, bottom = episode.segments[1][0], episode.segments[0]
    clipped = 0
    for t, seg in enumerate(bottom):
        start = seg.achieved[0]
        np.testing.assert_allclose(seg.goal, np.clip(top.actions[t], start - 0.1, start + 0.1),
                                   atol=1e-6)
        np.testing.assert_array_equal(top.hindsight_actions[t], seg.achieved[-1])
        clipped += not np.allclose(seg.goal, top.actions[t])
    assert clipped > 0  # some proposals lay out of reach


@pytest.mark.parametrize("overrides,message", [
    (("agent.subgoal_reach=[0.3, 0]",), "agent.subgoal_reach entries must be > 0"),
    (("agent.subgoal_reach=[0.3, 0.3]", "agent.subgoal_offset=[0.3, 0.3]"),
     "agent.subgoal_reach and agent.subgoal_offset exclude each other"),
])
def test_a_subgoal_reach_that_makes_no_sense_is_refused(overrides, message):
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        load_config(None, ("env.id=PointMass-v0", *overrides))


def test_a_subgoal_reach_of_the_wrong_length_is_refused():
    from hacray.config import ConfigError
    config = load_config(None, ("env.id=PointMass-v0", "agent.subgoal_reach=[0.3]"))
    with pytest.raises(ConfigError, match=r"agent.subgoal_reach needs one distance per subgoal "
                       r"coordinate \(2\), got 1"):
        Blueprint.of(config, make_env(config.env).spec)


class CountsGraspedStarts:
    """PointMass, with a spec that asks for grasped starts and a count of them."""

    def __init__(self, env, share):
        from dataclasses import replace
        self.env, self.spec, self.grasped = env, replace(env.spec, grasp_start=share), 0

    def reset(self, seed):
        return self.env.reset(seed)

    def start_grasped(self):
        self.grasped += 1
        obs, achieved, goal = self.env.reset(0)
        return obs, achieved, goal

    def step(self, action):
        return self.env.step(action)


@pytest.mark.parametrize("share,explore,grasped", [
    (1.0, True, 20),   # every training episode starts grasped
    (1.0, False, 0),   # evaluation never does
    (0.5, True, None),  # some of them: checked against the rng's own draws below
    (0.0, True, 0),
])
def test_grasp_start_gives_that_share_of_training_episodes_a_grasped_start(share, explore,
                                                                            grasped):
    from hacray.algo.rollout import run_episode
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]"))
    env = CountsGraspedStarts(make_env(config.env), share)
    blueprint = Blueprint.of(config, env.spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    rng = np.random.default_rng(3)
    for seed in range(20):
        run_episode(env, policy, config.agent, seed, rng, explore)
    if grasped is None:
        assert 3 <= env.grasped <= 17
    else:
        assert env.grasped == grasped


def test_no_grasp_start_leaves_the_episode_as_it_was():
    """grasp_start 0 draws nothing: the same episode, draw for draw, as an env without it."""
    from hacray.algo.rollout import run_episode
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]"))
    blueprint = Blueprint.of(config, make_env(config.env).spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    plain = run_episode(make_env(config.env), policy, config.agent, 5, np.random.default_rng(1), True)
    counted = run_episode(CountsGraspedStarts(make_env(config.env), 0.0), policy, config.agent, 5,
                          np.random.default_rng(1), True)
    np.testing.assert_array_equal(plain.segments[0][0].actions, counted.segments[0][0].actions)
    assert repr(plain.stats) == repr(counted.stats)  # repr: NaN equals NaN
