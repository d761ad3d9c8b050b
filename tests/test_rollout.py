"""One hierarchical episode on the tiny env: the segments fit together (component tier)."""
import numpy as np
import pytest

from hacray.config import load_config
from hacray.envs import make_env
from hacray.runners.common import Blueprint


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
