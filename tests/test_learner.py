"""The learner's update: levels side by side in threads change nothing, and the actor's step
asks the critic for no weight gradients (unit tier, hand-built tiny learners)."""
from typing import Optional

import numpy as np
import pytest
import torch

from hacray.algo.hierarchy import LevelSpace
from hacray.algo.learner import Learner, level_threads
from hacray.algo.level import learn, preact_penalty, preact_target
from hacray.algo.normalizer import stats_of
from hacray.config import LearnerConfig
from hacray.types import Transitions

OBS_DIM = 5


def space(index: int, goal_dim: int, act_dim: int, q_low: float) -> LevelSpace:
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    return LevelSpace(index=index, horizon=5, goal_dim=goal_dim, act_dim=act_dim, act_low=low,
                      act_high=high, threshold=0.1, q_low=q_low, goal_indices=None)


SPACES = [space(0, 3, 2, -5.0), space(1, 4, 3, -50.0), space(2, 2, 4, -50.0)]


def make_learner(levels: int, threads: int, every: Optional[list[int]] = None,
                 subgoal_l2: float = 0.0, subgoal_preact_l2: float = 0.0,
                 top_hidden: Optional[list[int]] = None, layer_norm: bool = False,
                 twin_critics: bool = False) -> Learner:
    config = LearnerConfig(hidden=[32, 32], batch_size=16, device="cpu", target_update_every=2,
                           level_threads=threads, level_update_every=every, subgoal_l2=subgoal_l2,
                           subgoal_preact_l2=subgoal_preact_l2, top_hidden=top_hidden,
                           layer_norm=layer_norm, twin_critics=twin_critics)
    return Learner(SPACES[:levels], OBS_DIM, config, seed=3)


def random_batches(levels: int, rng: np.random.Generator) -> tuple[Transitions, ...]:
    n = 16
    return tuple(Transitions(
        obs=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        goal=rng.standard_normal((n, s.goal_dim), dtype=np.float32),
        action=rng.uniform(-1, 1, (n, s.act_dim)).astype(np.float32),
        reward=-rng.integers(0, 2, n).astype(np.float32),
        discount=np.full(n, 0.98, np.float32),
        next_obs=rng.standard_normal((n, OBS_DIM), dtype=np.float32)) for s in SPACES[:levels])


def flat_state(learner: Learner) -> list[torch.Tensor]:
    """Every tensor of the learner's checkpoint (networks, targets, optimiser moments)."""
    out = []

    def walk(tree):
        if isinstance(tree, dict):
            for key in sorted(tree, key=str):
                walk(tree[key])
        elif isinstance(tree, (list, tuple)):
            for item in tree:
                walk(item)
        elif isinstance(tree, torch.Tensor):
            out.append(tree)
    walk(learner.state_dict())
    return out


@pytest.mark.parametrize("levels,threads", [(2, 2), (3, 2), (3, 3), (3, 0)])
def test_levels_in_threads_train_exactly_as_one_after_another(levels, threads):
    rng = np.random.default_rng(0)
    data = [random_batches(levels, rng) for _ in range(6)]
    serial, parallel = make_learner(levels, 1), make_learner(levels, threads)
    assert serial._pool is None
    assert parallel._pool is not None or level_threads(parallel.config, levels) == 1
    for batches in data:
        a, b = serial.update(batches), parallel.update(batches)
        assert a.keys() == b.keys()
        assert all(float(a[k]) == float(b[k]) for k in a)
    for x, y in zip(flat_state(serial), flat_state(parallel), strict=True):
        assert torch.equal(x, y)


def level_state(learner: Learner, i: int) -> list[torch.Tensor]:
    """Level ``i``'s networks, targets and optimiser moments, as a flat list of tensors."""
    lv = learner.levels[i]
    nets = [t for net in (lv.actor, lv.critic, lv.actor_target, lv.critic_target)
            for t in net.state_dict().values()]
    moments = [t for opt in (lv.actor_opt, lv.critic_opt) for state in opt.state.values()
               for t in state.values() if isinstance(t, torch.Tensor)]
    return nets + moments


