"""One writer per run directory, and bad config files (component tier).

A SIGKILLed holder not blocking ``--resume`` is test_faults.py's
``test_driver_sigkill_then_resume_continues`` (the killed run leaves its lock file behind)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from hacray.cli import main
from hacray.rundir import LOCK_NAME, RunDirError, RunDirLock, holder


def test_a_held_directory_is_refused_naming_the_holder_until_released(tmp_path):
    first = RunDirLock.acquire(tmp_path)
    try:
        assert holder(tmp_path) == holder(tmp_path) and f"pid {os.getpid()}" in holder(tmp_path)
        with pytest.raises(RunDirError, match=f"is in use by pid {os.getpid()} on host "
                                              f"{socket.gethostname()}"):
            RunDirLock.acquire(tmp_path)
    finally:
        first.release()
    assert holder(tmp_path) is None  # the lock file stays; nobody holds it
    RunDirLock.acquire(tmp_path).release()


def test_holder_looks_without_writing(tmp_path):
    assert holder(tmp_path) is None and not (tmp_path / LOCK_NAME).exists()


def snapshot(run_dir):
    """Every file's bytes except the live run's growing logs and its rotating checkpoints."""
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name == "config.yaml"}


@pytest.mark.training
def test_a_second_writer_on_a_live_run_is_refused_and_changes_nothing(tmp_path, capsys,
                                                                      point_mass_yaml):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "hacray", "train", str(point_mass_yaml), "--run-dir", str(run_dir),
         "--max-env-steps", "1000000", "--set", "train.eval_every=300",
         "--set", "train.tensorboard=false"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        metrics = run_dir / "metrics.jsonl"
        while time.time() < deadline and first.poll() is None and not (
                metrics.exists() and metrics.read_text().count("\n") >= 1):
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1][-2000:]
        before = snapshot(run_dir)
        lines_before = metrics.read_text().count("\n")
        for flags in (["--resume"], ["--overwrite"], []):
            code = main(["train", str(point_mass_yaml), "--run-dir", str(run_dir),
                         "--max-env-steps", "600", *flags])
            _, err = capsys.readouterr()
            assert code == 2 and err.count("\n") == 1, (flags, err)
            assert f"is in use by pid {first.pid} on host {socket.gethostname()}" in err, err
        assert snapshot(run_dir) == before and list((run_dir / "checkpoints").glob("ckpt_*"))
        # the first run goes on writing, undisturbed
        deadline = time.time() + 120
        while time.time() < deadline and metrics.read_text().count("\n") <= lines_before:
            time.sleep(0.1)
        assert first.poll() is None and metrics.read_text().count("\n") > lines_before
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0
    # once it has ended, --resume takes the directory
    reached = json.loads(metrics.read_text().splitlines()[-1])["env_steps"]
    code = main(["train", str(point_mass_yaml), "--run-dir", str(run_dir), "--resume",
                 "--max-env-steps", str(reached + 300)])
    assert code == 0, capsys.readouterr().err


def test_a_binary_config_file_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "weights.yaml"
    config.write_bytes(b"\x80\x04\x95 not yaml \xff\xfe")
    run_dir = tmp_path / "run"
    code = main(["train", str(config), "--run-dir", str(run_dir)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "is not UTF-8 text" in err, err
    assert not run_dir.exists()


def every_file(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


@pytest.mark.training
@pytest.mark.parametrize("change,message", [
    ("agent.levels=1", "agent.levels is 1 but the run being resumed used 2"),
    ("learner.hidden=[32]", "learner.hidden is [32] but the run being resumed used [64, 64]"),
    ("learner.top_hidden=[32]", "learner.top_hidden is [32] but the run being resumed used None"),
    ("learner.layer_norm=true", "learner.layer_norm is True but the run being resumed used False"),
    ("learner.twin_critics=true", "learner.twin_critics is True but the run being resumed "
                                  "used False"),
    ("replay.lift_priority=2.0", "replay.lift_priority is 2.0 but the run being resumed used 0.0"),
    ("replay.her_at_sample=true", "replay.her_at_sample is True but the run being resumed "
                                  "used False"),
    ("agent.lower_sees_goal=true", "agent.lower_sees_goal is True but the run being resumed "
                                   "used False"),
])
def test_resuming_with_other_shapes_is_one_line_exit_2_and_changes_nothing(
        tmp_path, capsys, point_mass_yaml, change, message):
    run_dir = tmp_path / "run"
    base = ["train", str(point_mass_yaml), "--run-dir", str(run_dir), "--set",
            "train.tensorboard=false", "--set", "learner.hidden=[64,64]"]
    assert main(base + ["--max-env-steps", "600"]) == 0
    capsys.readouterr()
    before = every_file(run_dir)
    extra = {"agent.levels=1": ["--set", "agent.horizons=[30]"],
             "replay.lift_priority=2.0": ["--set", "replay.lift_index=1"]}.get(change, [])
    code = main(base + ["--max-env-steps", "900", "--resume", "--set", change, *extra])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert every_file(run_dir) == before
