"""Frames of an episode with the goal of every level drawn on top (used by ``hacray.video``).

A painter turns one step, ``(obs, goals)`` as ``run_episode``'s ``on_step`` sees it, into a
Pillow image. ``goals[i]`` is the goal level i pursues: ``goals[-1]`` is the env goal (red),
every lower one the subgoal proposed by level i+1 (one colour per level, see ``goal_colour``).

- ``MujocoPainter`` renders Fetch tasks off-screen with ``mujoco.Renderer`` and adds marker
  geoms per goal to the scene: a sphere for a gripper position, a cube for an object position,
  each a small solid core inside a translucent region as large as the level's threshold.
- ``PointMassPainter`` draws PointMass-v0 in 2-D with Pillow (no MuJoCo, no OpenGL).
- ``GymPainter`` takes any other env's own rgb_array frames (``env.render()``, at the env's own
  size); on a gymnasium MuJoCo env (mazes, ...) it adds a marker per goal of 2 or 3 coordinates
  (x, y[, z]; a 2-D goal at ``MARKER_Z``), since those are positions there.
"""
from __future__ import annotations

import os
import sys
from typing import Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw

from hacray.envs import EnvSpec, GoalEnv

RGBA = tuple[float, float, float, float]
ENV_GOAL_COLOUR: RGBA = (0.9, 0.1, 0.1, 1.0)
SUBGOAL_COLOURS: tuple[RGBA, ...] = (
    (1.0, 0.55, 0.0, 1.0),   # goals of level 0, proposed by level 1: orange
    (0.75, 0.1, 0.95, 1.0),  # proposed by level 2: purple
    (0.0, 0.75, 0.95, 1.0),  # proposed by level 3: cyan
)
REGION_ALPHA = 0.25  # the translucent threshold region around each goal's solid core
CORE_SIZE = 0.012    # metres: half-size of the solid marker at the goal itself
# Fetch observation slots that hold world positions: obs[0:3] gripper, obs[3:6] object.
GRIPPER_SLOT, OBJECT_SLOT = (0, 1, 2), (3, 4, 5)
# gymnasium-robotics' own Fetch camera, moved closer to the table.
FETCH_CAMERA = {"lookat": (1.3, 0.75, 0.5), "distance": 1.3, "azimuth": 150.0, "elevation": -25.0}


MARKER_Z = 0.2  # metres: height of a 2-D goal's marker (half a gymnasium-robotics maze wall)


class FrameSizeError(ValueError):
    """Frames larger than the MuJoCo model's off-screen buffer."""


class NoFramesError(ValueError):
    """The env renders no rgb_array frames."""


class Painter(Protocol):
    def reset(self) -> None: ...

    def frame(self, obs: np.ndarray, goals: Sequence[np.ndarray], label: str) -> Image.Image: ...

    def close(self) -> None: ...


def goal_colour(level: int, levels: int) -> RGBA:
    """Colour of the goal that level ``level`` pursues in a hierarchy of ``levels`` levels."""
    if level == levels - 1:
        return ENV_GOAL_COLOUR
    return SUBGOAL_COLOURS[level % len(SUBGOAL_COLOURS)]


def goal_name(level: int, levels: int) -> str:
    return "env goal" if level == levels - 1 else f"L{level + 1} subgoal"


def draw_legend(image: Image.Image, label: str, levels: int) -> None:
    """Write ``label`` and one coloured line per level's goal in the top-left corner."""
    draw = ImageDraw.Draw(image)
    draw.text((6, 4), label, fill=(0, 0, 0))
    for row, level in enumerate(reversed(range(levels))):
        r, g, b, _ = goal_colour(level, levels)
        y = 18 + 13 * row
        draw.rectangle((6, y + 2, 14, y + 10), fill=(int(255 * r), int(255 * g), int(255 * b)))
        draw.text((19, y), goal_name(level, levels), fill=(0, 0, 0))


def _rgb(rgba: RGBA) -> tuple[int, int, int]:
    return tuple(int(255 * c) for c in rgba[:3])  # type: ignore[return-value]


