"""Exact resumption from a checkpoint and the replay snapshot saved beside it (component tier:
the tiny env, the local runner, no Ray)."""
import json
import re

import pytest
import torch

from hacray import checkpoint
from hacray.config import load_config
from hacray.runners.local import train_local

FAST = ("train.eval_every=450", "train.eval_episodes=5", "train.tensorboard=false")
# one publication more at the resume (the resumed run hands its policy the loaded weights):
# version numbers and the normaliser drift since the previous publication differ; wall-clock
# figures always do
VARY = ("wall_time_s", "policy_version", "charts/")


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(record):
    return {k: v for k, v in record.items()
            if not k.startswith(VARY) and not k.endswith("_drift")}


def assert_same_tree(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where  # NaN (no subgoals given) equals NaN


@pytest.mark.training
def test_a_resumed_run_goes_on_exactly_as_an_uninterrupted_one(tmp_path, point_mass_yaml,
                                                                 capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    config = lambda steps: load_config(point_mass_yaml, FAST + (f"train.max_env_steps={steps}",))
    train_local(config(1350), whole)
    train_local(config(450), split)
    train_local(config(1350), split, resume=True)
    assert re.search(r"replay restored from replay_\d{12}\.pt", capsys.readouterr().err)
    a, b = records(whole), records(split)
    assert len(a) == len(b) == 3
    assert [comparable(r) for r in a] == [comparable(r) for r in b]
    # bit for bit: every network, target network and optimiser moment, and the counters
    end_a, end_b = (checkpoint.load_latest(run)[1].to_dict() for run in (whole, split))
    for key in ("learner", "counters", "rng", "recent"):
        if key == "learner":
            for drop in ("version", "torch_rng"):  # see VARY; the torch rng is never drawn
                end_a[key].pop(drop), end_b[key].pop(drop)
        if key == "counters":
            end_a[key].pop("wall_time_s"), end_b[key].pop("wall_time_s")
        assert_same_tree(end_a[key], end_b[key], key)
    # only the newest replay snapshot is kept, beside its checkpoint
    snapshots = sorted(p.name for p in (split / "checkpoints").glob("replay_*.pt"))
    assert snapshots == [f"replay_{end_b['counters']['env_steps']:012d}.pt"]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_without_a_usable_replay_snapshot_the_resume_starts_an_empty_replay_and_says_so(
        tmp_path, point_mass_yaml, capsys, damage):
    run_dir = tmp_path / "run"
    config = lambda steps: load_config(point_mass_yaml, FAST + (f"train.max_env_steps={steps}",))
    train_local(config(450), run_dir)
    (snapshot,) = (run_dir / "checkpoints").glob("replay_*.pt")
    if damage == "missing":
        snapshot.unlink()
    else:
        snapshot.write_bytes(snapshot.read_bytes()[:100])
    capsys.readouterr()
    last = train_local(config(900), run_dir, resume=True)
    err = capsys.readouterr().err
    reason = "no replay snapshot for step" if damage == "missing" else "is unreadable"
    assert reason in err and "the replay restarts empty" in err
    assert last["env_steps"] >= 900
    # the refilled replay holds only the episodes played since the resume
    assert last["replay/level0_size"] < records(run_dir)[0]["replay/level0_size"] * 2


def test_save_replay_false_writes_no_snapshot(tmp_path, point_mass_yaml):
    run_dir = tmp_path / "run"
    train_local(load_config(point_mass_yaml, FAST + ("train.max_env_steps=450",
                                                     "train.save_replay=false")), run_dir)
    assert checkpoint.list_checkpoints(run_dir)
    assert not list((run_dir / "checkpoints").glob("replay_*.pt"))
