"""Exact HAC/HER transitions from hand-written 1-D segments (unit tier)."""
import numpy as np
import pytest

from hacray.algo.relabel import hindsight_goal_indices, segment_transitions
from hacray.goals import distance_reached
from hacray.types import Segment

GAMMA, H = float(np.float32(0.9)), 4  # as stored (float32)
REACHED = distance_reached(0.5)


def segment(achieved, goal, tested=None, missed=None, level=1, steps=None):
    """Obs = achieved (1-D); actions 10+t as proposed, 20+t as actually achieved; ``steps``:
    env steps each action took."""
    achieved = np.asarray(achieved, np.float32)[:, None]
    n = len(achieved) - 1
    return Segment(level=level, obs=achieved.copy(), achieved=achieved,
                   goal=np.asarray([goal], np.float32),
                   actions=(10 + np.arange(n, dtype=np.float32))[:, None],
                   hindsight_actions=(20 + np.arange(n, dtype=np.float32))[:, None],
                   tested=np.asarray(tested or [False] * n),
                   missed=np.asarray(missed or [False] * n),
                   steps=None if steps is None else np.asarray(steps, np.int32))


def rows(tr):
    """Transitions as a list of (obs, goal, action, reward, discount, next_obs) tuples."""
    return [tuple(float(np.ravel(col[i])[0]) for col in tr) for i in range(len(tr))]


def transitions(seg, scheme="none", k=0, terminate=True, keep_original=True, seed=0,
                time_aware=False, test_penalty=None):
    return segment_transitions(seg, reached=REACHED, gamma=GAMMA, horizon=H, scheme=scheme, k=k,
                               terminate_on_goal=terminate, rng=np.random.default_rng(seed),
                               keep_original=keep_original, time_aware=time_aware,
                               test_penalty=test_penalty)


def f32(x):
    return float(np.float32(x))


G2, G3 = f32(GAMMA ** 2), f32(GAMMA ** 3)


