"""gymnasium-robotics Fetch tasks (-v4) behind the GoalEnv interface, with default subgoal spaces.

Subgoal spaces are projections of the 25-dim Fetch observation (10-dim for Reach): the gripper
position ``obs[0:3]`` and, for object tasks, the object position ``obs[3:6]``. Bounds keep
subgoals inside the workspace the task's goals are drawn from (gripper start +-0.15 m for
Reach/Push/PickAndPlace; Slide's goals lie 0.1-0.7 m beyond the gripper along x).

``step`` bypasses gymnasium's wrappers and computes the observation from addresses looked up
once (gymnasium-robotics looks up every robot joint by name on every step, to keep two of
them): the same numbers, bit for bit (a test compares), at a fraction of the cost.
"""
from __future__ import annotations

import contextlib
import io

import mujoco
import numpy as np

from hacray.config import ConfigError, EnvConfig
from hacray.envs import EnvSpec, resolve_spec

DEFAULT_SUBGOALS: dict[str, tuple[list[int], list[float], list[float]]] = {
    "FetchReach": ([0, 1, 2], [1.14, 0.55, 0.38], [1.55, 0.95, 0.74]),
    "FetchPush": ([0, 1, 2, 3, 4, 5], [1.10, 0.50, 0.40, 1.10, 0.50, 0.40],
                  [1.60, 1.00, 0.60, 1.60, 1.00, 0.50]),
    "FetchPickAndPlace": ([0, 1, 2, 3, 4, 5], [1.10, 0.50, 0.40, 1.10, 0.50, 0.40],
                          [1.60, 1.00, 0.90, 1.60, 1.00, 0.90]),
    "FetchSlide": ([0, 1, 2, 3, 4, 5], [0.70, 0.35, 0.40, 0.70, 0.35, 0.40],
                   [1.90, 1.15, 0.60, 1.90, 1.15, 0.50]),
}


def _gym():
    import gymnasium as gym
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics  # prints a notice about Adroit envs on import
    gym.register_envs(gymnasium_robotics)
    return gym