class PointMassPainter:
    """PointMass-v0 from above: trail, mass (black), goal regions drawn to the threshold."""

    def __init__(self, spec: EnvSpec, size: int):
        self.spec, self.size = spec, size
        self.trail: list[tuple[float, float]] = []

    def _pixel(self, xy: np.ndarray) -> tuple[float, float]:
        """[-1, 1]^2 (y up) -> pixels, with a 5 % margin."""
        scale = 0.45 * self.size
        return (self.size / 2 + scale * float(xy[0]), self.size / 2 - scale * float(xy[1]))

    def reset(self) -> None:
        self.trail = []

    def frame(self, obs: np.ndarray, goals: Sequence[np.ndarray], label: str) -> Image.Image:
        image = Image.new("RGB", (self.size, self.size), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        draw.rectangle((*self._pixel(np.array([-1, 1])), *self._pixel(np.array([1, -1]))),
                       outline=(160, 160, 160))
        self.trail.append(self._pixel(obs[:2]))
        if len(self.trail) > 1:
            draw.line(self.trail, fill=(150, 150, 150), width=2)
        for level in reversed(range(len(goals))):  # the env goal first, the newest subgoal on top
            top = level == len(goals) - 1
            radius = self.spec.goal_threshold if top else self.spec.subgoal_threshold
            self._disc(draw, goals[level][:2], radius, _rgb(goal_colour(level, len(goals))))
        self._disc(draw, obs[:2], 0.03, (0, 0, 0))
        draw_legend(image, label, len(goals))
        return image

    def _disc(self, draw: ImageDraw.ImageDraw, xy: np.ndarray, radius: float,
              colour: tuple[int, int, int]) -> None:
        x, y = self._pixel(xy)
        r = max(0.45 * self.size * radius, 2.0)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0))

    def close(self) -> None:
        pass


class MujocoPainter:
    """Off-screen MuJoCo frames of a Fetch env, with a marker geom per level's goal."""

    def __init__(self, env: GoalEnv, width: int, height: int):
        import mujoco
        self.mujoco = mujoco
        unwrapped = env.env.unwrapped  # type: ignore[attr-defined]  # FetchEnv's gymnasium env
        self.data, self.spec = unwrapped.data, env.spec
        buffer = unwrapped.model.vis.global_
        if width > buffer.offwidth or height > buffer.offheight:
            raise FrameSizeError(f"{env.spec.id} renders frames of at most {buffer.offwidth}x"
                                 f"{buffer.offheight} pixels, not {width}x{height}")
        self.renderer = mujoco.Renderer(unwrapped.model, height, width)
        self.camera = mujoco.MjvCamera()
        self.camera.lookat[:] = FETCH_CAMERA["lookat"]
        for key in ("distance", "azimuth", "elevation"):
            setattr(self.camera, key, FETCH_CAMERA[key])
        self.option = mujoco.MjvOption()
        self.option.sitegroup[:] = 0  # the env's own target site only moves in env.render()

    def reset(self) -> None:
        pass

    def frame(self, obs: np.ndarray, goals: Sequence[np.ndarray], label: str) -> Image.Image:
        self.renderer.update_scene(self.data, self.camera, self.option)
        for level, goal in enumerate(goals):
            top = level == len(goals) - 1
            radius = self.spec.goal_threshold if top else self.spec.subgoal_threshold
            rgba = goal_colour(level, len(goals))
            for position, cube in fetch_marker_positions(goal, top, self.spec.subgoal_indices):
                self._marker(position, CORE_SIZE, cube, rgba)
                self._marker(position, radius, cube, (*rgba[:3], REGION_ALPHA))
        image = Image.fromarray(self.renderer.render())
        draw_legend(image, label, len(goals))
        return image

    def _marker(self, position: np.ndarray, radius: float, cube: bool, rgba: RGBA) -> None:
        scene, mj = self.renderer.scene, self.mujoco
        if scene.ngeom >= scene.maxgeom:
            return
        kind = mj.mjtGeom.mjGEOM_BOX if cube else mj.mjtGeom.mjGEOM_SPHERE
        mj.mjv_initGeom(scene.geoms[scene.ngeom], type=kind, size=np.full(3, radius),
                        pos=np.asarray(position, np.float64), mat=np.eye(3).ravel(),
                        rgba=np.asarray(rgba, np.float32))
        scene.ngeom += 1

    def close(self) -> None:
        self.renderer.close()


