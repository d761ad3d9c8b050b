"""gymnasium-robotics Fetch tasks (-v4) behind the GoalEnv interface, with default subgoal spaces.

Subgoal spaces are projections of the 25-dim Fetch observation (10-dim for Reach): the gripper
position ``obs[0:3]`` and, for object tasks, the object position ``obs[3:6]``. Bounds keep
subgoals inside the workspace the task's goals are drawn from (gripper start +-0.15 m for
Reach/Push/PickAndPlace; Slide's goals lie 0.1-0.7 m beyond the gripper along x).

``reset`` and ``step`` bypass gymnasium's wrappers and compute the observation from addresses
looked up once (gymnasium-robotics looks up every robot joint by name on every step, to keep
two of them): the same numbers, bit for bit (a test compares), at a fraction of the cost.
"""
from __future__ import annotations

import mujoco
import numpy as np

from hacray.config import ConfigError, EnvConfig
from hacray.envs import GRASPABLE, EnvSpec, resolve_spec
from hacray.envs.gym_goal import gym
from hacray.goals import distance_reached

DEFAULT_SUBGOALS: dict[str, tuple[list[int], list[float], list[float]]] = {
    "FetchReach": ([0, 1, 2], [1.14, 0.55, 0.38], [1.55, 0.95, 0.74]),
    "FetchPush": ([0, 1, 2, 3, 4, 5], [1.10, 0.50, 0.40, 1.10, 0.50, 0.40],
                  [1.60, 1.00, 0.60, 1.60, 1.00, 0.50]),
    "FetchPickAndPlace": ([0, 1, 2, 3, 4, 5], [1.10, 0.50, 0.40, 1.10, 0.50, 0.40],
                          [1.60, 1.00, 0.90, 1.60, 1.00, 0.90]),
    "FetchSlide": ([0, 1, 2, 3, 4, 5], [0.70, 0.35, 0.40, 0.70, 0.35, 0.40],
                   [1.90, 1.15, 0.60, 1.90, 1.15, 0.50]),
}


def _family(env_id: str) -> str:
    """FetchPush-v4 and FetchPushDense-v4 -> FetchPush."""
    return env_id.split("-")[0].replace("Dense", "")


AIR_MARGIN_M = 1e-4
"""A table goal lies at the object's resting height; an air goal is drawn above it."""


def _air_goal_z(env) -> float | None:
    """The height above which an object task's goals lie in the air; None for tasks that draw
    none there (Push, Slide) or have no object (Reach)."""
    if getattr(env, "has_object", False) and getattr(env, "target_in_the_air", False):
        return float(env.height_offset) + AIR_MARGIN_M
    return None