def test_a_spaced_out_level_trains_exactly_on_its_own_updates_and_reports_its_last_step():
    """level_update_every [1, 2]: level 1 steps on updates 2, 4, 6 only (targets averaged on
    every 2nd of its own steps), so it ends as a learner that saw only those batches; on the
    updates it sits out it reports the metrics of its last step."""
    rng = np.random.default_rng(4)
    data = [random_batches(2, rng) for _ in range(6)]
    spaced, every_time = make_learner(2, 1, every=[1, 2]), make_learner(2, 1)
    reported = [spaced.update(batches) for batches in data]
    own = [every_time.update(batches) for batches in data[1::2]]
    for x, y in zip(level_state(spaced, 1), level_state(every_time, 1), strict=True):
        assert torch.equal(x, y)
    assert not all(torch.equal(x, y) for x, y in zip(level_state(spaced, 0),
                                                       level_state(every_time, 0)))
    level1 = [{k: v for k, v in m.items() if k.startswith("level1/")} for m in reported]
    assert level1[0] == {}  # before its first step there is nothing to report
    assert level1[1] and level1[1] == level1[2]  # update 3: still update 2's
    assert level1[3] == {k: v for k, v in own[1].items() if k.startswith("level1/")}
    assert spaced.updates == 6


def train_side_by_side(plain: Learner, penalised: Learner, data: list) -> None:
    """Both learners on the same batches; a subgoal penalty leaves level 0 exactly as it was
    (level 0 keeps action_l2 alone)."""
    for batches in data:
        plain.update(batches)
        penalised.update(batches)
    for x, y in zip(level_state(plain, 0), level_state(penalised, 0), strict=True):
        assert torch.equal(x, y)


def test_subgoal_l2_pulls_only_the_subgoals_towards_the_box_centre():
    rng = np.random.default_rng(6)
    data = [random_batches(3, rng) for _ in range(30)]
    free, pulled = make_learner(3, 1), make_learner(3, 1, subgoal_l2=10.0)
    train_side_by_side(free, pulled, data)
    obs = torch.as_tensor(rng.standard_normal((64, OBS_DIM), dtype=np.float32))
    for i in (1, 2):
        goal = torch.as_tensor(rng.standard_normal((64, SPACES[i].goal_dim), dtype=np.float32))
        with torch.no_grad():
            square = [float((lr.levels[i].actor(obs, goal) ** 2).mean()) for lr in (free, pulled)]
        assert square[1] < 0.5 * square[0], (i, square)


def saturate(learner: Learner, index: int) -> None:
    """Level ``index``'s actor saturated as the stalled FetchPush top level was: its output
    layer's bias at +25 on every coordinate (tanh' ~ 0)."""
    with torch.no_grad():
        learner.levels[index].actor.net[-1].bias.fill_(25.0)


@pytest.mark.parametrize("penalty, escapes", [
    ({}, False),                              # the critic's gradient vanishes through tanh'
    ({"subgoal_l2": 1.0}, False),             # so does a penalty on the tanh's output
    ({"subgoal_preact_l2": 0.01}, True),      # one before the tanh pulls it back
])
def test_only_the_pre_tanh_penalty_pulls_a_saturated_subgoal_actor_back(penalty, escapes):
    rng = np.random.default_rng(8)
    data = [random_batches(2, rng) for _ in range(200)]
    plain, pulled = make_learner(2, 1), make_learner(2, 1, **penalty)
    for learner in (plain, pulled):
        saturate(learner, 1)
    train_side_by_side(plain, pulled, data)
    obs = torch.as_tensor(rng.standard_normal((64, OBS_DIM), dtype=np.float32))
    goal = torch.as_tensor(rng.standard_normal((64, SPACES[1].goal_dim), dtype=np.float32))
    with torch.no_grad():
        z = float(pulled.levels[1].actor.pre_tanh(obs, goal).abs().median())
    assert (z < 10.0) == escapes, z


@pytest.mark.parametrize("goal, expected", [
    ([[0.5, 2.0]], [[0.0, 0.0, 0.0]]),                      # at the box's centre
    ([[1.0, 2.5]], [[np.arctanh(0.5), np.arctanh(0.5), 0.0]]),  # half way to its bound
    ([[9.0, -9.0]], [[np.arctanh(0.95), -np.arctanh(0.95), 0.0]]),  # outside: clipped
])
def test_a_goal_pull_targets_the_goal_inside_the_box_and_the_direct_values_at_zero(goal,
                                                                                  expected):
    centre, half = torch.tensor([0.5, 2.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])
    target = preact_target(torch.tensor(goal), centre, half)
    assert torch.allclose(target, torch.tensor(expected, dtype=torch.float32), atol=1e-5)


def pull(z, goal, to="centre", free=0.0):
    """preact_penalty of level 1 of a hand-built 2-level learner (box [-1, 1]^3, no direct
    values), weight 1."""
    level = make_learner(2, 1).levels[1]
    config = LearnerConfig(subgoal_preact_l2=1.0, subgoal_preact_to=to, subgoal_preact_free=free)
    return float(preact_penalty(torch.tensor(z), torch.tensor(goal), level, config))


