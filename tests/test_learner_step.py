"""The many-updates learner step (``Learner.update_many``): one packed transfer, guards read once
per call, and exactly the state and metrics of ``update`` called once per batch, non-finite
batches included (unit tier, hand-built tiny learners on the CPU)."""
import numpy as np
import pytest
import torch

from hacray.algo import batches
from hacray.algo import level as level_mod
from hacray.algo.learner import Learner
from hacray.types import Transitions
from tests.test_learner import OBS_DIM, flat_state, make_learner, random_batches


def tiny(level_value: float, n: int = 2) -> Transitions:
    """A batch of n rows whose every value tells its level and field (field index in 0.1s)."""
    def col(field: int, *shape: int) -> np.ndarray:
        return np.full((n, *shape), level_value + field / 10, np.float32)
    return Transitions(obs=col(0, 3), goal=col(1, 2), action=col(2, 1), reward=col(3),
                       discount=col(4), next_obs=col(5, 3))


def test_pack_lays_out_level_by_level_then_field_by_field_then_update_by_update():
    updates = [(tiny(1.0), tiny(2.0)), (tiny(11.0), tiny(12.0))]
    flat, layout = batches.pack(updates)
    assert flat.dtype == np.float32 and layout.updates == 2
    assert [(c.level, c.name, c.offset, c.shape) for c in layout.columns[:3]] == [
        (0, "obs", 0, (2, 2, 3)), (0, "goal", 12, (2, 2, 2)), (0, "action", 20, (2, 2, 1))]
    assert layout.size == flat.size == 2 * 2 * 2 * (3 + 2 + 1 + 1 + 1 + 3)  # levels, updates, rows
    # level 0's obs: update 0's two rows (1.0), then update 1's (11.0)
    assert flat[:12].tolist() == [1.0] * 6 + [11.0] * 6
    levels = batches.unpack(flat, layout)
    for j, update in enumerate(updates):
        for i, transitions in enumerate(update):
            for name, column in zip(Transitions._fields, transitions):
                assert np.array_equal(levels[i][name][j], column)


def test_pack_writes_into_a_given_buffer_and_refuses_mixed_shapes():
    updates = [(tiny(1.0),), (tiny(2.0),)]
    buffer = np.zeros(1000, np.float32)
    flat, layout = batches.pack(updates, out=buffer)
    assert np.shares_memory(flat, buffer) and flat.size == layout.size
    with pytest.raises(ValueError, match="same shapes"):
        batches.pack([(tiny(1.0),), (tiny(2.0, n=3),)])
    with pytest.raises(ValueError, match="no batches"):
        batches.pack([])


def poisoned(data, update: int, level: int, field: str = "reward"):
    """``data`` with one non-finite value in ``level``'s ``field`` at ``update``."""
    out = list(data)
    column = getattr(out[update][level], field).copy()
    column[0] = np.nan
    levels = list(out[update])
    levels[level] = Transitions(**{**levels[level]._asdict(), field: column})
    out[update] = tuple(levels)
    return out


def run_both(levels: int, threads: int, data, chunk: int, deferred=True, every=None):
    """Learner A: ``update`` per batch; learner B: ``update_many`` of ``chunk`` batches."""
    one, many = make_learner(levels, 1, every), make_learner(levels, threads, every)
    for start in range(0, len(data), chunk):
        for batches_ in data[start:start + chunk]:
            a = {k: float(v) for k, v in one.update(batches_).items()}
        b = many.update_many(data[start:start + chunk], deferred=deferred)
        assert a == b, (start, set(a.items()) ^ set(b.items()))
        assert (one.updates, one.skipped_updates, one.consecutive_skips) == (
            many.updates, many.skipped_updates, many.consecutive_skips)
    return one, many