class FetchEnv:
    """One gymnasium Fetch env; observations and goals come back as float32."""

    def __init__(self, config: EnvConfig):
        gym = _gym()
        if config.id not in gym.registry:
            raise ConfigError(f"config: env.id {config.id!r} is not a registered gymnasium env")
        kwargs = {"max_episode_steps": config.max_episode_steps} if config.max_episode_steps else {}
        self.env = gym.make(config.id, **kwargs)
        space = self.env.observation_space
        keys = ("observation", "achieved_goal", "desired_goal")
        if not all(k in getattr(space, "spaces", {}) for k in keys):
            self.env.close()
            raise ConfigError(f"config: env.id {config.id!r} is not goal-conditioned "
                              "(needs observation, achieved_goal and desired_goal)")
        family = config.id.split("-")[0].replace("Dense", "")
        if family not in DEFAULT_SUBGOALS and config.subgoal_indices is None:
            self.env.close()
            raise ConfigError(f"config: env.id {config.id!r} has no default subgoal space; "
                              "set env.subgoal_indices, env.subgoal_low and env.subgoal_high")
        self.spec: EnvSpec = resolve_spec(
            config, id=config.id, obs_dim=space["observation"].shape[0],
            goal_dim=space["desired_goal"].shape[0], action_dim=self.env.action_space.shape[0],
            max_episode_steps=self.env.spec.max_episode_steps,
            goal_threshold=float(getattr(self.env.unwrapped, "distance_threshold", 0.05)),
            default_subgoal=DEFAULT_SUBGOALS.get(family, ([], [], [])))
        self.sim = _FetchSim(self.env.unwrapped)
        self.elapsed = 0

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, _ = self.env.reset(seed=int(seed))
        self.elapsed = 0
        return _unpack(obs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        """gymnasium-robotics' ``step`` and TimeLimit, minus the wrappers and name look-ups."""
        obs, achieved, success = self.sim.step(action)
        self.elapsed += 1
        truncated = self.elapsed >= self.spec.max_episode_steps  # Fetch never terminates
        return obs.astype(np.float32), achieved.astype(np.float32), success, truncated

    def close(self) -> None:
        self.env.close()


def _unpack(obs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (obs["observation"].astype(np.float32), obs["achieved_goal"].astype(np.float32),
            obs["desired_goal"].astype(np.float32))


ROTATION_DELTA = np.array([1.0, 0.0, 1.0, 0.0])  # the env's fixed "rotation" increment


class _FetchSim:
    """The per-step part of gymnasium-robotics' MujocoFetchEnv with its look-ups done once.

    Physics is the env's own ``_mujoco_step``; the action (``_set_action``: position actuators
    and mocap weld), the step callback (a blocked gripper's fingers held at 0) and the
    observation (``generate_mujoco_observations`` + ``_get_obs``) repeat the env's code
    operation for operation, so that float rounding is the same, from cached ids and addresses.
    """

    def __init__(self, env):
        from gymnasium_robotics.utils.rotations import mat2euler
        model = env.model
        self.env, self.model, self.data, self.mat2euler = env, model, env.data, mat2euler
        site = lambda name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, name)
        self.grip, self.object = site("robot0:grip"), site("object0") if env.has_object else -1
        robot = [n for n in env._model_names.joint_names if n.startswith("robot")]
        fingers = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot[-2:]]
        self.finger_qpos = model.jnt_qposadr[fingers]  # the last two robot joints: gripper
        self.finger_qvel = model.jnt_dofadr[fingers]
        self.block_gripper = bool(env.block_gripper)
        self.dt = env.n_substeps * model.opt.timestep
        self.low, self.high = env.action_space.low, env.action_space.high
        self.jacp, self.jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        (weld,) = np.flatnonzero(model.eq_type == mujoco.mjtEq.mjEQ_WELD)  # Fetch has one
        mocap_body, body = model.eq_obj1id[weld], model.eq_obj2id[weld]
        if model.body_mocapid[mocap_body] == -1:
            mocap_body, body = body, mocap_body
        self.mocap, self.welded_body = model.body_mocapid[mocap_body], body
        self.actuators = [(i, model.actuator_biastype[i] != 0,
                           model.jnt_qposadr[model.actuator_trnid[i, 0]]) for i in range(model.nu)]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(observation, achieved goal, success) after one env step, in float64."""
        env = self.env
        action = np.clip(action, self.low, self.high)
        self._set_action(action)
        env._mujoco_step(action)
        if self.block_gripper:  # _step_callback: fingers held at 0, then mj_forward
            self.data.qpos[self.finger_qpos] = 0.0
            self._positions()
        obs, achieved = self.observe()
        success = bool(np.linalg.norm(achieved - env.goal, axis=-1) < env.distance_threshold)
        return obs, achieved, success

    def _positions(self) -> None:
        """The part of the env's ``mj_forward`` that anything after it reads: body and site
        poses (the observation, the next action's mocap) and the inputs of ``mj_jacSite``.
        The next ``mj_step`` recomputes the rest (forces, contacts, accelerations) from the
        same state before using it, so the physics is unchanged bit for bit (a test compares)."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def _set_action(self, action: np.ndarray) -> None:
        """The end effector moves by at most 5 cm per step (mocap), fingers by position servo."""
        data = self.data
        pos_ctrl = action[:3].copy()
        pos_ctrl *= 0.05  # in the action's float32, as the env does
        gripper = np.zeros(2) if self.block_gripper else np.array([action[3], action[3]])
        gripper = gripper.astype(np.float64)  # the env's concatenate widens to float64
        for i, relative, qpos_address in self.actuators:
            data.ctrl[i] = data.qpos[qpos_address] + gripper[i] if relative else gripper[i]
        data.mocap_pos[self.mocap][:] = data.xpos[self.welded_body]
        data.mocap_quat[self.mocap][:] = data.xquat[self.welded_body]
        data.mocap_pos[:] = data.mocap_pos + pos_ctrl.astype(np.float64)
        data.mocap_quat[:] = data.mocap_quat + ROTATION_DELTA

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        data, dt = self.data, self.dt
        grip_pos = data.site_xpos[self.grip]
        grip_velp = self._velocity(self.grip)[0] * dt
        gripper_state = data.qpos[self.finger_qpos]
        gripper_vel = data.qvel[self.finger_qvel] * dt
        if self.object < 0:
            empty = np.zeros(0)
            parts = [grip_pos, empty, empty, gripper_state, empty, empty, empty]
            achieved = grip_pos.copy()
        else:
            object_pos = data.site_xpos[self.object]
            object_rot = self.mat2euler(data.site_xmat[self.object].reshape(3, 3))
            velp, velr = self._velocity(self.object)
            object_velp, object_velr = velp * dt, velr * dt
            object_velp -= grip_velp
            parts = [grip_pos, object_pos.ravel(), (object_pos - grip_pos).ravel(), gripper_state,
                     object_rot.ravel(), object_velp.ravel(), object_velr.ravel()]
            achieved = np.squeeze(object_pos.copy())
        return np.concatenate([*parts, grip_velp, gripper_vel]), achieved

    def _velocity(self, site: int) -> tuple[np.ndarray, np.ndarray]:
        """The site's linear and angular velocity (Jacobian times qvel, as mujoco_utils does)."""
        mujoco.mj_jacSite(self.model, self.data, self.jacp, self.jacr, site)
        return self.jacp @ self.data.qvel, self.jacr @ self.data.qvel
