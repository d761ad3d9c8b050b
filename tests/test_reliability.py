"""Faults: non-finite numbers, disk errors, signals, GPU requests without a GPU."""
import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hacray import checkpoint
from hacray.algo import learner as learner_mod
from hacray.blueprint import Blueprint
from hacray.cli import main
from hacray.config import load_config
from hacray.envs import make_env


def blueprint(*overrides):
    config = load_config(None, ("env.id=PointMass-v0", "learner.hidden=[16]",
                                "learner.batch_size=8", *overrides))
    return Blueprint.of(config, make_env(config.env).spec)


def batches(bp, value=0.0):
    from hacray.types import Transitions
    out = []
    for s in bp.spaces:
        n = 8
        out.append(Transitions(
            obs=np.full((n, 2), value, np.float32), goal=np.zeros((n, s.goal_dim), np.float32),
            action=np.zeros((n, s.act_dim), np.float32), reward=-np.ones(n, np.float32),
            discount=np.full(n, 0.98, np.float32), next_obs=np.zeros((n, 2), np.float32)))
    return tuple(out)


@pytest.mark.parametrize("threads", [1, 2])
def test_non_finite_batches_are_skipped_counted_and_then_stop_the_run(threads):
    bp = blueprint(f"learner.level_threads={threads}")
    learner = bp.learner()
    assert (learner._pool is None) == (threads == 1)
    before = [p.clone() for p in learner.levels[0].actor.parameters()]
    metrics = learner.update(batches(bp, np.nan))
    assert learner.skipped_updates == 2 and "level0/skipped_updates" in metrics
    assert all(torch.equal(a, b) for a, b in zip(before, learner.levels[0].actor.parameters()))
    learner.update(batches(bp, 0.0))  # a finite update resets the streak
    assert learner.consecutive_skips == 0
    with pytest.raises(learner_mod.NumericalError, match="consecutive updates"):
        for _ in range(learner_mod.MAX_CONSECUTIVE_SKIPS):
            learner.update(batches(bp, np.nan))


def test_nan_weights_never_leave_the_learner():
    learner = blueprint().learner()
    with torch.no_grad():
        next(learner.levels[1].critic.parameters()).fill_(float("nan"))
    with pytest.raises(learner_mod.NumericalError):
        learner.weights()
    with pytest.raises(learner_mod.NumericalError):
        learner.state_dict()


def test_replay_drops_non_finite_episodes():
    from hacray.algo.rollout import run_episode
    bp = blueprint()
    env = make_env(bp.config.env)
    policy = bp.policy()
    policy.set_weights(bp.learner().weights())
    episode = run_episode(env, policy, bp.config.agent, 0, np.random.default_rng(0), True)
    episode.segments[0][0].obs[1, 0] = np.nan
    replay = bp.replay()
    assert replay.add_episode(episode) is False
    assert replay.rejected_episodes == 1 and replay.sizes() == [0, 0]
    assert replay.obs_stats.count == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_request_without_gpu_fails_before_writing(tmp_path, capsys, point_mass_yaml):
    run_dir = tmp_path / "run"
    assert main(["train", str(point_mass_yaml), "--run-dir", str(run_dir), "--set",
                 "learner.device=cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err and not run_dir.exists()


def test_unwritable_run_dir_is_one_line_exit_2(tmp_path, capsys, point_mass_yaml):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", str(point_mass_yaml), "--run-dir", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot write run directory" in err and err.count("\n") == 1


@pytest.mark.parametrize("full_from", ["replay", "ckpt"])
def test_disk_full_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch, point_mass_yaml,
                                                  full_from):
    """The disk fills while the second checkpoint's replay snapshot or the checkpoint itself is
    written: the first checkpoint and its snapshot stay, nothing half-written is left."""
    run_dir = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(Path(f.name).name)
        if sum(name.startswith(f".{full_from}_") for name in calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(f.name))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main(["train", str(point_mass_yaml), "--run-dir", str(run_dir), "--max-env-steps",
                 "600", "--set", "train.eval_every=300", "--set", "train.tensorboard=false"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1
    saved = checkpoint.list_checkpoints(run_dir)
    assert len(saved) == 1 and checkpoint.load(saved[0])["counters"]["env_steps"] >= 300
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    steps = checkpoint.load(saved[0])["counters"]["env_steps"]
    assert [p.name for p in (run_dir / "checkpoints").glob("replay_*.pt")] == [
        f"replay_{steps:012d}.pt"]


@pytest.mark.training
def test_sigterm_writes_a_final_checkpoint_and_exits_promptly(tmp_path, point_mass_yaml):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hacray", "train", str(point_mass_yaml),
                             "--run-dir", str(run_dir), "--max-env-steps", "1000000",
                             "--set", "train.eval_every=300", "--set", "train.tensorboard=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.2)
    assert metrics.exists(), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGTERM)
    sent = time.time()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and time.time() - sent < 10, err
    last = json.loads(metrics.read_text().splitlines()[-1])
    newest = checkpoint.load(checkpoint.list_checkpoints(run_dir)[-1])
    assert newest["counters"]["env_steps"] == last["env_steps"] == json.loads(out)["env_steps"]


@pytest.mark.training
def test_resume_skips_a_corrupt_newest_checkpoint_and_says_so(tmp_path, capsys, point_mass_yaml):
    run_dir = tmp_path / "run"
    base = ["train", str(point_mass_yaml), "--run-dir", str(run_dir), "--set",
            "train.eval_every=300", "--set", "train.tensorboard=false"]
    assert main(base + ["--max-env-steps", "600"]) == 0
    newest = checkpoint.list_checkpoints(run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    capsys.readouterr()
    assert main(base + ["--max-env-steps", "900", "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{newest.name} is unreadable" in err and "resumed from ckpt_000000000300.pt" in err
