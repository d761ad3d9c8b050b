"""The benchmarks run and report what they measured (the learner on the point mass; the
throughput loops on FetchReach, MuJoCo tier)."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hacray.types import Segment

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "learner.py"
POINT_MASS = ROOT / "configs" / "point_mass.yaml"


def _script(name: str):
    """A benchmarks/ script, imported as a module."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_learner_benchmark_reports_a_rate_per_thread_count(capsys):
    bench = _script("learner")
    bench.main([str(POINT_MASS), "--threads", "1", "2", "--seconds", "0.2", "--rounds", "2",
                "--device", "cpu"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["device"] == "cpu" and report["levels"] == 2
    for threads in (1, 2):
        result = report[f"level_threads_{threads}"]
        assert len(result["rounds"]) == 2 and all(rate > 0 for rate in result["rounds"])
    assert report["level_threads_1"]["over_first"] == 1.0


def test_learner_benchmark_times_each_level_update_every(capsys):
    bench = _script("learner")
    bench.main([str(POINT_MASS), "--threads", "1", "--every", "1,1", "1,2", "--seconds", "0.2",
                "--rounds", "1", "--device", "cpu"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"level_threads_1_every_1_1", "level_threads_1_every_1_2"} <= report.keys()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_learner_benchmark_without_a_gpu_says_so_in_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT), str(POINT_MASS), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "benchmarks/learner.py: learner.device is cuda but torch sees no CUDA GPU on this machine"]


@pytest.mark.mujoco
def test_throughput_in_process_takes_the_three_loops_in_turns(capsys):
    bench = _script("throughput")
    bench.main(["--task", "FetchReach-v4", "--envs-per-worker", "2", "--in-process",
                "--rounds", "2", "--slice", "0.05"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    raw, env, rollout = (report[f"{k}_per_s"] for k in (
        "raw_mujoco_env_steps", "env_step_env_steps", "in_process_rollout_env_steps"))
    assert min(raw, env, rollout) > 0 and report["rounds"] == 2
    # the ratios come from the unrounded rates; the rates are printed to 0.1 env steps/s
    assert report["rollouts_over_raw"] == pytest.approx(rollout / raw, rel=1e-2)
    assert report["env_step_over_raw"] == pytest.approx(env / raw, rel=1e-2)


@pytest.mark.ray
@pytest.mark.mujoco
def test_throughput_on_ray_times_the_workers_in_turns_with_the_baselines(capsys):
    bench = _script("throughput")
    bench.main(["--task", "FetchReach-v4", "--workers", "1", "--envs-per-worker", "2",
                "--rounds", "2", "--slice", "0.05", "--seconds", "3"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    workers, raw = report["workers_env_steps_per_s"], report["raw_mujoco_env_steps_per_s"]
    assert workers > 0 and raw > 0 and report["learner_actor_updates_per_s"] > 0
    assert report["sampler_efficiency"] == pytest.approx(workers / raw, rel=1e-2)
    assert report["learner_efficiency"] == pytest.approx(
        report["learner_actor_updates_per_s"] / report["in_process_updates_per_s"], rel=1e-2)
    assert 0 < report["learner_actor_share_updating"] <= 1


def test_rollout_ab_plays_both_checkouts_in_turns(capsys):
    """The A/B script loads a second checkout under another package name and reports both
    rates (here this checkout against itself, on the point mass)."""
    bench = _script("rollout_ab")
    bench.main(["--old", str(ROOT), "--task", "PointMass-v0", "--envs", "2", "--rounds", "2"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["old_env_steps_per_s"] > 0 and report["new_env_steps_per_s"] > 0
    assert report["new_over_old"] == pytest.approx(
        report["new_env_steps_per_s"] / report["old_env_steps_per_s"], rel=1e-3)


@pytest.mark.ray
def test_replay_throughput_reports_ingest_sampling_and_latency(capsys):
    bench = _script("replay_throughput")
    bench.main([str(POINT_MASS), "--producers", "3", "--episodes", "2", "--seconds", "0.5"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["producers"] == 3 and report["env_steps_per_insert_call"] == 60
    for key in ("ingest_alone_env_steps_per_s", "sample_alone_transitions_per_s",
                "ingest_with_sampling_env_steps_per_s", "sample_latency_alone_ms_median"):
        assert report[key] > 0, key
    assert report["sample_alone_updates_per_s"] == pytest.approx(
        report["sample_alone_transitions_per_s"] / 128, rel=0.01)


def test_success_by_distance_bins_a_saved_policys_episodes(tmp_path, capsys):
    from hacray.cli import main as hacray
    run_dir = tmp_path / "run"
    assert hacray(["train", str(POINT_MASS), "--run-dir", str(run_dir), "--max-env-steps", "300",
                   "--set", "train.eval_every=300", "--set", "train.tensorboard=false"]) == 0
    capsys.readouterr()
    bench = _script("success_by_distance")
    report = bench.main([str(run_dir), "--episodes", "12", "--bins", "0", "1", "3"])
    assert report["episodes"] == 12
    assert report["0-1"]["episodes"] + report["1-3"]["episodes"] == 12  # point mass: < 2.83
    assert 0.0 <= report["success"] <= 1.0
    failed = report["failures"]
    assert (failed["stuck"] is None) == (report["success"] == 1.0)
    assert (report["success_steps_median"] is None) == (report["success"] == 0.0)


@pytest.mark.parametrize("path,moved,closest,length", [
    ([[0, 0], [1, 0], [1, 1]], 2 ** 0.5, 13 ** 0.5, 2.0),  # moved: its box's diagonal
    ([[0, 0]] + [[3, 4]] * 100, 0.0, 0.0, 5.0),          # still for its last 100 steps
    ([[0, 0]] * 100 + [[0, 2]], 2.0, 13 ** 0.5, 2.0),    # the oldest step has left the window
])
def test_success_by_distance_says_how_a_failure_ended(path, moved, closest, length):
    bench = _script("success_by_distance")
    result = bench.ending(np.array(path, np.float32), np.array([3.0, 4.0], np.float32))
    assert result == pytest.approx((moved, closest, length), abs=1e-5)


def test_argmax_top_plays_a_saved_policy_three_ways(tmp_path, capsys):
    from hacray.cli import main as hacray
    run_dir = tmp_path / "run"
    assert hacray(["train", str(POINT_MASS), "--run-dir", str(run_dir), "--max-env-steps", "300",
                   "--set", "train.eval_every=300", "--set", "train.tensorboard=false"]) == 0
    report = _script("argmax_top").main([str(run_dir), "--episodes", "4", "--candidates", "16"])
    assert report["levels"] == 2 and report["episodes"] == 4
    for key in ("success_as_trained", "success_argmax_top", "success_jitter_top",
                "changed_fraction"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["q_gain_mean"] >= 0.0  # the actor's own action is one of the candidates

GOAL = [0.3, 0.0, 0.42]
STILL = [[0.0, 0.0, 0.42]] * 3


@pytest.mark.parametrize("path,success,expected", [
    (STILL, True, "success"),                                          # success comes first
    (STILL, False, "untouched"),
    ([[0, 0, 0.42], [0.005, 0, 0.42], [0, 0, 0.42]], False, "untouched"),  # within 1 cm
    ([[0, 0, 0.42], [0.1, 0, 0.42], [0.2, 0, 0.3]], False, "fell"),        # below the table top
    ([[0, 0, 0.42], [0, 0.1, 0.42], [0, 0.2, 0.42]], False, "wrong_way"),  # 90 degrees off
    ([[0, 0, 0.42], [-0.1, 0, 0.42], [-0.2, 0, 0.42]], False, "wrong_way"),
    ([[0, 0, 0.42], [0.1, 0, 0.42], [0.2, 0.05, 0.42]], False, "short"),   # 14 degrees off
    ([[0, 0, 0.42], [0.2, 0, 0.42], [0.4, 0.02, 0.42]], False, "overshot"),
    ([[0, 0, 0.42], [0.28, 0, 0.42], [0.4, 0.02, 0.42]], False, "left_goal"),  # 2 cm off once
    ([[0, 0, 0.42], [0.3, 0, 0.42], [0.3, 0.2, 0.42]], False, "left_goal"),
])
def test_object_failures_sorts_an_episode_by_what_the_object_did(path, success, expected):
    bench = _script("object_failures")
    assert bench.outcome(np.array(path, np.float32), np.array(GOAL, np.float32), success,
                         0.01) == expected


@pytest.mark.parametrize("distances,expected", [
    ([0.0, 0.02, 0.04, 0.06],
     {"<0.03": 0.5, "0.03-0.05": 0.25, "0.05-0.08": 0.25, ">=0.08": 0.0}),
    ([0.05, 0.5],   # on an edge: the band above
     {"<0.03": 0.0, "0.03-0.05": 0.0, "0.05-0.08": 0.5, ">=0.08": 0.5}),
])
def test_object_failures_shares_end_distances_in_bands_of_the_threshold(distances, expected):
    assert _script("object_failures").distance_shares(distances, 0.05) == expected


@pytest.mark.parametrize("offset,expected", [
    ([0.05, 0, 0], 1.0),     # fell short towards the centre
    ([-0.05, 0, 0], -1.0),   # went past the goal, away from it
    ([0, 0.05, 0], 0.0),
])
def test_object_failures_measures_a_miss_towards_the_box_centre(offset, expected):
    got = _script("object_failures").toward(np.array(offset), np.array([1.2, 0.75, 0.6]),
                                            np.array([1.35, 0.75, 0.6]))
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kinds,expected", [
    (["success"], {"success": 1.0, "left_goal": 0.0}),
    (["success", "left_goal", "left_goal"], {"success": 0.333, "left_goal": 0.667}),
    (["fell", "fell"], {"success": 0.0, "left_goal": 0.0}),   # not named: not counted
])
def test_object_failures_gives_each_outcome_its_share(kinds, expected):
    assert _script("object_failures").fractions(kinds, ("success", "left_goal")) == expected


@pytest.mark.parametrize("z,expected", [
    ([0.42, 0.42, 0.42], False),
    ([0.42, 0.435, 0.42], False),   # 1.5 cm: a nudge
    ([0.42, 0.46, 0.50], True),
    ([0.42, 0.30, 0.30], False),    # fell off the table
])
def test_object_failures_counts_an_object_lifted_above_its_start(z, expected):
    path = np.array([[0.0, 0.0, h] for h in z], np.float32)
    assert _script("object_failures").lifted(path, 0.02) is expected


@pytest.mark.parametrize("path,expected", [
    (STILL, None),                                                         # never at the goal
    ([[0.3, 0, 0.42], [0.3, 0, 0.42]], None),                              # there from the start
    ([[0, 0, 0.42], [0.2, 0, 0.42], [0.28, 0, 0.42], [0.4, 0, 0.42]], 0.08),  # 8 cm in one step
    ([[0, 0, 0.42], [0.2, 0, 0.42], [0.24, 0, 0.42], [0.26, 0, 0.42]], 0.02),  # crept in
])
def test_object_failures_measures_the_speed_at_which_the_object_reached_the_goal(path, expected):
    speed = _script("object_failures").arrival_speed(np.array(path, np.float32),
                                                     np.array(GOAL, np.float32), 0.05)
    assert speed == (None if expected is None else pytest.approx(expected, abs=1e-6))


def _obs(objects, to_object, fingers):
    """Fetch observations with only the object, its offset from the gripper and the fingers."""
    obs = np.zeros((len(objects), 25), np.float32)
    obs[:, 3:6], obs[:, 6:9], obs[:, 9:11] = objects, to_object, np.array(fingers)[:, None] / 2
    return obs


AT_GOAL, HELD_TIGHT, FAR = [0.3, 0.0, 0.42], [0.0, 0.0, 0.01], [0.0, 0.0, 0.08]


@pytest.mark.parametrize("objects,to_object,fingers,expected,opened", [
    ([[0, 0, 0.42]] * 3, [FAR] * 3, [0.1] * 3, None, None),                   # never there
    ([[0, 0, 0.42], AT_GOAL, AT_GOAL], [FAR] * 3, [0.1] * 3, None, None),     # there at the end
    ([AT_GOAL, [0.4, 0, 0.42], [0.5, 0, 0.42]], [HELD_TIGHT] * 3, [0.05] * 3, "carried", 0.0),
    ([AT_GOAL, [0.3, 0, 0.36], [0.3, 0, 0.30]], [HELD_TIGHT, FAR, FAR], [0.05, 0.09, 0.1],
     "dropped", 0.04),                                                        # let go: it sank
    ([AT_GOAL, [0.4, 0, 0.42], [0.5, 0, 0.42]], [HELD_TIGHT, FAR, FAR], [0.05] * 3,
     "pushed", 0.0),                                                          # knocked along
    ([AT_GOAL, [0.4, 0, 0.42], AT_GOAL, [0.3, 0.1, 0.42], [0.3, 0.2, 0.42]],  # the last exit counts
     [HELD_TIGHT, FAR, FAR, HELD_TIGHT, HELD_TIGHT], [0.05] * 5, "carried", 0.0),
])
def test_object_failures_tells_how_the_object_left_the_goal(objects, to_object, fingers,
                                                            expected, opened):
    bench = _script("object_failures")
    obs, goal = _obs(objects, to_object, fingers), np.array(AT_GOAL, np.float32)
    assert bench.how_left(obs, goal, 0.05) == expected
    change = bench.finger_change(obs, goal, 0.05)
    assert change == (None if opened is None else pytest.approx(opened, abs=1e-6))


def test_object_failures_can_slow_the_lowest_level_only():
    class TwoLevels:
        spaces = ("level 0", "level 1")

        def act(self, level, obs, goal):
            return np.full(3, level + 1.0, np.float32)

    slowed = _script("object_failures").Slowed(TwoLevels(), 0.5)
    assert slowed.act(0, None, None).tolist() == [0.5] * 3
    assert slowed.act(1, None, None).tolist() == [2.0] * 3   # subgoals untouched
    assert slowed.spaces == ("level 0", "level 1")


@pytest.mark.parametrize("values,expected", [
    ([], None),                                                    # no near misses
    ([0.031, 0.0374, 0.05], 0.037),                                # distances: one median, mm
    ([[0.0, 0.0, -0.05], [0.01, 0.0, -0.06], [0.03, 0.0, -0.04]],  # offsets: per coordinate
     [0.01, 0.0, -0.05]),
])
def test_object_failures_takes_the_near_misses_median_per_coordinate(values, expected):
    assert _script("object_failures").median_of(values) == expected


@pytest.mark.parametrize("gripper,expected", [
    ([[0, 0, 0], [0, 0, 0.1]], 0.1),      # it stayed 0.1 away at best
    ([[0.3, 0, 0], [0, 0, 0.02]], 0.02),  # the nearest step counts, wherever the object is
])
def test_object_failures_measures_how_near_the_gripper_came_to_the_object(gripper, expected):
    obj = np.array([[0, 0, 0.2], [0, 0, 0]], np.float32)
    near = _script("object_failures").closest_approach(np.array(gripper, np.float32), obj)
    assert near == pytest.approx(expected)


@pytest.mark.mujoco
def test_object_failures_plays_a_pick_and_place_policy_exploring_with_changed_settings(
        tmp_path, capsys):
    from hacray.cli import main as hacray
    run_dir = tmp_path / "run"
    assert hacray(["train", str(ROOT / "configs" / "fetch_pick_and_place_l2.yaml"), "--run-dir",
                   str(run_dir), "--max-env-steps", "200", "--set", "train.eval_every=200",
                   "--set", "train.eval_episodes=1", "--set", "train.tensorboard=false",
                   "--set", "train.video_every=0", "--set", "learner.hidden=[16]",
                   "--set", "replay.min_size=100"]) == 0
    capsys.readouterr()
    bench = _script("object_failures")
    report = bench.main([str(run_dir), "--episodes", "8", "--explore",
                         "--agent", "level_random_eps=[0.0,0.2]"])
    assert report["explore"] is True and report["agent_changes"] == ["level_random_eps=[0.0,0.2]"]
    assert 0.0 <= report["lifted_steps"] <= 1.0
    assert {"left_goal_carried", "left_goal_dropped", "left_goal_pushed"} <= set(report)
    kinds = [k[len("untouched_"):] for k in report if k.startswith("untouched_")]
    assert kinds and set(kinds) <= {"air", "table"}
    for key, size in (("near_miss_offset_median", 3), ("near_miss_subgoal_offset_median", 3)):
        assert report[key] is None or len(report[key]) == size
    assert (report["near_miss_gripper_to_subgoal_median"] is None
            or report["near_miss_gripper_to_subgoal_median"] >= 0.0)
    assert all(report[f"gripper_object_closest_median_{k}"] >= 0.0 for k in kinds)
    with pytest.raises(SystemExit, match="unknown key 'agent.nope'"):
        bench.main([str(run_dir), "--episodes", "1", "--agent", "nope=1"])
    # --grasped: every episode starts with the object in the gripper, so the gripper is at the
    # object from the first step; the top critic values such starts too
    held = bench.main([str(run_dir), "--episodes", "4", "--grasped"])
    assert held["grasped"] is True
    assert all(held[f"gripper_object_closest_median_{k}"] < 0.02
               for k in ("air", "table") if f"untouched_{k}" in held)
    top = _script("top_q").main([str(run_dir), "--episodes", "4", "--grasped"])
    assert top["grasped"] is True and all(np.isfinite(top[f"q_{k}"]) for k in ("air", "table")
                                          if f"q_{k}" in top)


def test_object_failures_refuses_a_task_without_an_object(tmp_path, capsys):
    from hacray.cli import main as hacray
    run_dir = tmp_path / "run"
    assert hacray(["train", str(POINT_MASS), "--run-dir", str(run_dir), "--max-env-steps", "300",
                   "--set", "train.eval_every=300", "--set", "train.tensorboard=false"]) == 0
    with pytest.raises(SystemExit, match="is not a Fetch object task"):
        _script("object_failures").main([str(run_dir), "--episodes", "2"])

RATES = {"worker_env_steps_per_s": 1000.0, "replay_ingest_env_steps_per_s": 10000.0,
         "replay_sample_transitions_per_s": 100000.0, "learner_updates_per_s": {"256": 50.0}}


@pytest.mark.parametrize("workers,learner_rate,worker_cpus,cores,expected,bottleneck", [
    (1, None, None, None, 125.0, "learner"),           # 50 updates/s / 0.4
    (4, 300.0, None, None, 750.0, "learner"),          # an assumed (GPU) learner rate
    (2, 2000.0, None, None, 1 / 1.124e-3, "replay"),   # 1/I + 0.4 * 256 / S seconds a step
    (8, 1e9, 3, None, 1 / 1.124e-3, "replay"),
    (2, 1e9, 0, None, 0.0, "workers"),                 # no CPU to place a worker on
    (2, None, None, 1.0, 1 / (1e-3 + 1.124e-3 + 0.4 / 50), "cores"),
])
def test_scaling_model_takes_the_least_bound(workers, learner_rate, worker_cpus, cores,
                                              expected, bottleneck):
    scaling = _script("scaling")
    out = scaling.predict(RATES, workers, 256, 0.4, learner_rate, worker_cpus, cores,
                          learner_on_cpu=learner_rate is None)
    assert out["bottleneck"] == bottleneck
    assert out["env_steps_per_s"] == pytest.approx(expected)


def test_scaling_model_replay_bound_grows_with_the_shards():
    scaling = _script("scaling")
    one, three = (scaling.predict(RATES, 64, 256, 0.4, 1e9, shards=n, learner_on_cpu=False)
                  for n in (1, 3))
    assert three["replay_bound"] == pytest.approx(3 * one["replay_bound"])
    assert three["env_steps_per_s"] == pytest.approx(3 / 1.124e-3)


def test_scaling_model_reads_a_cluster_files_worker_cpus_and_gpu():
    scaling = _script("scaling")
    capacity = scaling.cluster_capacity(ROOT / "cluster" / "aws-gpu.yaml")
    # 8 c7i.2xlarge nodes of 8 vCPUs, plus the head's 4 CPUs less the learner, replay, eval
    assert capacity == {"worker_cpus": 8 * 8 + 1, "head_gpus": 1}


def test_gpu_learner_benchmark_runs_on_the_cpu_and_finds_both_steps_equal(capsys):
    """The script prepared for a GPU machine (torch and numpy only), run here on the CPU."""
    bench = _script("gpu_learner")
    bench.main(["--device", "cpu", "--batches", "32", "--per-call", "4", "--seconds", "0.1"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["batch_32"]["update_many_updates_per_s"] > 0
    assert report["max_weight_difference"] == 0.0
    assert report["max_weight_difference_with_a_nan_batch"] == 0.0


@pytest.mark.training
def test_a_screen_trains_each_seed_from_a_frozen_clone_then_resumes_to_a_new_budget(
        tmp_path, capsys):
    """benchmarks/screen.py: clone of HEAD, two seeds side by side, evaluated; run again with
    a larger budget, each seed resumes from where it stopped."""
    screen = _script("screen")
    args = ["--name", "pm", "--config", "configs/point_mass.yaml", "--seeds", "0", "1",
            "--budget", "600", "--eval-episodes", "5", "--out", str(tmp_path), "--",
            "--set", "train.eval_every=300", "--set", "train.tensorboard=false"]
    first = screen.main(args)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert first["commit"] == head and (tmp_path / f"src-{head[:12]}" / "hacray").is_dir()
    assert [r["seed"] for r in first["runs"]] == [0, 1]
    assert all(600 <= r["env_steps"] < 700 and 0 <= r["success"] <= 1 for r in first["runs"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pm |")]
    assert len(rows) == 2
    args[args.index("600")] = "900"
    second = screen.main(args)
    assert all(900 <= r["env_steps"] < 1000 for r in second["runs"])
    steps = [json.loads(line)["env_steps"] for line in
             (tmp_path / "pm-s0" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[0] < 600  # one run, resumed: not started afresh


def _run_dir(path: Path, eval_episodes: int, successes: list[float]) -> Path:
    """A hand-written run directory: its config's evaluation size and one evaluation per 10k."""
    path.mkdir()
    (path / "config.yaml").write_text(f"train:\n  eval_episodes: {eval_episodes}\n")
    rows = [{"env_steps": 10_000 * (i + 1), "wall_time_s": 100.0 * (i + 1),
             "eval/success_rate": s} for i, s in enumerate(successes)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_learning_summary_takes_each_seeds_first_hit_and_says_how_far_the_others_got(
        tmp_path, capsys, monkeypatch):
    """benchmarks/learning.py --runs: per-seed first evaluation at >= 0.9, their median (a seed
    not there yet counts as later than any), and the seed that is not there named with its
    last evaluation, not called 'never'."""
    learning = _script("learning")
    runs = [_run_dir(tmp_path / "a", 50, [0.1, 0.95, 0.8]),
            _run_dir(tmp_path / "b", 50, [0.0, 0.5, 0.9, 0.7]),
            _run_dir(tmp_path / "c", 50, [0.2, 0.3])]
    monkeypatch.setattr(sys, "argv", ["learning.py", "--runs", *map(str, runs), "--out",
                                      str(tmp_path / "out" / "s"), "--min-eval-episodes", "50"])
    learning.main()
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.endswith("| 30,000 (20,000, 30,000, not by 20,000) |"), row


def test_learning_summary_refuses_runs_evaluated_on_too_few_episodes(
        tmp_path, capsys, monkeypatch):
    learning = _script("learning")
    runs = [_run_dir(tmp_path / "a", 50, [0.9]), _run_dir(tmp_path / "b", 10, [0.9])]
    monkeypatch.setattr(sys, "argv", ["learning.py", "--runs", *map(str, runs), "--out",
                                      str(tmp_path / "out" / "s"), "--min-eval-episodes", "50"])
    with pytest.raises(SystemExit) as exit_:
        learning.main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "evaluated on 10 episodes" in err and str(runs[1]) in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def _segment(path: list[list[float]], goal: list[float]) -> Segment:
    """A level-0 segment that walked ``path`` (its goal space) towards ``goal``."""
    n = len(path) - 1
    return Segment(level=0, obs=np.zeros((n + 1, 4), np.float32),
                   achieved=np.array(path, np.float32), goal=np.array(goal, np.float32),
                   actions=np.zeros((n, 2), np.float32), hindsight_actions=np.zeros((n, 2)),
                   tested=np.zeros(n, bool), missed=np.zeros(n, bool))


@pytest.mark.parametrize("segments,expected", [
    # (path, subgoal) per segment -> (start, subgoal, end, reached) of each kept proposal
    ([([[0, 0], [0.5, 0], [1, 0]], [1, 0])], [([0, 0], [1, 0], [1, 0], True)]),
    ([([[0, 0], [0, 0], [0, 0], [0, 0]], [2, 0])], [([0, 0], [2, 0], [0, 0], False)]),  # missed
    ([([[0, 0], [0, 0]], [0, 0]), ([[0, 0], [0, 1]], [0, 1])],   # a stay, then a proposal
     [([0, 0], [0, 1], [0, 1], True)]),
    ([([[0, 0], [0, 1]], [0, 1]), ([[0, 1], [0, 1.2]], [3, 3])],  # cut off by the episode's end
     [([0, 0], [0, 1], [0, 1], True)]),
    ([([[0, 0], [0, 0.1], [0, 0.2], [0, 0.3]], [3, 3])],          # its whole horizon: missed
     [([0, 0], [3, 3], [0, 0.3], False)]),
    ([([[0, 0, 7, 7], [1, 0, 7, 7]], [1, 0, 7, 7])],              # env-goal context cut off
     [([0, 0], [1, 0], [1, 0], True)]),
])
def test_subgoals_reads_level_0s_segments_as_proposals(segments, expected):
    bench = _script("subgoals")
    rows = bench.proposals(tuple(_segment(p, g) for p, g in segments), dim=2, horizon=3,
                           threshold=0.05)
    assert [r["reached"] for r in rows] == [e[3] for e in expected]
    for row, (start, subgoal, end, _) in zip(rows, expected):
        for key, value in (("start", start), ("subgoal", subgoal), ("end", end)):
            np.testing.assert_allclose(row[key], value, atol=1e-6)


def test_subgoals_counts_proposals_at_the_box_bound_on_the_chosen_coordinates():
    bench = _script("subgoals")
    low, high = np.array([0.0, 0.0]), np.array([10.0, 1.0])
    rows = [{"start": np.zeros(2), "subgoal": np.array(g), "end": np.zeros(2), "reached": r,
             "steps": n}
            for g, r, n in (([0.1, 0.5], True, 1), ([5.0, 0.99], False, 5), ([5.0, 0.5], True, 2),
                            ([9.9, 0.0], False, 5))]
    report = bench.summarise(rows, low, high, coords=[0], horizon=5)
    assert report["at_bound"] == 0.5 and report["at_bound_per_coordinate"] == [0.5, 0.5]
    assert bench.summarise(rows, low, high, coords=[0, 1], horizon=5)["at_bound"] == 0.75
    assert report["reached"] == 0.5 and report["subgoals"] == 4 and report["moved_median"] == 0
    assert report["steps_mean"] == 3.25 and report["full_horizon"] == 0.5


@pytest.mark.parametrize("overrides,low,high", [
    ((), [-1, -1], [1, 1]),
    (("agent.top_action_indices=[1]",), [-1, -1], [1, 1]),   # not the finger-like 3rd coordinate
    (("agent.subgoal_offset=[0.3, 0.3]",), [-1, -1], [1, 1]),  # the box offsets are clipped into
])
def test_subgoals_box_is_the_subgoals_own(overrides, low, high):
    from hacray.blueprint import Blueprint
    from hacray.config import load_config
    from hacray.envs import make_env
    bench = _script("subgoals")
    config = load_config(None, ("env.id=PointMass-v0", *overrides))
    top = Blueprint.of(config, make_env(config.env).spec).spaces[1]
    box = bench.subgoal_box(top)
    np.testing.assert_array_equal(box[0], low)
    np.testing.assert_array_equal(box[1], high)


def test_subgoals_plays_a_saved_hierarchy_and_refuses_a_flat_one(tmp_path, capsys):
    from hacray.cli import main as hacray
    runs = {}
    for name, extra in (("l2", []), ("l1", ["--set", "agent.levels=1",
                                            "--set", "agent.horizons=[30]"])):
        runs[name] = tmp_path / name
        assert hacray(["train", str(POINT_MASS), "--run-dir", str(runs[name]),
                       "--max-env-steps", "300", "--set", "train.eval_every=300",
                       "--set", "train.tensorboard=false", *extra]) == 0
    capsys.readouterr()
    report = _script("subgoals").main([str(runs["l2"]), "--episodes", "3", "--trace", "1",
                                       "--q-bins", "0", "0.5", "9", "--candidates", "64"])
    out = capsys.readouterr().out
    assert out.startswith("episode 0") and report["episodes"] == 3
    assert report["subgoals"] > 0 and 0.0 <= report["at_bound"] <= 1.0
    assert 0.0 <= report["reached"] <= 1.0 and len(report["at_bound_per_coordinate"]) == 2
    q = report["top_q_by_distance"]  # the point mass's box is 2 x 2: every subgoal within 2.83
    assert list(q) == ["0-0.5", "0.5-9"] and np.isfinite(q["0.5-9"])
    assert len(report["top_preact_abs_median"]) == 2
    assert all(0.0 <= g <= 1.0 for g in report["top_tanh_grad_median"])
    with pytest.raises(SystemExit):
        _script("subgoals").main([str(runs["l2"]), "--q-bins", "1", "0"])
    assert "two increasing edges" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _script("subgoals").main([str(runs["l1"])])
    assert exit_.value.code == 2 and "is a flat policy" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _script("subgoals").main([str(runs["l2"]), "--level", "2"])
    assert exit_.value.code == 2 and "--level 2" in capsys.readouterr().err


def test_subgoals_reads_a_3_level_policys_top_level_with_level_2(tmp_path, capsys):
    from hacray.cli import main as hacray
    run = tmp_path / "l3"
    assert hacray(["train", str(POINT_MASS), "--run-dir", str(run), "--max-env-steps", "300",
                   "--set", "train.eval_every=300", "--set", "train.tensorboard=false",
                   "--set", "agent.levels=3", "--set", "agent.horizons=[3,3,4]"]) == 0
    capsys.readouterr()
    reports = {k: _script("subgoals").main([str(run), "--episodes", "3", "--level", str(k)])
               for k in (1, 2)}
    assert reports[1]["level"] == 1 and reports[2]["level"] == 2
    for report in reports.values():
        assert report["subgoals"] > 0 and 0.0 <= report["reached"] <= 1.0
    assert reports[1]["steps_mean"] <= 3 and reports[2]["steps_mean"] <= 3  # the horizon below
    assert reports[1]["subgoals"] > reports[2]["subgoals"]  # several per top-level subgoal


@pytest.mark.parametrize("points,expected", [
    # (env steps, success) of each evaluation, every 20k -> windows of 40k ending at 40k / 80k
    ([(20_000, 0.2), (40_000, 0.4), (60_000, 0.6), (80_000, 0.8)], {40_000: 0.3, 80_000: 0.7}),
    ([(20_900, 0.2), (40_300, 0.4), (61_000, 0.6), (80_700, 1.0)],  # episodes overran the points
     {40_000: 0.3, 80_000: 0.8}),
    ([(20_000, 0.2), (40_000, 0.4), (60_000, 0.6)], {40_000: 0.3, 80_000: None}),  # stopped
    ([], {40_000: None, 80_000: None}),
])
def test_windows_average_the_evaluations_at_their_nominal_points(points, expected):
    bench = _script("windows")
    evals = [{"env_steps": s, "eval/success_rate": v} for s, v in points]
    got = bench.windows(evals, every=20_000, window=40_000, ends=[40_000, 80_000])
    assert got.keys() == expected.keys()
    for end, value in expected.items():
        assert got[end] == (None if value is None else pytest.approx(value)), end


def test_windows_prints_rows_and_medians_and_refuses_a_non_run(tmp_path, capsys):
    bench = _script("windows")
    for name, values in (("a", [0.1, 0.3, 0.5]), ("b", [0.3, 0.5, 0.9])):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text("train:\n  eval_every: 1000\n")
        with open(run / "metrics.jsonl", "w") as f:
            f.write(json.dumps({"env_steps": 500, "train/loss": 1.0}) + "\n")  # not an evaluation
            for k, v in enumerate(values):
                f.write(json.dumps({"env_steps": 1000 * (k + 1) + 40, "eval/success_rate": v,
                                    "eval/level0_subgoal_reach": 0.9}) + "\n")
    lines = bench.main([str(tmp_path / "a"), str(tmp_path / "b"), "--window", "2000",
                        "--ends", "2000", "3000"])
    assert lines[2] == "| a | 3,040 | 0.20 | 0.40 | 3,040 | L0 0.90 |"
    assert lines[3] == "| b | 3,040 | 0.40 | 0.70 | 2,040 | L0 0.90 |"
    assert lines[4].startswith("| median | | 0.30 (0.20-0.40), 2 runs | 0.55 (0.40-0.70), 2 runs")
    with pytest.raises(SystemExit) as exit_:
        bench.main([str(tmp_path)])
    assert exit_.value.code == 2 and "is not a run directory" in capsys.readouterr().err


def test_windows_averages_another_evaluation_figure_when_asked(tmp_path):
    bench = _script("windows")
    run = tmp_path / "pnp"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  eval_every: 1000\n")
    rows = [{"env_steps": 1000, "eval/success_rate": 0.5, "eval/success_rate_table": 0.9},
            {"env_steps": 2000, "eval/success_rate": 0.7, "eval/success_rate_table": 0.7},
            {"env_steps": 3000, "eval/success_rate": 0.9}]   # no table figure: not counted
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = bench.main([str(run), "--window", "2000", "--ends", "2000", "--level", "0.8",
                        "--metric", "eval/success_rate_table"])
    assert lines[2] == "| pnp | 2,000 | 0.80 | 1,000 | - |"
    assert bench.main([str(run), "--window", "2000", "--ends", "2000", "--level", "0.8"])[2] \
        == "| pnp | 3,000 | 0.60 | 3,000 | - |"


@pytest.mark.parametrize("script", ["argmax_top", "subgoals", "success_by_distance",
                                    "object_failures", "top_q"])
def test_a_script_that_reads_a_checkpoint_names_a_missing_one_in_one_line(script, tmp_path):
    missing = tmp_path / "ckpt_000000300000.pt"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"),
                           str(missing)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"benchmarks/{script}.py: no checkpoint found at "
                                        f"{missing}"]
    assert list(tmp_path.iterdir()) == []


def test_top_q_values_each_start_for_its_goal_and_the_moved_goal(tmp_path, capsys):
    """The top critic's value of its own action at each evaluation start, for the episode's
    goal and for it with one coordinate moved; bad --move values are one line."""
    from hacray.cli import main as hacray
    run = tmp_path / "l2"
    assert hacray(["train", str(POINT_MASS), "--run-dir", str(run), "--max-env-steps", "300",
                   "--set", "train.eval_every=300", "--set", "train.tensorboard=false"]) == 0
    capsys.readouterr()
    top_q = _script("top_q")
    report = top_q.main([str(run), "--episodes", "4", "--move", "1=0.25"])
    assert report["episodes_all"] == 4 and np.isfinite(report["q_all"])
    assert np.isfinite(report["q_all_moved"]) and report["q_all_moved"] != report["q_all"]
    assert json.loads(capsys.readouterr().out)["move"] == "1=0.25"
    with pytest.raises(SystemExit, match="--move index 5 is not a coordinate of PointMass-v0"):
        top_q.main([str(run), "--move", "5=0"])
    with pytest.raises(SystemExit, match="--move must look like INDEX=VALUE"):
        top_q.main([str(run), "--move", "y=0"])
    with pytest.raises(SystemExit, match="top_q: --grasped: grasped starts need a Fetch task "
                                         "with an object .*; PointMass-v0 has none"):
        top_q.main([str(run), "--grasped"])


def _ring(next_z, goal_z, reward, cursor, capacity):
    """A replay level's state as snapshots hold it: 6-wide observations (height at 5)."""
    n = len(next_z)
    next_obs = np.zeros((n, 6), np.float32)
    next_obs[:, 5] = next_z
    goal = np.zeros((n, 3), np.float32)
    goal[:, 2] = goal_z
    return {"capacity": capacity, "size": n, "cursor": cursor,
            "data": {"next_obs": next_obs, "goal": goal,
                     "reward": np.asarray(reward, np.float32)}}


def test_replay_lift_reads_a_full_ring_oldest_first():
    lift = _script("replay_lift")
    assert list(lift.oldest_first(_ring([0] * 4, [0] * 4, [0] * 4, 1, 4))) == [1, 2, 3, 0]
    assert list(lift.oldest_first(_ring([0] * 3, [0] * 3, [0] * 3, 3, 8))) == [0, 1, 2]


@pytest.mark.parametrize("next_z,goal_z,reward,expected", [
    # object up after 1 of 4 steps; goals in the air on 2 rows, one met
    ([0.42, 0.50, 0.44, 0.43], [0.6, 0.42, 0.7, 0.42], [0, 0, -1, -1],
     {"rows": 4, "lifted": 0.25, "air_goal": 0.5, "met_of_air_goal": 0.5}),
    # no air goals: none met, not a division by zero
    ([0.42, 0.42], [0.42, 0.42], [0, -1], {"rows": 2, "lifted": 0.0, "air_goal": 0.0,
                                           "met_of_air_goal": 0.0}),
])
def test_replay_lift_counts_lifted_rows_and_met_air_goals(next_z, goal_z, reward, expected):
    lift = _script("replay_lift")
    state = _ring(next_z, goal_z, reward, 0, 100)
    data = state["data"]
    assert lift.lift_stats(data["next_obs"], data["goal"], data["reward"], 5, 2, 0.45) == expected


def test_replay_lift_weighs_the_lifted_share_as_sampling_draws_it():
    lift = _script("replay_lift")
    data = _ring([0.42, 0.50, 0.44, 0.43], [0.4] * 4, [-1] * 4, 0, 4)["data"]
    stats = lift.lift_stats(data["next_obs"], data["goal"], data["reward"], 5, None, 0.45,
                            np.array([1.0, 5.0, 1.0, 1.0], np.float32))
    assert stats == {"rows": 4, "lifted": 0.25, "lifted_sampled": 0.625, "weight_mean": 2.0}


def test_replay_lift_reports_each_level_and_refuses_a_run_without_snapshots(tmp_path, capsys):
    lift = _script("replay_lift")
    top = _ring([0.5] * 5 + [0.4] * 5, [0.6] * 10, [0] * 10, 0, 10)
    low = _ring([0.4] * 10, [0.0] * 10, [-1] * 10, 0, 10)
    low["data"]["goal"][:, 2] = 0.6   # subgoals high up: not air goals, no goal columns
    path = tmp_path / "checkpoints" / "replay_000000001000.pt"
    path.parent.mkdir()
    torch.save({"buffers": [low, top]}, path)
    report = lift.main([str(tmp_path), "--fifths"])
    low_all, top_all = report["levels"][0]["all"], report["levels"][1]["all"]
    assert low_all == {"rows": 10, "lifted": 0.0}
    assert top_all == {"rows": 10, "lifted": 0.5, "air_goal": 1.0, "met_of_air_goal": 1.0}
    assert [f["lifted"] for f in report["levels"][1]["fifths"]] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert json.loads(capsys.readouterr().out)["snapshot"] == path.name
    with pytest.raises(SystemExit, match="no replay snapshot in"):
        lift.main([str(tmp_path / "nothing")])


@pytest.mark.parametrize("value,expected", [
    (0.1, "<0.15"), (0.15, "0.15-0.3"), (0.44, "0.3-0.45"), (0.6, ">=0.6"), (0.9, ">=0.6")])
def test_object_failures_names_the_goal_distance_band(value, expected):
    assert _script("object_failures").band_name(value, [0.15, 0.3, 0.45, 0.6]) == expected


def test_object_failures_splits_outcomes_by_goal_distance_in_band_order():
    got = _script("object_failures").outcomes_by_band(
        [0.7, 0.2, 0.25, 0.65, 0.1], ["short", "success", "short", "short", "success"],
        [0.15, 0.6], ("success", "short"))
    assert list(got) == ["<0.15", "0.15-0.6", ">=0.6"]
    assert got["0.15-0.6"] == {"n": 2, "success": 0.5, "short": 0.5}
    assert got[">=0.6"] == {"n": 2, "success": 0.0, "short": 1.0}


def test_object_failures_takes_the_top_speed_in_the_table_plane():
    path = np.array([[0, 0, 0.42], [0.03, 0.04, 0.42], [0.04, 0.04, 0.30], [0.04, 0.04, 0.30]])
    assert _script("object_failures").peak_speed(path) == pytest.approx(0.05)  # not the fall


@pytest.mark.parametrize("gripper,phase,expected", [
    ([1.2, 0.75, 0.60], "above", [-1.0, 0.0, -1.0]),     # far off: full speed, clipped
    ([1.14, 0.75, 0.485], "down", [0.0, 0.0, -1.0]),     # above the strike point: down
    ([1.14, 0.75, 0.425], "strike", [1.0, 0.0, 0.0]),    # there: along the puck -> goal line
])
def test_slide_reach_strikes_from_behind_the_puck_along_the_line_to_the_goal(
        gripper, phase, expected):
    reach = _script("slide_reach")
    striker = reach.Striker(np.array([1.2, 0.75, 0.425]), np.array([1.6, 0.75, 0.425]),
                            back=0.06, steps=2)
    if phase != "above":  # the waypoints before it were reached
        striker.phase = "down"
    obs = np.zeros(25, np.float32)
    obs[:3] = gripper
    np.testing.assert_allclose(striker.act(obs)[:3], expected, atol=1e-6)
    assert striker.phase == phase


def test_slide_reach_holds_still_after_its_strike_steps():
    reach = _script("slide_reach")
    striker = reach.Striker(np.array([1.2, 0.75, 0.425]), np.array([1.2, 1.05, 0.425]),
                            back=0.06, steps=2)
    striker.phase = "strike"
    obs = np.zeros(25, np.float32)
    moves = [striker.act(obs)[:3].tolist() for _ in range(3)]
    assert moves == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


@pytest.mark.mujoco
def test_slide_reach_sends_the_puck_further_with_a_full_speed_strike(capsys):
    """Two episodes: a strike held for 2 steps carries the puck further than one of 1 step."""
    report = _script("slide_reach").main(["--episodes", "2", "--steps", "1", "2",
                                          "--back", "0.06"])
    assert [r["struck"] for r in report] == [1.0, 1.0]
    assert report[1]["travel_median"] > report[0]["travel_median"] > 0.05
    assert len(capsys.readouterr().out.splitlines()) == 2
