"""Mergeable normaliser statistics (unit tier)."""
import numpy as np

from hacray.algo import normalizer
from hacray.algo.normalizer import Normalizer


def test_merging_shards_equals_one_pass_over_all_data():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 5)) * np.array([1, 10, 100, 1e3, 1e-3])
    shards = [normalizer.stats_of(part) for part in np.array_split(data, 7)]
    merged, whole = normalizer.merge(*shards), normalizer.stats_of(data)
    assert merged.count == whole.count == 1000
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)
    np.testing.assert_allclose(merged.sumsq, whole.sumsq, rtol=1e-12)


def test_merge_order_and_empty_shards_do_not_matter():
    rng = np.random.default_rng(1)
    a = normalizer.stats_of(rng.normal(size=(10, 3)))
    b = normalizer.stats_of(rng.normal(size=(4, 3)))
    ab, ba = normalizer.merge(a, b, normalizer.empty_stats(3)), normalizer.merge(b, a)
    np.testing.assert_allclose(ab.sum, ba.sum)
    assert ab.count == ba.count == 14


def test_normaliser_outputs_float32_standardised_and_clipped():
    rng = np.random.default_rng(2)
    data = rng.normal(5.0, 3.0, size=(5000, 2)).astype(np.float32)
    norm = Normalizer(2, eps=0.01, norm_clip=5.0)
    norm.update(data)
    out = norm(data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    assert np.all(norm(np.full((1, 2), 1e6, np.float32)) == 5.0)


def test_constant_input_uses_the_std_floor():
    norm = Normalizer(1, eps=0.01)
    norm.update(np.ones((10, 1)))
    assert norm.std[0] == np.float32(0.01)
    assert norm(np.array([1.0]))[0] == 0.0


def test_joined_normaliser_equals_its_parts_side_by_side_bit_for_bit():
    """The rollout normalises (obs, goal) in one pass: the same float32 numbers as normalising
    each and concatenating, for single rows, batches, and values beyond both clips."""
    rng = np.random.default_rng(3)
    obs_norm, goal_norm = Normalizer(5, obs_clip=50.0), Normalizer(3, obs_clip=50.0)
    obs_norm.update(rng.normal(2.0, 4.0, size=(300, 5)))
    goal_norm.update(rng.normal(-1.0, 0.1, size=(300, 3)))
    joined = Normalizer.joined(obs_norm, goal_norm)
    obs = rng.normal(2.0, 40.0, size=(64, 5)).astype(np.float32)  # some past the clips
    goal = rng.normal(-1.0, 1.0, size=(64, 3)).astype(np.float32)
    parts = np.concatenate([obs_norm(obs), goal_norm(goal)], axis=-1)
    assert np.abs(parts).max() == 5.0 and np.abs(np.clip(obs, -50, 50) - obs).max() > 0
    np.testing.assert_array_equal(joined(np.concatenate([obs, goal], axis=-1)), parts)
    np.testing.assert_array_equal(joined(np.concatenate([obs[0], goal[0]])), parts[0])
    assert joined(np.concatenate([obs, goal], axis=-1)).dtype == np.float32
