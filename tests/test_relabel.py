"""Exact HAC/HER transitions from hand-written 1-D segments (unit tier)."""
import numpy as np
import pytest

from hacray.algo.relabel import hindsight_goal_indices, segment_transitions
from hacray.goals import distance_reached
from hacray.types import Segment

GAMMA, H = float(np.float32(0.9)), 4  # as stored (float32)
REACHED = distance_reached(0.5)


def segment(achieved, goal, tested=None, missed=None, level=1):
    """Obs = achieved (1-D); actions 10+t as proposed, 20+t as actually achieved."""
    achieved = np.asarray(achieved, np.float32)[:, None]
    n = len(achieved) - 1
    return Segment(level=level, obs=achieved.copy(), achieved=achieved,
                   goal=np.asarray([goal], np.float32),
                   actions=(10 + np.arange(n, dtype=np.float32))[:, None],
                   hindsight_actions=(20 + np.arange(n, dtype=np.float32))[:, None],
                   tested=np.asarray(tested or [False] * n),
                   missed=np.asarray(missed or [False] * n))


def rows(tr):
    """Transitions as a list of (obs, goal, action, reward, discount, next_obs) tuples."""
    return [tuple(float(np.ravel(col[i])[0]) for col in tr) for i in range(len(tr))]


def transitions(seg, scheme="none", k=0, terminate=True, keep_original=True, seed=0):
    return segment_transitions(seg, reached=REACHED, gamma=GAMMA, horizon=H, scheme=scheme, k=k,
                               terminate_on_goal=terminate, rng=np.random.default_rng(seed),
                               keep_original=keep_original)


CASES = {
    # name: (segment, kwargs, expected rows (obs, goal, action, reward, discount, next_obs))
    "original goal, reached at the end, terminating": (
        segment([0, 1, 2, 3], goal=3), {},
        [(0, 3, 20, -1, GAMMA, 1), (1, 3, 21, -1, GAMMA, 2), (2, 3, 22, 0, 0, 3)]),
    "reaching the goal keeps bootstrapping when not terminating": (
        segment([0, 1, 2, 3], goal=3), {"terminate": False},
        [(0, 3, 20, -1, GAMMA, 1), (1, 3, 21, -1, GAMMA, 2), (2, 3, 22, 0, GAMMA, 3)]),
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
