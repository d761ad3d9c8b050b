"""Learner target-averaging period and ``diag/*`` metrics, on a hand-built tiny learner (unit tier)."""
import numpy as np
import pytest
import torch

from hacray.algo import normalizer
from hacray.algo.hierarchy import LevelSpace
from hacray.algo.learner import Learner
from hacray.config import LearnerConfig
from hacray.types import Transitions

OBS_DIM = 2


def space(index: int, q_low: float) -> LevelSpace:
    """A level with 1-d goals and actions in [-1, 1]."""
    box = np.ones(1, np.float32)
    return LevelSpace(index=index, horizon=4, goal_dim=1, act_dim=1, act_low=-box, act_high=box,
                      threshold=0.1, q_low=q_low, goal_indices=None)


def make_learner(**overrides) -> Learner:
    """Two levels: level 0 bounded by a horizon of 4, level 1 by -1/(1 - 0.98) = -50."""
    config = LearnerConfig(hidden=[8], batch_size=4, device="cpu", **overrides)
    return Learner([space(0, -4.0), space(1, -50.0)], OBS_DIM, config, seed=0)


def batch(obs0=(0.0, 1.0, 2.0, 3.0)) -> Transitions:
    """Four transitions whose first observation coordinate is ``obs0``."""
    n = len(obs0)
    obs = np.zeros((n, OBS_DIM), np.float32)
    obs[:, 0] = obs0
    return Transitions(obs=obs, goal=np.full((n, 1), 0.5, np.float32),
                       action=np.full((n, 1), 0.25, np.float32), reward=-np.ones(n, np.float32),
                       discount=np.full(n, 0.98, np.float32), next_obs=obs[::-1].copy())


def target_params(learner: Learner) -> list[torch.nn.Parameter]:
    return [p for lv in learner.levels
            for net in (lv.actor_target, lv.critic_target) for p in net.parameters()]


def targets(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in target_params(learner)]


def onlines(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for lv in learner.levels
            for net in (lv.actor, lv.critic) for p in net.parameters()]


