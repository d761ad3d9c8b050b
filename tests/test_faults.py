"""Faults that end a run: its replay actor dies; its driver is SIGKILLed, then resumed."""
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from hacray import checkpoint
from hacray.config import load_config


def records(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def written(run_dir):
    """Complete lines of metrics.jsonl so far (while a run may be writing one)."""
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.ray
def test_replay_actor_death_fails_loudly(tmp_path, point_mass_yaml, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    from hacray.runners.distributed import REPLAY, train_distributed

    run_dir = tmp_path / "run"
    config = load_config(point_mass_yaml, (
        "distributed.workers=2", "distributed.timeout_s=60", "replay.tolerance=50",
        "train.tensorboard=false", "train.eval_every=300", "train.eval_episodes=5",
        "train.max_env_steps=1000000"))
    outcome: dict = {}

    def train():
        try:
            outcome["result"] = train_distributed(config, run_dir, worker_cpus=0.5)
        except BaseException as err:  # noqa: BLE001 - the test inspects whatever ended the run
            outcome["error"] = err

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        thread = threading.Thread(target=train, daemon=True)
        thread.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not written(run_dir) and thread.is_alive():
            time.sleep(0.2)
        assert records(run_dir), outcome
        ray.kill(ray.get_actor(REPLAY))
        killed_at = time.monotonic()
        thread.join(timeout=90)
        took = time.monotonic() - killed_at
        assert not thread.is_alive(), "the run went on after its replay actor died"
        assert "result" not in outcome, f"the run ended as if nothing happened: {outcome}"
        error = outcome["error"]
        assert isinstance(error, RuntimeError), repr(error)
        assert "replay" in str(error) and "\n" not in str(error), str(error)
        assert took < 90
        # nothing was written after the replay died, and the last checkpoint still loads
        path, state, notes = checkpoint.load_latest(run_dir)
        assert not notes
        assert state["counters"]["env_steps"] == records(run_dir)[-1]["env_steps"]
        assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        assert not [a for a in ray.util.list_named_actors() if a.startswith("hacray-")]
    finally:
        ray.shutdown()
    # `hacray train --workers N` reports that error as one line, exit code 1
    from hacray import cli

    def fail(args):
        raise error
    monkeypatch.setattr(cli, "_train", fail)
    capsys.readouterr()
    assert cli.main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hacray: error: the replay actor died") and err.count("\n") == 1, err


def train_cmd(config, run_dir, max_env_steps, *extra):
    return [sys.executable, "-m", "hacray", "train", str(config), "--run-dir", str(run_dir),
            "--max-env-steps", str(max_env_steps), "--set", "train.eval_every=300",
            "--set", "train.tensorboard=false", *extra]


def test_driver_sigkill_then_resume_continues(tmp_path, point_mass_yaml):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(point_mass_yaml, run_dir, 20000),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and (
                written(run_dir) < 3 or len(checkpoint.list_checkpoints(run_dir)) < 3):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err
    before = records(run_dir)
    assert len(before) >= 3, err
    ckpt_path, ckpt, _ = checkpoint.load_latest(run_dir)
    ckpt_steps, ckpt_updates = ckpt["counters"]["env_steps"], ckpt["learner"]["updates"]
    # the checkpoint is written right after its record: a record newer than the checkpoint
    # may exist, never a checkpoint without its record
    at_ckpt = [r for r in before if r["env_steps"] == ckpt_steps]
    assert at_ckpt and at_ckpt[-1]["updates"] == ckpt_updates
    orphans = [r for r in before if r["env_steps"] > ckpt_steps]
    assert len(orphans) <= 1

    budget = before[-1]["env_steps"] + 1200
    done = subprocess.run(train_cmd(point_mass_yaml, run_dir, budget, "--resume"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = records(run_dir)[len(before):]
    assert after, done.stderr
    # counters continue from the checkpoint (not from 0) and strictly increase
    kept = [r for r in before if r["env_steps"] <= ckpt_steps] + after
    for key in ("env_steps", "updates", "episodes"):
        values = [r[key] for r in kept]
        assert all(a < b for a, b in zip(values, values[1:])), (key, values)
    first = after[0]
    assert first["env_steps"] > ckpt_steps and first["updates"] > ckpt_updates
    assert after[-1]["env_steps"] >= budget
    assert json.loads(done.stdout)["env_steps"] == after[-1]["env_steps"]
    # the normaliser came back with the learner: its statistics keep growing, not restart
    _, newest, _ = checkpoint.load_latest(run_dir)
    assert newest["counters"]["env_steps"] == after[-1]["env_steps"]
    old_count = float(ckpt["learner"]["obs_stats"]["count"])
    new_count = float(newest["learner"]["obs_stats"]["count"])
    assert new_count >= old_count > 0, (old_count, new_count)
    # every observation of the run, before the kill and since the resume, is in the statistics
    # (an episode of n steps has n + 1 observations): a restarted normaliser has fewer
    assert new_count >= newest["counters"]["env_steps"], (old_count, new_count)
    # the policy came back too: the first evaluation after resume is close to the checkpoint's
    # (eval_episodes from the config: 20 on the tiny env)
    assert abs(first["eval/success_rate"] - at_ckpt[-1]["eval/success_rate"]) <= 0.3, (
        at_ckpt[-1]["eval/success_rate"], first["eval/success_rate"])