@pytest.mark.parametrize("z, goal, to, free, expected", [
    ([[1.0, -2.0, 0.0]], [[0.5, 0.5, 0.5, 9.0]], "centre", 0.0, 5.0 / 3),  # mean z^2, as before
    ([[1.0, -2.0, 0.0]], [[0.5, 0.5, 0.5, 9.0]], "centre", 1.5, 0.25 / 3),  # only past 1.5
    ([[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 9.0]], "goal", 0.0, 0.0),  # goal at the centre
    ([[np.arctanh(0.5)] * 3], [[0.5, 0.5, 0.5, 9.0]], "goal", 0.0, 0.0),  # at the goal
    ([[0.0, 0.0, 0.0]], [[0.5, 0.5, 0.5, 9.0]], "goal", 0.0, np.arctanh(0.5) ** 2),
    ([[0.0, 0.0, 0.0]], [[0.5, 0.5, 0.5, 9.0]], "goal", 1.0, 0.0),  # within the free band
])
def test_the_pre_tanh_pull_costs_its_distance_from_its_target_beyond_the_free_band(
        z, goal, to, free, expected):
    assert pull(z, goal, to, free) == pytest.approx(expected, rel=1e-5)


def test_level_update_every_must_fit_the_levels():
    with pytest.raises(ValueError, match="one entry >= 1 per level"):
        make_learner(2, 1, every=[1])


def test_the_actors_step_computes_no_critic_weight_gradient():
    learner = make_learner(2, 1)
    computed = {i: 0 for i in range(2)}
    for i, level in enumerate(learner.levels):
        for p in level.critic.parameters():
            p.register_hook(lambda grad, i=i: computed.__setitem__(i, computed[i] + 1))
    n_params = len(list(learner.levels[0].critic.parameters()))
    learner.update(random_batches(2, np.random.default_rng(1)))
    # once each, for the critic's own loss; the actor's loss would make it twice
    assert computed == {0: n_params, 1: n_params}
    assert all(p.requires_grad for lv in learner.levels for p in lv.critic.parameters())


def constant_heads(critic: torch.nn.Module, values: list[float]) -> None:
    """Make each of the critic's networks output a constant (zero weights, the value as the
    last bias)."""
    with torch.no_grad():
        for net, value in zip([critic.net, critic.twin], values):
            for p in net.parameters():
                p.zero_()
            net[-1].bias.fill_(value)


@pytest.mark.parametrize("twin,heads,reward,expected", [
    (False, [-3.0], -1.0, -1.0 + 0.98 * -3.0),
    (True, [-1.0, -3.0], -1.0, -1.0 + 0.98 * -3.0),    # the smaller of the two
    (True, [-4.0, -2.0], -1.0, -1.0 + 0.98 * -4.0),
    (True, [-1.0, 2.0], 0.0, 0.98 * -1.0),             # a twin's overestimate does not leak
    (True, [1.0, 2.0], 0.0, 0.0),                      # both above 0: clipped to 0 as ever
    (True, [-80.0, -90.0], -1.0, -5.0),                # clipped to level 0's q_low
])
def test_twin_critics_bootstrap_from_the_smaller_target_q(twin, heads, reward, expected):
    learner = make_learner(1, 1, twin_critics=twin)
    level = learner.levels[0]
    constant_heads(level.critic_target, heads)
    batch = random_batches(1, np.random.default_rng(2))[0]
    n = len(batch.reward)
    tensors = {name: torch.from_numpy(getattr(batch, name)) for name in
               ("obs", "goal", "action", "next_obs")}
    tensors["reward"] = torch.full((n,), reward)
    tensors["discount"] = torch.full((n,), 0.98)
    norms = (torch.zeros(OBS_DIM), torch.ones(OBS_DIM), torch.zeros(SPACES[0].goal_dim),
             torch.ones(SPACES[0].goal_dim))
    _, metrics = learn(level, 0, tensors, norms, learner.config, average_targets=False,
                       deferred=False, want_metrics=True)
    assert float(metrics["level0/target_mean"]) == pytest.approx(expected, abs=1e-5)