def move_targets_away(learner: Learner) -> None:
    """Targets far from the online nets, so averaging and not averaging differ by ~1e-2."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in target_params(learner):
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def assert_averaged(before, online, after, polyak: float) -> None:
    for old, net, new in zip(before, online, after):
        expected = polyak * old.double() + (1 - polyak) * net.double()
        torch.testing.assert_close(new.double(), expected, rtol=0, atol=1e-6)


# -- target_update_every --------------------------------------------------------------------
@pytest.mark.parametrize("every", [1, 3])
def test_targets_are_averaged_on_every_kth_update_only(every):
    learner = make_learner(target_update_every=every, polyak=0.9)
    move_targets_away(learner)
    for n in range(1, 7):  # updates are counted from 1: k = 3 averages on updates 3 and 6
        before = targets(learner)
        learner.update((batch(), batch()))
        if n % every == 0:
            assert_averaged(before, onlines(learner), targets(learner), 0.9)
        else:
            assert all(torch.equal(a, b) for a, b in zip(before, targets(learner))), n


def test_the_averaging_period_continues_across_a_resume():
    learner = make_learner(target_update_every=3, polyak=0.9)
    move_targets_away(learner)
    for _ in range(2):
        learner.update((batch(), batch()))
    resumed = make_learner(target_update_every=3, polyak=0.9)
    resumed.load_state_dict(learner.state_dict())
    before = targets(resumed)
    resumed.update((batch(), batch()))  # update 3 of the run, the first of this process
    assert_averaged(before, onlines(resumed), targets(resumed), 0.9)


# -- Q range against the clip bounds ----------------------------------------------------------
def set_critic(learner: Learner, level: int, slope: float, bias: float) -> None:
    """Q = slope * relu(normalised obs[0]) + bias (the normaliser is the identity here)."""
    first, last = learner.levels[level].critic.net[0], learner.levels[level].critic.net[-1]
    with torch.no_grad():
        for p in (first.weight, first.bias, last.weight, last.bias):
            p.zero_()
        first.weight[0, 0] = 1.0
        last.weight[0, 0] = slope
        last.bias[0] = bias


def test_q_range_diagnostics_are_exact_on_a_hand_set_critic():
    learner = make_learner()
    set_critic(learner, 0, 1.0, -4.5)  # Q = [-4.5, -4, 0, 0.5] against [-4, 0]
    set_critic(learner, 1, 0.0, -60.0)  # Q = -60 everywhere, below the bound -50
    metrics = learner.update((batch((0.0, 0.5, 4.5, 5.0)), batch()))
    got = {k: float(v) for k, v in metrics.items()}
    assert got["diag/level0_q_lower_bound"] == -4.0
    assert got["diag/level0_q_max"] == 0.5
    assert got["diag/level0_q_below_lower_frac"] == 0.25  # -4 itself is inside
    assert got["diag/level0_q_above_zero_frac"] == 0.25  # 0 itself is inside the range
    assert got["level0/q_min"] == -4.5 and got["level0/q_mean"] == -2.0  # unchanged keys
    assert got["diag/level1_q_lower_bound"] == -50.0
    assert got["diag/level1_q_max"] == -60.0
    assert got["diag/level1_q_below_lower_frac"] == 1.0
    assert got["diag/level1_q_above_zero_frac"] == 0.0


# -- normaliser drift ---------------------------------------------------------------------------
OLD = normalizer.stats_of(np.array([[0.0, 0.0], [2.0, 4.0]]))  # mean (1, 2), std (1, 2)
MID = normalizer.stats_of(np.array([[1.0, 1.0], [3.0, 5.0]]))
NEW = normalizer.stats_of(np.array([[2.0, 2.0], [4.0, 4.0]]))  # mean (3, 3), std (1, 1)
GOAL_OLD = normalizer.stats_of(np.array([[0.0], [2.0]]))  # mean 1, std 1
GOAL_NEW = normalizer.stats_of(np.array([[2.0], [4.0]]))  # mean 3, std 1
DRIFT_KEYS = ("diag/obs_norm_mean_drift", "diag/obs_norm_std_drift",
              "diag/level0_goal_norm_mean_drift", "diag/level0_goal_norm_std_drift",
              "diag/level1_goal_norm_mean_drift", "diag/level1_goal_norm_std_drift")


def test_drift_is_in_units_of_the_old_std_and_zero_against_empty_statistics():
    # mean: (|3 - 1| / 1 + |3 - 2| / 2) / 2; std: (|1/1 - 1| + |1/2 - 1|) / 2
    assert normalizer.drift(OLD, NEW, eps=0.01) == (1.25, 0.25)
    assert normalizer.drift(NEW, NEW, eps=0.01) == (0.0, 0.0)
    assert normalizer.drift(normalizer.empty_stats(2), NEW, eps=0.01) == (0.0, 0.0)


@pytest.mark.parametrize("installs", [[NEW], [MID, NEW]],
                         ids=["once per burst (local)", "once per update (distributed)"])
def test_learner_reports_drift_between_the_last_two_publications(installs):
    learner = make_learner()
    metrics = learner.update((batch(), batch()))
    assert {k: metrics[k] for k in DRIFT_KEYS} == dict.fromkeys(DRIFT_KEYS, 0.0)
    learner.weights()  # publishes the empty statistics
    learner.set_normalizer(OLD, (GOAL_OLD, GOAL_OLD))
    learner.weights()  # the first real statistics replace the identity: not drift
    metrics = learner.update((batch(), batch()))
    assert {k: metrics[k] for k in DRIFT_KEYS} == dict.fromkeys(DRIFT_KEYS, 0.0)
    for stats in installs:  # what happens in between publications does not matter
        learner.set_normalizer(stats, (GOAL_NEW, GOAL_OLD))
        learner.update((batch(), batch()))
    learner.weights()
    metrics = learner.update((batch(), batch()))
    assert [metrics[k] for k in DRIFT_KEYS] == [1.25, 0.25, 2.0, 0.0, 0.0, 0.0]
    learner.weights()  # nothing moved since
    assert learner.update((batch(), batch()))["diag/obs_norm_mean_drift"] == 0.0


def test_the_first_publication_after_a_resume_reports_no_drift():
    learner = make_learner()
    learner.set_normalizer(NEW, (GOAL_NEW, GOAL_NEW))
    learner.update((batch(), batch()))
    resumed = make_learner()
    resumed.load_state_dict(learner.state_dict())
    resumed.weights()
    metrics = resumed.update((batch(), batch()))
    assert {k: metrics[k] for k in DRIFT_KEYS} == dict.fromkeys(DRIFT_KEYS, 0.0)
