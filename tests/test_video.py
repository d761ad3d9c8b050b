"""Videos of evaluation episodes (``hacray evaluate --video``) and the rollout hook behind them.

PointMass-v0 is drawn with Pillow: no MuJoCo, no OpenGL. The ``mujoco`` tests render FetchReach
off-screen; conftest.py sets MUJOCO_GL=osmesa (``apt-get install libosmesa6``).
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageSequence

from hacray.algo.rollout import run_episode
from hacray.blueprint import Blueprint
from hacray.cli import main
from hacray.config import load_config
from hacray.envs import make_env
from hacray.render import SUBGOAL_COLOURS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK = ["--set", "train.eval_every=300", "--set", "train.eval_episodes=2",
         "--set", "train.tensorboard=false"]


def train(run_dir: Path, config: str, steps: int, *extra: str) -> Path:
    argv = ["train", str(CONFIGS / config), "--run-dir", str(run_dir),
            "--max-env-steps", str(steps), *QUICK, *extra]
    assert main(argv) == 0
    return run_dir


def evaluate_with_video(capsys, run_dir: Path, video: Path, episodes: int) -> dict:
    code = main(["evaluate", str(run_dir), "--episodes", str(episodes), "--json",
                 "--video", str(video)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def frames(path: Path) -> list[Image.Image]:
    return [f.convert("RGB") for f in ImageSequence.Iterator(Image.open(path))]


def changed_pixels(a: Image.Image, b: Image.Image) -> int:
    return int(np.count_nonzero(np.asarray(ImageChops.difference(a, b)).sum(axis=2)))


def near_colour(image: Image.Image, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    pixels = np.asarray(image).astype(int)
    return int(np.count_nonzero(np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance))


@pytest.fixture(scope="module")
def point_mass_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("pm") / "run", "point_mass.yaml", 600)


def test_point_mass_gif_has_one_frame_per_env_step(point_mass_run, tmp_path, capsys):
    video = tmp_path / "videos" / "pm.gif"
    result = evaluate_with_video(capsys, point_mass_run, video, episodes=2)
    gif = frames(video)
    steps = round(result["eval/episode_steps"] * 2)  # the video plays the evaluation episodes
    assert result["video_frames"] == len(gif) == steps
    assert changed_pixels(gif[0], gif[-1]) > 100
    orange = tuple(int(255 * c) for c in SUBGOAL_COLOURS[0][:3])
    assert all(near_colour(f, orange) > 20 for f in gif[::7]), "L1 subgoal marker missing"
    assert near_colour(gif[0], (230, 25, 25)) > 20, "env goal marker missing"
    assert not list(video.parent.glob(".*partial*"))


@pytest.mark.parametrize("name,message", [
    ("out.avi", "use a .gif or .mp4 file name"),
    ("out.mp4", "imageio-ffmpeg"),
])
def test_unwritable_video_is_one_line_exit_2_before_any_work(point_mass_run, tmp_path, capsys,
                                                             monkeypatch, name, message):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod == "imageio_ffmpeg" else real(mod, *a))
    code = main(["evaluate", str(point_mass_run), "--episodes", "1", "--video",
                 str(tmp_path / name)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("hacray: error:") and err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())


def test_on_step_sees_every_step_with_each_levels_current_goal():
    config = load_config(CONFIGS / "point_mass.yaml")
    env = make_env(config.env)
    blueprint = Blueprint.of(config, env.spec)
    policy = blueprint.policy()
    policy.set_weights(blueprint.learner().weights())
    seen = []
    hook = lambda obs, goals: seen.append((obs.copy(), [g.copy() for g in goals]))  # noqa: E731
    runs = [run_episode(env, policy, config.agent, 7, np.random.default_rng(3), explore=True,
                        on_step=on_step) for on_step in (hook, None)]
    with_hook, without = runs
    assert len(seen) == with_hook.stats.env_steps
    bottom = [s for s in with_hook.segments[0] for _ in range(len(s.actions))]
    for (obs, goals), segment in zip(seen, bottom):
        assert np.array_equal(goals[0], segment.goal)  # the subgoal level 0 was pursuing
    top_goal = with_hook.segments[-1][0].goal
    assert all(np.array_equal(goals[-1], top_goal) for _, goals in seen)
    assert np.array_equal(seen[-1][0], with_hook.segments[0][-1].obs[-1])
    with np.printoptions(threshold=sys.maxsize):
        assert repr(with_hook) == repr(without)  # the hook changes nothing


@pytest.mark.mujoco
def test_fetch_reach_gif_of_a_trained_policy(tmp_path, capsys):
    run_dir = train(tmp_path / "run", "fetch_reach_l1.yaml", 1500)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["eval/success_rate"] >= 0.5, "the policy in the video should be trained"
    video = tmp_path / "reach.gif"
    result = evaluate_with_video(capsys, run_dir, video, episodes=1)
    gif = frames(video)
    assert result["video_frames"] == len(gif) == 50  # one level: all 50 steps, one frame each
    assert changed_pixels(gif[0], gif[-1]) > 100
    assert near_colour(gif[0], (230, 25, 25), tolerance=60) > 10, "env goal marker missing"


@pytest.mark.mujoco
def test_fetch_markers_are_drawn_where_the_goals_are():
    from hacray.config import EnvConfig
    from hacray.render import MujocoPainter
    env = make_env(EnvConfig(id="FetchReach-v4"))
    obs, _, goal = env.reset(0)
    painter = MujocoPainter(env, 320, 240)
    try:
        subgoal = obs[:3] + np.array([0.0, -0.1, 0.05], np.float32)
        with_goals = painter.frame(obs, (subgoal, goal), "")
        far_away = np.full(3, 100.0, np.float32)  # both markers out of view
        without = painter.frame(obs, (far_away, far_away), "")
    finally:
        painter.close()
        env.close()
    orange = tuple(int(255 * c) for c in SUBGOAL_COLOURS[0][:3])
    assert near_colour(with_goals, orange, tolerance=70) > near_colour(without, orange, 70) + 20
    assert changed_pixels(with_goals, without) > 200


def tensorboard_images(run_dir: Path) -> list[tuple[str, bytes]]:
    """(tag, encoded image) of every image summary in a run's TensorBoard event files."""
    import struct

    from tensorboardX.proto.event_pb2 import Event
    found = []
    for path in (run_dir / "tb").glob("events.*"):
        data, offset = path.read_bytes(), 0
        while offset < len(data):  # TFRecord: length, crc, payload, crc
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            found += [(v.tag, v.image.encoded_image_string) for v in event.summary.value
                      if v.HasField("image")]
    return found


