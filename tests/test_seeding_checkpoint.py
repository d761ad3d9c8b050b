"""Seed streams and checkpoint files (unit tier)."""
import numpy as np
import pytest
import torch

from hacray import checkpoint, seeding
from hacray.types import Counters


def test_streams_are_reproducible_and_independent():
    a = seeding.rng(7, "env", 0, 0).random(4)
    assert np.array_equal(a, seeding.rng(7, "env", 0, 0).random(4))
    others = [seeding.rng(7, "env", 0, 1), seeding.rng(7, "env", 1, 0), seeding.rng(8, "env", 0, 0),
              seeding.rng(7, "replay")]
    for other in others:
        assert not np.array_equal(a, other.random(4))


def test_eval_seeds_are_fixed_per_run():
    assert seeding.eval_env_seeds(3, 5) == seeding.eval_env_seeds(3, 5)
    assert len(set(seeding.eval_env_seeds(3, 5))) == 5
    assert seeding.eval_env_seeds(3, 5) != seeding.eval_env_seeds(4, 5)


def state(value):
    return checkpoint.RunState({"w": torch.full((3,), float(value))}, Counters(env_steps=value),
                               {"replay": np.random.default_rng(value).bit_generator.state})


def test_rotation_keeps_the_newest_and_best_is_a_copy(tmp_path):
    for steps in (100, 200, 300, 400):
        checkpoint.save(tmp_path, state(steps), keep=2, is_best=steps == 200)
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["ckpt_000000000300.pt", "ckpt_000000000400.pt"]
    assert checkpoint.load(tmp_path / "checkpoints" / "best.pt")["counters"]["env_steps"] == 200
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    checkpoint.save(tmp_path, state(100), keep=3)
    newest = checkpoint.save(tmp_path, state(200), keep=3)
    newest.write_bytes(newest.read_bytes()[:50])  # truncated by a crash or full disk
    path, loaded, warnings = checkpoint.load_latest(tmp_path)
    assert loaded.counters.env_steps == 100
    assert len(warnings) == 1 and "unreadable" in warnings[0] and newest.name in warnings[0]


def test_loading_refuses_arbitrary_pickles(tmp_path):
    import pickle
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps(print))
    with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
        checkpoint.load(bad)


def test_the_checkpoint_record_has_a_layout_version_and_older_files_still_read(tmp_path):
    path = checkpoint.save(tmp_path, state(100), keep=3)
    raw = checkpoint.load(path)
    assert raw["version"] == checkpoint.LAYOUT_VERSION
    back = checkpoint.read(path)
    assert back.counters == Counters(env_steps=100) and back.learner["w"].tolist() == [100.0] * 3
    raw.pop("version")  # written before the field: the same layout
    torch.save(raw, tmp_path / "old.pt")
    assert checkpoint.read(tmp_path / "old.pt").counters.env_steps == 100


def test_a_checkpoint_keeps_the_config_it_was_trained_with(tmp_path):
    from hacray.config import config_from_dict, load_config, to_dict
    config = load_config(None, ("learner.hidden=[8,8]", "replay.samples_per_env_step=64"))
    kept = checkpoint.RunState(**{**vars(state(100)), "config": to_dict(config)})
    back = checkpoint.read(checkpoint.save(tmp_path, kept, keep=3))
    assert config_from_dict(back.config) == config
    assert checkpoint.read(checkpoint.save(tmp_path, state(200), keep=3)).config is None


@pytest.mark.parametrize("change,message", [
    ({"version": 99}, "has checkpoint layout 99; this hacray reads layout 1"),
    ({"learner": None}, "holds no policy"),
    ({"counters": {"steps": 3}}, "has no usable counters"),
])
def test_a_checkpoint_of_another_layout_is_one_clear_error(tmp_path, change, message):
    raw = {**state(100).to_dict(), **change}
    if change.get("learner", 1) is None:
        raw.pop("learner")
    torch.save(raw, tmp_path / "x.pt")
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.read(tmp_path / "x.pt")
