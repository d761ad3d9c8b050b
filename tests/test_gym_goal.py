"""Any gymnasium goal env: the generic adapter, entry points, bad input (component tier), and
the shipped example env trained end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from hacray.cli import main
from hacray.config import ConfigError, load_config
from hacray.envs import make_env
from hacray.envs.gym_goal import GymGoalEnv, load_entry_point

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "point_goal.yaml"
HERE = "test_gym_goal"  # entry points into this module (pytest puts tests/ on sys.path)


class ShiftedBoxEnv(gym.Env):
    """A goal env with an action box of [0, 4]^2 and an unbounded observation: the adapter must
    scale [-1, 1] actions onto the box, and cannot guess subgoal bounds."""

    def __init__(self, achieved_offset: float = 0.0):
        box = spaces.Box(-np.inf, np.inf, (3,), np.float64)
        goal = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.observation_space = spaces.Dict(
            {"observation": box, "achieved_goal": goal, "desired_goal": goal})
        self.action_space = spaces.Box(0.0, 4.0, (2,), np.float32)
        self.offset, self.last_action, self.state = achieved_offset, None, np.zeros(3)

    def _obs(self):
        return {"observation": self.state.copy(), "achieved_goal": self.state[:2] + self.offset,
                "desired_goal": np.array([1.0, 1.0])}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1, 1, 3)
        return self._obs(), {}

    def step(self, action):
        self.last_action = np.asarray(action)
        self.state = self.state + 0.1
        return self._obs(), 0.0, False, False, {}  # no success flag: the adapter measures


def make_shifted(achieved_offset: float = 0.0):
    return ShiftedBoxEnv(achieved_offset)


def make_not_an_env():
    return [1, 2, 3]


def make_cartpole():
    return gym.make("CartPole-v1")


def config(*overrides):
    return load_config(None, ("agent.levels=1", "agent.horizons=[30]") + overrides)


def shifted(*overrides):
    return config(f"env.entry_point={HERE}:make_shifted", "env.goal_threshold=0.2",
                  "env.max_episode_steps=4", *overrides)


def test_example_env_spec_seeding_and_success(monkeypatch):
    monkeypatch.chdir(ROOT)
    env = make_env(load_config(EXAMPLE).env)
    assert isinstance(env, GymGoalEnv)
    spec = env.spec
    assert (spec.obs_dim, spec.goal_dim, spec.action_dim, spec.max_episode_steps) == (2, 2, 2, 30)
    assert spec.goal_threshold == 0.1  # the env's distance_threshold
    # a bounded observation box is the default subgoal space
    assert spec.subgoal_indices == (0, 1) and spec.subgoal_low.tolist() == [-1, -1]
    first = env.reset(seed=7)
    again = env.reset(seed=7)
    other = env.reset(seed=8)
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(first, again))
    assert not np.array_equal(first[2], other[2])
    obs, achieved, goal = env.reset(seed=7)
    success = False
    for t in range(30):
        toward_goal = np.clip((goal - obs) / 0.15, -1, 1).astype(np.float32)
        obs, achieved, success, ended = env.step(toward_goal)
        if success:
            break
    assert success and not ended  # success from the env's info; the episode ends at 30 steps
    env.close()


def test_actions_scaled_to_the_env_box_success_measured_and_time_limit():
    env = make_env(shifted().env)
    env.reset(seed=0)
    env.step(np.array([-1.0, 1.0], np.float32))
    assert env.env.unwrapped.last_action.tolist() == [0.0, 4.0]
    env.step(np.array([0.0, 0.5], np.float32))
    assert env.env.unwrapped.last_action.tolist() == [2.0, 3.0]
    ends = [env.step(np.zeros(2, np.float32))[3] for _ in range(2)]
    assert ends == [False, True]  # env.max_episode_steps: 4
    # no success flag in info: the achieved goal within goal_threshold of the desired goal
    unwrapped = env.env.unwrapped
    unwrapped.state = np.array([0.95, 0.95, 0.0]) - 0.1
    assert env.step(np.zeros(2, np.float32))[2] is True
    unwrapped.state = np.array([0.5, 0.5, 0.0])
    assert env.step(np.zeros(2, np.float32))[2] is False


def test_observe_achieved_goal_appends_it_for_subgoals():
    env = make_env(shifted("env.observe_achieved_goal=true", "env.kwargs={achieved_offset: 10}",
                           "env.subgoal_indices=[3, 4]", "env.subgoal_low=[-1, -1]",
                           "env.subgoal_high=[1, 1]").env)
    obs, achieved, _ = env.reset(seed=0)
    assert env.spec.obs_dim == 5 and obs.shape == (5,)
    assert np.array_equal(obs[3:], achieved) and achieved[0] > 9


@pytest.mark.parametrize("overrides,message", [
    ((f"env.entry_point={HERE}:make_not_an_env",), "returned a list, not a gymnasium env"),
    ((f"env.entry_point={HERE}:make_cartpole",), "is not goal-conditioned"),
    ((f"env.entry_point={HERE}:no_such_factory",), "has no attribute 'no_such_factory'"),
    (("env.entry_point=no_such_package.envs:make",),
     "does not import (ModuleNotFoundError: No module named 'no_such_package')"),
    ((f"env.entry_point={HERE}:make_shifted", "env.kwargs={colour: 1}"),
     "failed to make the env (TypeError"),
    ((f"env.entry_point={HERE}:make_shifted", "env.max_episode_steps=4"),
     "env.goal_threshold is needed"),
    ((f"env.entry_point={HERE}:make_shifted", "env.goal_threshold=0.2"),
     "env.max_episode_steps is needed"),
])
def test_bad_entry_points_name_the_problem(overrides, message):
    with pytest.raises(ConfigError, match="^config: ") as err:
        make_env(config(*overrides).env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_entry_point_module_missing_dependency_is_reported_as_such(tmp_path, monkeypatch):
    (tmp_path / "needs_more.py").write_text("import not_installed_anywhere\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(ConfigError, match="No module named 'not_installed_anywhere'"):
        load_entry_point("needs_more:make")


@pytest.mark.parametrize("extra,message", [
    (["--set", "env.entry_point=null", "--set", "env.id=CartPole-v1"], "is not goal-conditioned"),
    (["--set", f"env.entry_point={HERE}:make_not_an_env"], "not a gymnasium env"),
    (["--set", "env.entry_point=nowhere_at_all:make"], "does not import"),
    (["--set", "env.entry_point=nowhere"], "must look like 'package.module:factory'"),
    (["--set", f"env.entry_point={HERE}:make_shifted", "--set", "env.goal_threshold=0.2",
      "--set", "env.max_episode_steps=4"], "agent.levels 2 needs a subgoal space"),
    (["--set", f"env.entry_point={HERE}:make_shifted", "--set", "env.goal_threshold=0.2",
      "--set", "env.max_episode_steps=4", "--set", "env.subgoal_indices=[0, 1]"],
     "env.subgoal_low and env.subgoal_high are needed: observation entries [0, 1]"),
    (["--set", "env.subgoal_indices=[0, 5]"], "env.subgoal_indices must lie in [0, 2)"),
])
def test_bad_env_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                             extra, message):
    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / "run"
    # env.kwargs={}: the example's factory arguments are not every entry point's
    code = main(["train", str(EXAMPLE), "--run-dir", str(run_dir), "--set", "env.kwargs={}", *extra])
    _, err = capsys.readouterr()
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and err.startswith("hacray: error:")
    assert not run_dir.exists()


def console(tmp_path):
    """Run ``hacray ARGS`` from the repository root as the console script does: its own folder,
    not the working directory, on sys.path; the example module comes from the working directory."""
    launcher = tmp_path / "bin" / "hacray"
    launcher.parent.mkdir(exist_ok=True)
    launcher.write_text("import sys\nfrom hacray.cli import main\nsys.exit(main())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def hacray_run(*argv):
        done = subprocess.run([sys.executable, str(launcher), *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
    return hacray_run


@pytest.mark.training
def test_example_trains_end_to_end_resumes_evaluates_and_records_video(tmp_path):
    """The README's lines, run as a user would from the repository root."""
    run_dir = tmp_path / "run"
    hacray_run = console(tmp_path)
    hacray_run("train", str(EXAMPLE), "--run-dir", str(run_dir), "--max-env-steps", "6000",
               "--set", "train.video_every=1")
    hacray_run("train", str(EXAMPLE), "--run-dir", str(run_dir), "--resume",
               "--max-env-steps", "9000", "--set", "train.video_every=1")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["env_steps"] >= 9000 and records[0]["env_steps"] < 1000
    best = max(r["eval/success_rate"] for r in records)
    assert best >= 0.8, [r["eval/success_rate"] for r in records]  # it learns the task
    out = json.loads(hacray_run("evaluate", str(run_dir), "--episodes", "4", "--json",
                                "--video", str(tmp_path / "v.gif")))
    assert out["video_frames"] >= 4 and (tmp_path / "v.gif").stat().st_size > 0


@pytest.mark.ray
def test_ray_workers_import_the_entry_point_from_the_working_directory(tmp_path):
    run_dir = tmp_path / "run"
    out = console(tmp_path)("train", str(EXAMPLE), "--run-dir", str(run_dir), "--workers", "1",
                            "--max-env-steps", "1500", "--set", "train.eval_every=500",
                            "--set", "train.video_every=0")
    assert json.loads(out.strip().splitlines()[-1])["env_steps"] >= 1500


@pytest.mark.ray
def test_a_sweep_trains_the_entry_point_env_in_its_trials(tmp_path):
    out = tmp_path / "sweep"
    console(tmp_path)("tune", str(EXAMPLE), "--grid", "learner.actor_lr=1e-3,5e-4", "--seeds", "1",
                      "--max-env-steps", "600", "--set", "train.eval_every=300", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["failed"] and len(summary["rows"]) == 2
    assert all(row["trials"][0]["env_steps"] >= 600 for row in summary["rows"])
    assert len(list(out.glob("g*-s0/metrics.jsonl"))) == 2
