"""Videos of a saved policy's evaluation episodes, with every level's current goal drawn.

``record_episodes`` plays the same deterministic episodes as ``hacray evaluate`` (the run's
fixed evaluation seeds) and writes one frame per env step, so a video of N episodes has
sum(episode steps) frames. Fetch tasks render off-screen with MuJoCo: on a machine without a
display set ``MUJOCO_GL=egl`` (the default chosen here on Linux) or ``MUJOCO_GL=osmesa`` (needs
``apt-get install libosmesa6``). PointMass-v0 is drawn with Pillow alone.

Formats: ``.gif`` (Pillow) and ``.mp4`` (needs the imageio and imageio-ffmpeg packages).
"""
from __future__ import annotations

import importlib.util
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Protocol, Sequence

import numpy as np
from PIL import Image

from hacray import seeding
from hacray.algo.rollout import Policy, run_episode
from hacray.config import Config
from hacray.envs import GoalEnv
from hacray.evaluate import LoadedPolicy, load_policy
from hacray.render import (FrameSizeError, NoFramesError, Painter, default_gl_backend,
                           painter_for)
from hacray.types import EpisodeStats


class VideoError(ValueError):
    """The video cannot be made as asked; the message fits on one line and says what to do."""


class VideoSummary(NamedTuple):
    """What was written: the file, its frame count, and each episode's length and success."""

    path: Path
    frames: int
    episode_steps: tuple[int, ...]
    success: tuple[float, ...]


class FrameWriter(Protocol):
    def append(self, image: Image.Image) -> None: ...

    def close(self) -> None: ...


class GifWriter:
    """Pillow writes a GIF in one go, so frames wait here palettised (one byte per pixel)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.duration_ms = path, max(20, round(1000 / fps))
        self.frames: list[Image.Image] = []

    def append(self, image: Image.Image) -> None:
        self.frames.append(image.convert("P", palette=Image.Palette.ADAPTIVE))

    def close(self) -> None:
        if not self.frames:  # only when recording failed; nothing to write
            return
        self.frames[0].save(self.path, format="GIF", save_all=True,
                            append_images=self.frames[1:], duration=self.duration_ms, loop=0)


class Mp4Writer:
    """H.264 through imageio's ffmpeg plugin, streamed frame by frame."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio
        # even sizes suffice for yuv420p; imageio would otherwise rescale to multiples of 16
        self.writer = imageio.get_writer(path, format="FFMPEG", fps=fps, macro_block_size=2)

    def append(self, image: Image.Image) -> None:
        self.writer.append_data(np.asarray(image.convert("RGB")))

    def close(self) -> None:
        self.writer.close()


def check_output(path: Path) -> type[GifWriter] | type[Mp4Writer]:
    """The writer for ``path``'s suffix; raises VideoError before any work if it cannot be made."""
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return GifWriter
    if suffix == ".mp4":
        missing = [pkg for pkg, module in (("imageio", "imageio"), ("imageio-ffmpeg",
                   "imageio_ffmpeg")) if importlib.util.find_spec(module) is None]
        if missing:
            raise VideoError(f"writing .mp4 needs the Python package(s) {', '.join(missing)} "
                             f"(pip install {' '.join(missing)}); or write a .gif")
        return Mp4Writer
    raise VideoError(f"cannot write video {path}: use a .gif or .mp4 file name")


class FrameSink:
    """``run_episode``'s ``on_step`` hook: paints every step and passes the frame on."""

    def __init__(self, painter: Painter, writer: FrameWriter, episodes: int):
        self.painter, self.writer, self.episodes = painter, writer, episodes
        self.episode, self.step, self.frames = 0, 0, 0

    def start(self, episode: int) -> None:
        self.episode, self.step = episode, 0
        self.painter.reset()

    def __call__(self, obs: np.ndarray, goals: tuple[np.ndarray, ...]) -> None:
        self.step += 1
        label = f"episode {self.episode + 1}/{self.episodes}  step {self.step}"
        self.writer.append(self.painter.frame(obs, goals, label))
        self.frames += 1


def record_episodes(checkpoint_or_run_dir: str | Path, out_path: str | Path, episodes: int, *,
                    width: int = 320, height: int = 240, fps: float = 20.0) -> VideoSummary:
    """Render ``episodes`` deterministic evaluation episodes of a checkpoint (or a run directory's
    best) to ``out_path`` (.gif or .mp4). Frames are ``width`` x ``height`` for MuJoCo (at most
    480 x 480 for Fetch) and ``height`` x ``height`` for PointMass-v0."""
    out_path = Path(out_path)
    writer_type = check_output(out_path)
    if episodes < 1:
        raise VideoError("--episodes must be >= 1 to record a video")
    default_gl_backend()
    with ExitStack() as stack:
        loaded = load_policy(Path(checkpoint_or_run_dir), render=True)
        stack.callback(loaded.env.close)
        painter = _open_painter(loaded, width, height)
        stack.callback(painter.close)
        with _written_atomically(out_path) as partial:
            writer = writer_type(partial, fps)
            sink = FrameSink(painter, writer, episodes)
            try:
                stats = play(loaded, episodes, sink)
            finally:
                writer.close()
    return VideoSummary(out_path, sink.frames, tuple(s.env_steps for s in stats),
                        tuple(s.success for s in stats))


def play(loaded: LoadedPolicy, episodes: int, sink: FrameSink) -> Sequence[EpisodeStats]:
    """The evaluation episodes of ``hacray.evaluation.evaluate`` (same seeds), each step to sink."""
    config = loaded.config
    rng = seeding.rng(config.train.seed, "eval")  # unused without exploration; kept explicit
    stats = []
    for index, seed in enumerate(seeding.eval_env_seeds(config.train.seed, episodes)):
        sink.start(index)
        stats.append(run_episode(loaded.env, loaded.policy, config.agent, seed, rng,
                                 explore=False, on_step=sink).stats)
    return stats


def episode_frames(env: GoalEnv, policy: Policy, config: Config, *, width: int = 320,
                   height: int = 240) -> list[Image.Image]:
    """The first evaluation episode of a run, painted frame by frame (for TensorBoard)."""
    painter = painter_for(env, width, height)
    frames: list[Image.Image] = []
    try:
        painter.reset()
        seed = seeding.eval_env_seeds(config.train.seed, 1)[0]

        def paint(obs: np.ndarray, goals: tuple[np.ndarray, ...]) -> None:
            frames.append(painter.frame(obs, goals, f"step {len(frames) + 1}"))
        run_episode(env, policy, config.agent, seed, seeding.rng(config.train.seed, "eval"),
                    explore=False, on_step=paint)
    finally:
        painter.close()
    return frames


def _open_painter(loaded: LoadedPolicy, width: int, height: int) -> Painter:
    try:
        return painter_for(loaded.env, width, height)
    except (FrameSizeError, NoFramesError) as err:
        raise VideoError(str(err)) from None
    except Exception as err:  # GL back ends fail in many ways: missing library, no device, ...
        backend = os.environ.get("MUJOCO_GL", "glfw")
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VideoError(f"MuJoCo cannot render {loaded.config.env.id} off-screen with "
                         f"MUJOCO_GL={backend} ({reason}); try MUJOCO_GL=egl, or "
                         "MUJOCO_GL=osmesa after apt-get install libosmesa6") from None


@contextmanager
def _written_atomically(path: Path) -> Iterator[Path]:
    """Yield a hidden partial file next to ``path``; renamed onto it only if all went well."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
