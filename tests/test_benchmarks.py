"""The benchmarks run and report what they measured (the learner on the point mass; the
throughput loops on FetchReach, MuJoCo tier)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "learner.py"
POINT_MASS = ROOT / "configs" / "point_mass.yaml"


def test_learner_benchmark_reports_a_rate_per_thread_count(capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import learner as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    bench.main([str(POINT_MASS), "--threads", "1", "2", "--seconds", "0.2", "--rounds", "2",
                "--device", "cpu"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["device"] == "cpu" and report["levels"] == 2
    for threads in (1, 2):
        result = report[f"level_threads_{threads}"]
        assert len(result["rounds"]) == 2 and all(rate > 0 for rate in result["rounds"])
    assert report["level_threads_1"]["over_first"] == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_learner_benchmark_without_a_gpu_says_so_in_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT), str(POINT_MASS), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "benchmarks/learner.py: learner.device is cuda but torch sees no CUDA GPU on this machine"]


@pytest.mark.mujoco
def test_throughput_in_process_takes_the_three_loops_in_turns(capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import throughput as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    bench.main(["--task", "FetchReach-v4", "--envs-per-worker", "2", "--in-process",
                "--rounds", "2", "--slice", "0.05"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    raw, env, rollout = (report[f"{k}_per_s"] for k in (
        "raw_mujoco_env_steps", "env_step_env_steps", "in_process_rollout_env_steps"))
    assert min(raw, env, rollout) > 0 and report["rounds"] == 2
    assert report["rollouts_over_raw"] == pytest.approx(rollout / raw, abs=1e-3)
    assert report["env_step_over_raw"] == pytest.approx(env / raw, abs=1e-3)


def goal_split():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import goal_split as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return bench


@pytest.mark.mujoco
def test_goal_split_counts_table_and_air_goals_of_a_pick_and_place_run(tmp_path, capsys):
    from hacray.cli import main
    run_dir = tmp_path / "run"
    assert main(["train", str(ROOT / "configs" / "fetch_pick_and_place_l1.yaml"), "--run-dir",
                 str(run_dir), "--max-env-steps", "100", "--set", "train.eval_every=100",
                 "--set", "train.eval_episodes=1", "--set", "train.tensorboard=false",
                 "--set", "train.video_every=0"]) == 0
    capsys.readouterr()
    assert goal_split().main([str(run_dir), "--episodes", "12"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["table_goals"] + report["air_goals"] == report["episodes"] == 12
    assert report["table_goals"] > 0 and report["air_goals"] > 0  # half in the air, by design
    assert report["env_steps_trained"] >= 100
    for key in ("success", "table_success", "air_success"):
        assert 0.0 <= report[key] <= 1.0


def test_goal_split_of_a_task_without_a_table_is_one_line(tmp_path, capsys):
    from hacray.cli import main
    run_dir = tmp_path / "run"
    assert main(["train", str(POINT_MASS), "--run-dir", str(run_dir), "--max-env-steps", "60",
                 "--set", "train.eval_every=60", "--set", "train.eval_episodes=1",
                 "--set", "train.tensorboard=false"]) == 0
    capsys.readouterr()
    assert goal_split().main([str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["benchmarks/goal_split.py: PointMass-v0 has no object on a table: the split "
                   "needs FetchPickAndPlace (or Push/Slide)"]