def fetch_marker_positions(goal: np.ndarray, top: bool, subgoal_indices: Sequence[int]
                           ) -> list[tuple[np.ndarray, bool]]:
    """World positions to mark for one goal, each with whether it is an object's (a cube).

    The env goal of every Fetch task is one position (the gripper's for Reach, else the
    object's); a subgoal holds the gripper and/or object position at its slots of
    ``subgoal_indices``. Subgoal coordinates that are not positions are not drawn.
    """
    if top:
        return [(goal[:3], False)] if goal.shape[0] == 3 else []
    marks = []
    indices = tuple(subgoal_indices)
    for slot, cube in ((GRIPPER_SLOT, False), (OBJECT_SLOT, True)):
        for start in range(len(indices) - 2):
            if indices[start:start + 3] == slot:
                marks.append((goal[start:start + 3], cube))
    return marks


class GymPainter:
    """An env's own rgb_array frames, with goal markers where the env is drawn by gymnasium's
    MuJoCo renderer (its off-screen viewer draws the markers added before each frame)."""

    def __init__(self, env: GoalEnv):
        self.env, self.spec = env, env.spec
        if env.render() is None:  # type: ignore[attr-defined]
            raise NoFramesError(f"{env.spec.id} renders no rgb_array frames: its env must accept "
                                "render_mode='rgb_array' (gym.make, or the entry point's factory)")
        self.viewer = _mujoco_viewer(env.env.unwrapped)  # type: ignore[attr-defined]

    def reset(self) -> None:
        pass

    def frame(self, obs: np.ndarray, goals: Sequence[np.ndarray], label: str) -> Image.Image:
        if self.viewer is not None:
            for level, goal in enumerate(goals):
                if goal.shape[0] not in (2, 3):
                    continue  # not a position: nothing to mark
                top = level == len(goals) - 1
                radius = self.spec.goal_threshold if top else self.spec.subgoal_threshold
                rgba = np.asarray(goal_colour(level, len(goals)), np.float32)
                position = np.append(goal, MARKER_Z)[:3].astype(np.float64)
                self.viewer.add_marker(pos=position, size=np.full(3, radius),
                                       rgba=np.append(rgba[:3], REGION_ALPHA))
                self.viewer.add_marker(pos=position, size=np.full(3, 2 * CORE_SIZE), rgba=rgba)
        image = Image.fromarray(np.ascontiguousarray(self.env.render()))  # type: ignore
        draw_legend(image, label, len(goals))
        return image

    def close(self) -> None:
        pass


def _mujoco_viewer(unwrapped: object) -> object | None:
    """The off-screen viewer of a gymnasium MuJoCo env's renderer (on the env, or on the env it
    wraps, as the mazes do with their point or ant); None for other envs."""
    for holder in (unwrapped, *vars(unwrapped).values()):
        renderer = getattr(holder, "mujoco_renderer", None)
        if renderer is not None and hasattr(renderer, "_get_viewer"):
            return renderer._get_viewer("rgb_array")
    return None


def painter_for(env: GoalEnv, width: int, height: int) -> Painter:
    """A MuJoCo painter for Fetch envs, a Pillow one for PointMass-v0 (``height`` square), and
    the env's own frames for any other env (at the env's size)."""
    from hacray.envs.gym_goal import GymGoalEnv
    from hacray.envs.point_mass import PointMassEnv
    if isinstance(env, PointMassEnv):
        return PointMassPainter(env.spec, height)
    if isinstance(env, GymGoalEnv):
        return GymPainter(env)
    return MujocoPainter(env, width, height)


def default_gl_backend() -> None:
    """Headless Linux has no window for MuJoCo's default (GLFW): use EGL unless told otherwise.

    MuJoCo reads MUJOCO_GL when first imported, so this only acts before that import.
    """
    headless = sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
    if headless and "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = "egl"