CASES = {
    # name: (segment, kwargs, expected rows (obs, goal, action, reward, discount, next_obs))
    "original goal, reached at the end, terminating": (
        segment([0, 1, 2, 3], goal=3), {},
        [(0, 3, 20, -1, GAMMA, 1), (1, 3, 21, -1, GAMMA, 2), (2, 3, 22, 0, 0, 3)]),
    "reaching the goal keeps bootstrapping when not terminating": (
        segment([0, 1, 2, 3], goal=3), {"terminate": False},
        [(0, 3, 20, -1, GAMMA, 1), (1, 3, 21, -1, GAMMA, 2), (2, 3, 22, 0, GAMMA, 3)]),
    # the slide-through (2-level Push): the object enters the goal, then slides out of it
    "terminating, an action that puts the object on the goal is worth 0 even if it slides on": (
        segment([0, 3, 5], goal=3), {},
        [(0, 3, 20, 0, 0, 3), (3, 3, 21, -1, GAMMA, 5)]),
    "not terminating, that action bootstraps into the step that loses the goal": (
        segment([0, 3, 5], goal=3), {"terminate": False},
        [(0, 3, 20, 0, GAMMA, 3), (3, 3, 21, -1, GAMMA, 5)]),
    "goal reached on the first step (episode of length 1)": (
        segment([0, 2], goal=2), {},
        [(0, 2, 20, 0, 0, 2)]),
    "final: every action relabelled with the last achieved state": (
        segment([0, 1, 2, 3], goal=9), {"scheme": "final"},
        [(0, 9, 20, -1, GAMMA, 1), (1, 9, 21, -1, GAMMA, 2), (2, 9, 22, -1, GAMMA, 3),
         (0, 3, 20, -1, GAMMA, 1), (1, 3, 21, -1, GAMMA, 2), (2, 3, 22, 0, 0, 3)]),
    "subgoal test missed: penalty -H, no bootstrap, action as proposed": (
        segment([0, 1, 2], goal=9, tested=[True, True], missed=[True, False]), {},
        [(0, 9, 20, -1, GAMMA, 1), (1, 9, 21, -1, GAMMA, 2), (0, 9, 10, -H, 0, 1)]),
    "untested miss gets no penalty": (
        segment([0, 1, 2], goal=9, tested=[False, False], missed=[True, True]), {},
        [(0, 9, 20, -1, GAMMA, 1), (1, 9, 21, -1, GAMMA, 2)]),
    "degenerate episode: originals dropped, hindsight kept": (
        segment([3, 3], goal=3), {"scheme": "final", "keep_original": False},
        [(3, 3, 20, 0, 0, 3)]),
    "time-aware: an attempt of k env steps pays k steps' rewards, discount gamma^k": (
        segment([0, 1, 2, 3], goal=3, steps=[1, 3, 2]), {"time_aware": True},
        [(0, 3, 20, -1, GAMMA, 1), (1, 3, 21, f32(-(1 + GAMMA + GAMMA ** 2)), G3, 2),
         (2, 3, 22, -1, 0, 3)]),  # reached on its 2nd step: -1 for the first, 0 for it
    "time-aware without termination: the reaching attempt bootstraps with gamma^k": (
        segment([0, 1, 3], goal=3, steps=[2, 3]), {"time_aware": True, "terminate": False},
        [(0, 3, 20, f32(-(1 + GAMMA)), G2, 1), (1, 3, 21, f32(-(1 + GAMMA)), G3, 3)]),
    "time-aware: a missed test costs the penalty given, not -H": (
        segment([0, 1, 2], goal=9, tested=[True, False], missed=[True, False], steps=[4, 1]),
        {"time_aware": True, "test_penalty": -7.5},
        [(0, 9, 20, f32(-(1 + GAMMA + GAMMA ** 2 + GAMMA ** 3)), f32(GAMMA ** 4), 1),
         (1, 9, 21, -1, GAMMA, 2), (0, 9, 10, -7.5, 0, 1)]),
    "time-aware relabelled goals are paid by the attempts' lengths too": (
        segment([0, 1, 2], goal=9, steps=[2, 1]), {"time_aware": True, "scheme": "final"},
        [(0, 9, 20, f32(-(1 + GAMMA)), G2, 1), (1, 9, 21, -1, GAMMA, 2),
         (0, 2, 20, f32(-(1 + GAMMA)), G2, 1), (1, 2, 21, 0, 0, 2)]),
    "steps are ignored unless time-aware (HAC: -1 per attempt)": (
        segment([0, 1, 2], goal=9, tested=[True, False], missed=[True, False], steps=[4, 1]),
        {}, [(0, 9, 20, -1, GAMMA, 1), (1, 9, 21, -1, GAMMA, 2), (0, 9, 10, -H, 0, 1)]),
    "none: originals only": (
        segment([0, 1, 2], goal=9), {"scheme": "none", "k": 4},
        [(0, 9, 20, -1, GAMMA, 1), (1, 9, 21, -1, GAMMA, 2)]),
}


@pytest.mark.parametrize("name", CASES)
def test_transitions_exact(name):
    seg, kwargs, expected = CASES[name]
    assert rows(transitions(seg, **kwargs)) == expected


def test_everything_is_float32():
    tr = transitions(segment([0, 1, 2, 3], goal=3), scheme="future", k=4)
    assert all(col.dtype == np.float32 for col in tr)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_future_is_strictly_after_t_and_includes_the_last_state(n):
    t, j = hindsight_goal_indices(n, "future", 4000, np.random.default_rng(0))
    assert np.all(j >= t + 1) and np.all(j <= n)
    for step in range(n):  # every index t+1..n inclusive is drawn
        assert set(j[t == step]) == set(range(step + 1, n + 1))


def test_hac_scheme_always_includes_the_final_state_plus_k_minus_1_future():
    t, j = hindsight_goal_indices(4, "hac", 3, np.random.default_rng(1))
    assert len(t) == 4 * 3
    for step in range(4):
        drawn = j[t == step]
        assert 4 in drawn and len(drawn) == 3 and drawn.min() >= step + 1