def test_both_twin_critics_learn_their_targets_and_the_actor_climbs_the_first():
    learner = make_learner(2, 1, twin_critics=True)
    nets = [net for lv in learner.levels for net in (lv.critic.net, lv.critic.twin)]
    before = [[p.detach().clone() for p in net.parameters()] for net in nets]
    learner.update(random_batches(2, np.random.default_rng(1)))
    for net, old in zip(nets, before):  # every network of every level stepped
        assert all(not torch.equal(a, b) for a, b in zip(old, net.parameters()))
    level = learner.levels[0]
    obs, goal = torch.zeros(3, OBS_DIM), torch.zeros(3, SPACES[0].goal_dim)
    action = torch.zeros(3, SPACES[0].act_dim)
    first, second = level.critic.both(obs, goal, action)
    assert torch.equal(level.critic(obs, goal, action), first)
    assert not torch.equal(first, second)  # two networks, initialised apart


@pytest.mark.parametrize("asked,levels,expected", [(1, 3, 1), (2, 3, 2), (5, 2, 2), (4, 1, 1)])
def test_level_threads_never_exceed_the_levels(asked, levels, expected):
    assert level_threads(LearnerConfig(level_threads=asked), levels) == expected


def test_level_threads_zero_is_one_per_level_up_to_the_cpus(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert level_threads(LearnerConfig(level_threads=0), 3) == 2
    assert level_threads(LearnerConfig(level_threads=0), 1) == 1


def widths(net: torch.nn.Module) -> list[int]:
    return [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("levels,top_hidden,expected", [
    (1, None, [[32, 32]]),
    (2, None, [[32, 32], [32, 32]]),
    (2, [64, 8, 8], [[32, 32], [64, 8, 8]]),
    (3, [8], [[32, 32], [32, 32], [8]]),
    (1, [8], [[32, 32]]),  # one level is the top and the motor level: learner.hidden
])
def test_top_hidden_sizes_the_top_levels_networks_alone(levels, top_hidden, expected):
    learner = make_learner(levels, threads=1, top_hidden=top_hidden)
    for level, hidden in zip(learner.levels, expected):
        assert widths(level.actor)[:-1] == hidden and widths(level.critic)[:-1] == hidden
    learner.update(random_batches(levels, np.random.default_rng(0)))  # and it trains


@pytest.mark.parametrize("layer_norm", [False, True])
def test_layer_norm_follows_each_hidden_layer_of_every_network(layer_norm):
    learner = make_learner(levels=2, threads=1, top_hidden=[8, 8, 8], layer_norm=layer_norm)
    for level in learner.levels:
        for net in (level.actor, level.critic, level.actor_target, level.critic_target):
            norms = [m.normalized_shape[0] for m in net.modules()
                     if isinstance(m, torch.nn.LayerNorm)]
            assert norms == (widths(net)[:-1] if layer_norm else [])


@pytest.mark.parametrize("batch,top_hidden,layer_norm", [
    (1, None, False), (4, None, False), (4, [8, 8, 8], False), (1, None, True),
    (4, [8, 8, 8], True)])
def test_worker_numpy_policy_computes_the_learners_torch_actor(batch, top_hidden, layer_norm):
    """Rollout workers evaluate the exported actors in numpy, on inputs their own copies of the
    published normalisers map; after training steps and with normaliser statistics in place,
    their actions are the learner's torch actors' on the learner's normalised inputs (float32
    rounding), whatever each level's network size and with LayerNorms (trained away from their
    initial scale 1 and shift 0)."""
    from hacray.algo.rollout import Policy
    learner = make_learner(levels=2, threads=1, top_hidden=top_hidden, layer_norm=layer_norm)
    rng = np.random.default_rng(5)
    for _ in range(3):
        learner.update(random_batches(2, rng))
    learner.set_normalizer(stats_of(rng.normal(2.0, 3.0, (100, OBS_DIM))),
                           tuple(stats_of(rng.normal(-1.0, 0.5, (100, s.goal_dim)))
                                 for s in SPACES[:2]))
    policy = Policy(SPACES[:2], OBS_DIM, learner.config)
    policy.set_weights(learner.weights())
    for level, lv in enumerate(learner.levels):
        obs = rng.standard_normal((batch, OBS_DIM), dtype=np.float32)
        goal = rng.standard_normal((batch, SPACES[level].goal_dim), dtype=np.float32)
        with torch.no_grad():
            unit = lv.actor(torch.from_numpy(learner.obs_norm(obs)),
                            torch.from_numpy(lv.goal_norm(goal))).numpy()
        expected = SPACES[level].unscale_action(unit)
        np.testing.assert_allclose(policy.act(level, obs, goal), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(policy.act(level, obs[0], goal[0]), expected[0], rtol=1e-5,
                                   atol=1e-6)