def test_periodic_evaluation_videos_reach_tensorboard(tmp_path):
    run_dir = train(tmp_path / "run", "point_mass.yaml", 600, "--set", "train.video_every=1",
                    "--set", "train.tensorboard=true")
    images = tensorboard_images(run_dir)
    assert [tag for tag, _ in images] == ["eval/video", "eval/video"]  # one per evaluation
    gif = Image.open(io.BytesIO(images[0][1]))
    assert gif.format == "GIF" and gif.n_frames == 30  # one frame per env step


@pytest.mark.ray
def test_distributed_runs_put_evaluation_videos_in_tensorboard_too(tmp_path):
    run_dir = train(tmp_path / "run", "point_mass.yaml", 600, "--workers", "2",
                    "--set", "train.video_every=2", "--set", "train.tensorboard=true")
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    images = tensorboard_images(run_dir)
    assert len(images) == (len(records) + 1) // 2 and images[0][0] == "eval/video"
    assert Image.open(io.BytesIO(images[0][1])).n_frames == 30


@pytest.mark.mujoco
def test_maze_frames_are_the_envs_own_with_goal_markers():
    from hacray.render import GymPainter
    env = make_env(load_config(CONFIGS / "point_maze_large_l2.yaml").env, render=True)
    obs, _, goal = env.reset(0)
    painter = GymPainter(env)
    try:
        subgoal = np.array([1.0, 0.0], np.float32)
        with_goals = painter.frame(obs, (subgoal, goal), "")
        far_away = np.full(2, 100.0, np.float32)
        without = painter.frame(obs, (far_away, far_away), "")
    finally:
        painter.close()
        env.close()
    assert with_goals.size == (480, 480)  # the env's own frame size
    orange = tuple(int(255 * c) for c in SUBGOAL_COLOURS[0][:3])
    assert near_colour(with_goals, orange, tolerance=70) > near_colour(without, orange, 70) + 20
    assert changed_pixels(with_goals, without) > 200


def make_frameless_point_goal():
    """The example env, from a factory that takes no render_mode: it renders no frames."""
    import importlib.util
    path = CONFIGS.parent / "examples" / "point_goal_env.py"
    spec = importlib.util.spec_from_file_location("point_goal_env_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PointGoalEnv()


def test_an_env_that_renders_no_frames_is_one_line_exit_2(tmp_path, capsys):
    run_dir = train(tmp_path / "run", "../examples/point_goal.yaml", 300, "--set",
                    "env.entry_point=test_video:make_frameless_point_goal", "--set", "env.kwargs={}")
    code = main(["evaluate", str(run_dir), "--video", str(tmp_path / "v.gif")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1
    assert "PointGoal renders no rgb_array frames: its env must accept render_mode" in err, err
    assert not (tmp_path / "v.gif").exists()