class FetchEnv:
    """One gymnasium Fetch env; observations and goals come back as float32.

    ``model_of``: another FetchEnv of the same config, whose compiled model this one steps on
    (with its own state), so that envs stepped in turn share the model's cache lines.
    """

    @staticmethod
    def handles(config: EnvConfig) -> bool:
        """Whether this adapter serves ``config``: a Fetch task by id, its observation as is."""
        return (config.entry_point is None and not config.observe_achieved_goal
                and _family(config.id) in DEFAULT_SUBGOALS)

    def __init__(self, config: EnvConfig, model_of: FetchEnv | None = None):
        gymnasium = gym()
        if config.id not in gymnasium.registry:
            raise ConfigError(f"config: env.id {config.id!r} is not a registered gymnasium env")
        kwargs = dict(config.kwargs)
        if config.max_episode_steps:
            kwargs["max_episode_steps"] = config.max_episode_steps
        self.env = gymnasium.make(config.id, **kwargs)
        unwrapped = self.env.unwrapped
        self.can_grasp = bool(unwrapped.has_object and not unwrapped.block_gripper)
        """Whether ``start_grasped`` can put the object in the gripper (an object, free fingers)."""
        self.grasp_place = config.grasp_place
        space = self.env.observation_space
        self.spec: EnvSpec = resolve_spec(
            config, id=config.id, obs_dim=space["observation"].shape[0],
            goal_dim=space["desired_goal"].shape[0], action_dim=self.env.action_space.shape[0],
            max_episode_steps=self.env.spec.max_episode_steps,
            goal_threshold=float(self.env.unwrapped.distance_threshold),
            default_subgoal=DEFAULT_SUBGOALS[_family(config.id)],
            air_goal_z=_air_goal_z(self.env.unwrapped),
            can_grasp=self.can_grasp)
        # reset and step skip the env's render call, which only a "human" render mode makes
        assert self.env.unwrapped.render_mode is None, "FetchEnv renders through hacray.render"
        if model_of is not None:
            assert model_of.spec.id == config.id, "model_of: another task's env"
            self._adopt_model(model_of.env.unwrapped.model)
        self.sim = _FetchSim(self.env.unwrapped)
        self.elapsed = 0

    def _adopt_model(self, model: mujoco.MjModel) -> None:
        """Step on ``model`` (the same task's, compiled by another env) from this env's state.

        MuJoCo only reads the model while stepping; the env's set-up writes it (the mocap weld's
        ``eq_data``) with the same values in every env, and ``render`` (which moves the target
        site) is never called: hacray.render draws goals as scene geoms.
        """
        env = self.env.unwrapped
        data = mujoco.MjData(model)
        mujoco.mj_copyData(data, model, env.data)  # the state its set-up left: initial pose
        env.model, env.data = model, data
        env.mujoco_renderer.model, env.mujoco_renderer.data = model, data

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """gymnasium-robotics' ``reset(seed=seed)`` minus the wrappers, and with the first
        observation from the cached addresses (its own ``_get_obs`` looks up every robot joint
        by name: two thirds of a reset's time)."""
        from gymnasium import Env
        env = self.env.unwrapped
        Env.reset(env, seed=int(seed))  # seeds env.np_random, as the env's reset does
        while not env._reset_sim():  # redraws until the initial state is valid
            pass
        env.goal = env._sample_goal().copy()
        self.elapsed = 0
        obs, achieved = self.sim.observe()
        return obs, achieved.astype(np.float32), env.goal.astype(np.float32)

    def start_grasped(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """After ``reset``: the object moved into the gripper and the fingers closed on it, at
        env.grasp_place (env.grasp_start). Returns the new first observation, achieved goal and
        the same goal; the episode's step count stays 0."""
        self.sim.grasp(self.grasp_place)
        obs, achieved = self.sim.observe()
        return obs, achieved.astype(np.float32), self.env.unwrapped.goal.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """gymnasium-robotics' ``step`` and TimeLimit, minus the wrappers and name look-ups."""
        obs, achieved, success = self.sim.step(action)
        self.elapsed += 1
        truncated = self.elapsed >= self.spec.max_episode_steps  # Fetch never terminates
        return obs, achieved, success, truncated

    def close(self) -> None:
        self.env.close()


class GraspedStarts:
    """A Fetch env whose every episode starts with the object in the gripper (``reset`` then
    ``start_grasped``): what a policy does with the object already in hand, e.g. whether a top
    level that does not go for an air goal from the table could carry the object there."""

    def __init__(self, env: FetchEnv):
        if not getattr(env, "can_grasp", False):
            raise ConfigError(f"grasped starts need {GRASPABLE}; {env.spec.id} has none")
        self.env, self.spec = env, env.spec

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.env.reset(seed)
        return self.env.start_grasped()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()


ROTATION_DELTA = np.array([1.0, 0.0, 1.0, 0.0])  # the env's fixed "rotation" increment
GRASP_OPEN = 0.03
"""Each finger's opening (m) when the object (a 5 cm cube) is put between them."""
GRASP_CLOSE = np.array([0.0, 0.0, 0.0, -1.0], np.float32)
"""The action that closes the fingers and keeps the gripper where it is."""
GRASP_REACH_STEPS = 20
"""At most this many env steps take the gripper to the object's place (grasp_place "table";
measured: 5-6 steps to within 4 mm from the start pose)."""
GRASP_REACH_TOLERANCE = 0.004
GRASP_STEPS = 3
"""Env steps of GRASP_CLOSE that close the fingers on the object (measured: the object falls
about 9 mm before they hold it, then stays within ~1 cm of the grip while the arm moves)."""


class _FetchSim:
    """The per-step part of gymnasium-robotics' MujocoFetchEnv with its look-ups done once.

    Physics is the env's own ``_mujoco_step`` (one ``mj_step`` call of ``n_substeps`` steps);
    the action (``_set_action``: position actuators and mocap weld), the step callback (a
    blocked gripper's fingers held at 0) and the observation (``generate_mujoco_observations``
    + ``_get_obs``) repeat the env's code operation for operation, so that float rounding is the
    same, from cached ids and addresses.
    """

    def __init__(self, env):
        model, data = env.model, env.data
        self.env, self.model, self.data, self.substeps = env, model, data, env.n_substeps
        # views of the env's state arrays, taken once: MjData makes a new view on every access
        self.qpos, self.qvel, self.ctrl = data.qpos, data.qvel, data.ctrl
        self.xpos, self.xquat, self.site_xpos = data.xpos, data.xquat, data.site_xpos
        self.site_xmat = data.site_xmat
        self.mocap_pos, self.mocap_quat = data.mocap_pos, data.mocap_quat
        site = lambda name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, name)
        self.grip, self.object = site("robot0:grip"), site("object0") if env.has_object else -1
        robot = [n for n in env._model_names.joint_names if n.startswith("robot")]
        fingers = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot[-2:]]
        self.finger_qpos = model.jnt_qposadr[fingers]  # the last two robot joints: gripper
        self.finger_qvel = model.jnt_dofadr[fingers]
        self.block_gripper = bool(env.block_gripper)
        self.dt = env.n_substeps * model.opt.timestep
        self.low, self.high = env.action_space.low, env.action_space.high
        self.reached = distance_reached(env.distance_threshold)  # the env's _is_success
        self.jacp, self.jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        (weld,) = np.flatnonzero(model.eq_type == mujoco.mjtEq.mjEQ_WELD)  # Fetch has one
        mocap_body, body = model.eq_obj1id[weld], model.eq_obj2id[weld]
        if model.body_mocapid[mocap_body] == -1:
            mocap_body, body = body, mocap_body
        self.mocap, self.welded_body = model.body_mocapid[mocap_body], body
        assert model.nmocap == 1 and model.nu in (0, 2), "Fetch: one mocap body, 0 or 2 servos"
        # ctrl_set_action: a servo with a bias (position servo) is driven relative to its joint
        self.relative = model.actuator_biastype != 0
        self.servo_qpos = model.jnt_qposadr[model.actuator_trnid[:, 0]]
        self.no_grip = np.zeros(2)
        if env.has_object:
            joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "object0:joint")
            self.object_qpos = int(model.jnt_qposadr[joint])  # a free joint: 3 + 4 entries
            self.object_qvel = int(model.jnt_dofadr[joint])  # 6 entries

    def grasp(self, place: str = "start") -> None:
        """The object put at the grip site between open fingers, upright and at rest, then
        the fingers closed on it (GRASP_STEPS steps of GRASP_CLOSE). ``place`` "table": the
        gripper first goes, fingers open, to where the object lies (the object out of its way
        meanwhile), so that it is grasped resting on the table at its drawn place."""
        assert self.object >= 0 and not self.block_gripper, "grasp: an object and free fingers"
        at = self.object_qpos
        if place == "table":
            target = self.site_xpos[self.object].copy()
            self.qpos[at:at + 3] = (target[0], target[1], -10.0)  # parked below the floor
            self.qvel[self.object_qvel:self.object_qvel + 6] = 0.0
            mujoco.mj_forward(self.model, self.data)
            for _ in range(GRASP_REACH_STEPS):
                error = target - self.site_xpos[self.grip]
                if np.linalg.norm(error) < GRASP_REACH_TOLERANCE:
                    break
                self.step(np.append(np.clip(error / 0.05, -1.0, 1.0), 1.0).astype(np.float32))
        self.qpos[self.finger_qpos] = GRASP_OPEN
        self.qpos[at:at + 3] = self.site_xpos[self.grip]
        self.qpos[at + 3:at + 7] = (1.0, 0.0, 0.0, 0.0)
        self.qvel[self.object_qvel:self.object_qvel + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)
        for _ in range(GRASP_STEPS):
            self.step(GRASP_CLOSE)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(observation, achieved goal, success) after one env step; float32 arrays."""
        action = np.minimum(np.maximum(action, self.low), self.high)  # np.clip, minus its wrapper
        self._set_action(action)
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)  # the env's _mujoco_step
        if self.block_gripper:  # _step_callback: fingers held at 0, then mj_forward
            self.qpos[self.finger_qpos] = 0.0
            self._positions()
        obs, achieved = self.observe()
        success = bool(self.reached(achieved, self.env.goal))
        return obs, achieved.astype(np.float32), success

    def _positions(self) -> None:
        """The part of the env's ``mj_forward`` that anything after it reads: body and site
        poses (the observation, the next action's mocap) and the inputs of ``mj_jacSite``.
        The next ``mj_step`` recomputes the rest (forces, contacts, accelerations) from the
        same state before using it, so the physics is unchanged bit for bit (a test compares)."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def _set_action(self, action: np.ndarray) -> None:
        """The end effector moves by at most 5 cm per step (mocap), fingers by position servo.

        Fetch has one mocap body, welded to the gripper: its pose is reset to the gripper's and
        moved by the action (``reset_mocap2body_xpos`` then ``mocap_set_action``)."""
        pos_ctrl = (action[:3] * 0.05).astype(np.float64)  # in float32, then widened, as the env
        gripper = (self.no_grip if self.block_gripper
                   else np.array([action[3], action[3]], np.float64))
        if self.relative.size:  # blocked-gripper tasks have no finger servos
            self.ctrl[:] = np.where(self.relative, self.qpos[self.servo_qpos] + gripper, gripper)
        self.mocap_pos[self.mocap] = self.xpos[self.welded_body] + pos_ctrl
        self.mocap_quat[self.mocap] = self.xquat[self.welded_body] + ROTATION_DELTA

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """``_get_obs``'s observation (rounded to float32) and achieved goal (float64)."""
        dt = self.dt
        grip_pos = self.site_xpos[self.grip]
        grip_velp = self._velocity(self.grip, angular=False)[0] * dt
        gripper_state = self.qpos[self.finger_qpos]
        gripper_vel = self.qvel[self.finger_qvel] * dt
        if self.object < 0:
            return (np.concatenate([grip_pos, gripper_state, grip_velp, gripper_vel],
                                   dtype=np.float32), grip_pos.copy())
        object_pos = self.site_xpos[self.object]
        velp, velr = self._velocity(self.object, angular=True)
        object_velp = velp * dt
        object_velp -= grip_velp
        obs = np.concatenate([grip_pos, object_pos, object_pos - grip_pos, gripper_state,
                              mat2euler(self.site_xmat[self.object]), object_velp, velr * dt,
                              grip_velp, gripper_vel], dtype=np.float32)
        return obs, object_pos.copy()

    def _velocity(self, site: int, angular: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The site's linear (and angular) velocity: Jacobian times qvel, as mujoco_utils does."""
        mujoco.mj_jacSite(self.model, self.data, self.jacp, self.jacr if angular else None, site)
        return self.jacp @ self.qvel, self.jacr @ self.qvel if angular else None


_EPS4 = np.finfo(np.float64).eps * 4.0


def mat2euler(flat: np.ndarray) -> np.ndarray:
    """gymnasium-robotics' ``rotations.mat2euler`` of one row-major 3x3 matrix, the same
    numbers bit for bit (a test compares) without its batch machinery (~9x faster)."""
    m00, m01, m02, _, _, m12, _, _, m22 = flat
    cy = np.sqrt(m22 * m22 + m12 * m12)
    if not cy > _EPS4:  # gimbal lock: the general function's other branch
        from gymnasium_robotics.utils.rotations import mat2euler as general
        return general(flat.reshape(3, 3))
    return -np.arctan2(np.array([m12, -m02, m01]), np.array([m22, cy, m00]))