@pytest.mark.parametrize("levels,threads,chunk", [(1, 1, 4), (2, 1, 3), (2, 2, 4), (3, 0, 8)])
@pytest.mark.parametrize("deferred", [True, None])  # None: the device's default (CPU: eager)
def test_update_many_equals_update_called_once_per_batch(levels, threads, chunk, deferred):
    rng = np.random.default_rng(1)
    data = [random_batches(levels, rng) for _ in range(8)]
    one, many = run_both(levels, threads, data, chunk, deferred)
    for x, y in zip(flat_state(one), flat_state(many), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("bad", [
    [(0, 0)],                  # the very first update: no optimiser state to go back to
    [(2, 1)],                  # mid-call, one level
    [(3, 0), (3, 1)],          # the last update of a call, both levels (metrics: skip counts)
    [(1, 0), (5, 1), (6, 1)],  # in two calls
])
@pytest.mark.parametrize("field", ["reward", "obs"])
@pytest.mark.parametrize("deferred", [True, None])
def test_non_finite_batches_are_skipped_exactly_as_update_skips_them(bad, field, deferred):
    rng = np.random.default_rng(2)
    data = [random_batches(2, rng) for _ in range(8)]
    for update, level in bad:
        data = poisoned(data, update, level, field)
    one, many = run_both(2, 2, data, chunk=4, deferred=deferred)
    assert many.skipped_updates == len(bad)
    for x, y in zip(flat_state(one), flat_state(many), strict=True):
        assert torch.equal(x, y)


def test_deferred_guards_are_read_once_per_call(monkeypatch):
    """No guard is read in the middle of a call: every device read goes through ``_read``."""
    learner = make_learner(2, 1)
    rng = np.random.default_rng(3)
    reads = []
    original = Learner._read
    monkeypatch.setattr(Learner, "_read",
                        lambda self, runs: reads.append(1) or original(self, runs))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: pytest.fail("a guard read eagerly"))
    learner.update_many([random_batches(2, rng) for _ in range(4)], deferred=True)
    assert reads == [1]


def test_fused_adam_state_loads_into_a_learner_without_it_and_back(monkeypatch):
    """A checkpoint of a fused-Adam learner (CUDA's kind) goes on in a plain one (CPU's) and
    the other way round, each keeping its own kind."""
    rng = np.random.default_rng(4)
    data = [random_batches(2, rng) for _ in range(4)]
    monkeypatch.setattr(level_mod, "use_fused_adam", lambda device: True)
    fused = make_learner(2, 1)
    fused.update_many(data)
    monkeypatch.setattr(level_mod, "use_fused_adam", lambda device: False)
    plain = make_learner(2, 1)
    plain.load_state_dict(fused.state_dict())
    plain.update_many(data)
    assert plain.levels[0].critic_opt.param_groups[0]["fused"] is None
    monkeypatch.setattr(level_mod, "use_fused_adam", lambda device: True)
    again = make_learner(2, 1)
    again.load_state_dict(plain.state_dict())
    again.update_many(data)
    assert again.levels[0].critic_opt.param_groups[0]["fused"] is True
    assert again.updates == 12 and all(torch.isfinite(t).all() for t in flat_state(again))


def test_restore_goes_back_when_only_the_critics_optimiser_had_stepped():
    """A first update whose critic stepped and whose actor did not: a later deferred call
    that fails must restore the critic's Adam state and forget the actor's new one."""
    learner = make_learner(1, 1)
    level = learner.levels[0]
    batch = {k: torch.as_tensor(v) for k, v in
             random_batches(1, np.random.default_rng(5))[0]._asdict().items()}
    loss = level.critic(batch["obs"][:, :OBS_DIM], batch["goal"], batch["action"]).pow(2).mean()
    level_mod.guarded_step(level.critic_opt, loss, level.critic, deferred=False)
    assert level.critic_opt.state and not level.actor_opt.state
    before = [t.clone() for t in flat_state(learner)]
    level.snapshot()
    learner.update_many([random_batches(1, np.random.default_rng(6))], deferred=False)
    assert level.actor_opt.state
    level.restore()
    assert not level.actor_opt.state
    for x, y in zip(before, flat_state(learner), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("every", [[1, 2], [2, 1], [3, 2]])
@pytest.mark.parametrize("bad", [(1, 6), (8,)])  # level 1's non-finite updates (1-based)
@pytest.mark.parametrize("deferred", [True, None])
def test_spaced_out_levels_step_the_same_in_one_call_or_many(every, bad, deferred):
    """level_update_every with calls that end on updates a level sits out (chunk 3), and a
    non-finite batch on an update that level sits out (not a skip), on one it takes at the end
    of a call, and on one it takes mid-call before sitting the call's last update out."""
    rng = np.random.default_rng(5)
    data = [random_batches(2, rng) for _ in range(9)]
    for update in bad:
        data = poisoned(data, update - 1, 1)
    one, many = run_both(2, 2, data, chunk=3, deferred=deferred, every=every)
    assert many.skipped_updates == sum(update % every[1] == 0 for update in bad)
    for x, y in zip(flat_state(one), flat_state(many), strict=True):
        assert torch.equal(x, y)