def test_episode_scheme_draws_from_the_whole_segment():
    t, j = hindsight_goal_indices(3, "episode", 2000, np.random.default_rng(2))
    assert set(j) == {1, 2, 3}


def test_future_relabelled_rewards_are_recomputed():
    seg = segment([0, 1, 2, 3], goal=9)
    tr = transitions(seg, scheme="future", k=50)
    relabelled = rows(tr)[3:]
    assert len(relabelled) == 3 * 50
    for obs, goal, action, reward, discount, next_obs in relabelled:
        assert goal > obs  # achieved strictly after the action's start
        assert reward == (0.0 if goal == next_obs else -1.0)
        assert discount == (0.0 if reward == 0.0 else GAMMA)


def test_same_rng_same_transitions():
    seg = segment([0, 1, 2, 3, 4], goal=9)
    a, b = transitions(seg, "future", 4, seed=7), transitions(seg, "future", 4, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_time_aware_top_levels_test_penalty_is_failing_for_its_whole_budget():
    """blueprint.top_test_penalty: the discounted return of the product of the horizons in env
    steps at -1 each (HAC's -H, counted in env steps), and the replay gives it to the top only."""
    from hacray.blueprint import Blueprint, top_test_penalty
    from hacray.config import load_config
    from hacray.envs import make_env
    assert top_test_penalty([5, 6], 0.5) == pytest.approx(-sum(0.5 ** i for i in range(30)))
    assert top_test_penalty([1], 0.9) == -1.0
    config = load_config(None, ("env.id=PointMass-v0", "agent.top_until_episode_end=true",
                                "agent.top_time_aware=true"))
    levels = Blueprint.of(config, make_env(config.env).spec).replay().levels
    assert [(lv.time_aware, lv.test_penalty) for lv in levels] == [
        (False, None), (True, top_test_penalty(config.agent.horizons, config.learner.gamma))]


@pytest.mark.parametrize("achieved, goal, scale, reached", [
    # (the threshold is 0.5) the plain distance, then each coordinate's difference weighted
    ([0.0, 0.0], [0.3, 0.0], None, True),
    ([0.0, 0.0], [0.3, 0.0], [2.0, 1.0], False),   # 0.6
    ([0.0, 0.0], [0.3, 0.0], [1.0, 100.0], True),  # the weighted coordinate agrees
    ([0.0, 0.02], [0.0, 0.05], [1.0, 10.0], True),   # 0.3: a small gap in a finger's opening
    ([0.0, 0.0], [0.0, 0.05], [1.0, 10.0], False),   # 0.5 is not below 0.5
    ([0.0, 0.0], [0.0, 0.05], None, True),           # unweighted, the fingers hardly count
])
def test_a_weighted_distance_multiplies_each_difference_first(achieved, goal, scale, reached):
    rule = distance_reached(0.5, None if scale is None else np.asarray(scale, np.float32))
    batch = np.asarray([achieved, achieved], np.float32), np.asarray([goal, goal], np.float32)
    assert rule(*batch).tolist() == [reached, reached]


def test_a_weighted_rule_sets_the_transitions_rewards():
    """The same segment, goal 3.3: reached at 3 by the plain rule (0.3), missed at weight 2 (0.6),
    so its last transition pays -1 and bootstraps."""
    seg = segment([0, 1, 2, 3], goal=3.3)
    weighted = segment_transitions(seg, reached=distance_reached(0.5, np.float32([2.0])),
                                   gamma=GAMMA, horizon=H, scheme="none", k=0,
                                   terminate_on_goal=True, rng=np.random.default_rng(0))
    assert rows(transitions(seg))[-1] == (2, f32(3.3), 22, 0, 0, 3)
    assert rows(weighted)[-1] == (2, f32(3.3), 22, -1, GAMMA, 3)
