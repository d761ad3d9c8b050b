"""Fetch tasks through the GoalEnv adapter, and FetchReach learning (MuJoCo tier)."""
import json

import numpy as np
import pytest

from hacray.cli import main
from hacray.config import EnvConfig
from hacray.envs import make_env, make_envs

pytestmark = pytest.mark.mujoco
TASKS = ["FetchReach-v4", "FetchPush-v4", "FetchPickAndPlace-v4", "FetchSlide-v4"]


@pytest.mark.parametrize("task", TASKS)
def test_fast_step_equals_gymnasium_step_bit_for_bit(task):
    """FetchEnv.reset and .step skip gymnasium's wrappers and name look-ups; they must not
    change a bit of what the env returns (actions out of range included: both clip them)."""
    ours, theirs = make_env(EnvConfig(id=task)), make_env(EnvConfig(id=task)).env
    rng, outcomes = np.random.default_rng(7), set()
    for seed in (0, 1, 2):
        got = ours.reset(seed)
        expected, _ = theirs.reset(seed=seed)
        for value, key in zip(got, ("observation", "achieved_goal", "desired_goal")):
            np.testing.assert_array_equal(value, expected[key].astype(np.float32), key)
            assert value.dtype == np.float32
        for t in range(50):
            action = rng.uniform(-1.3, 1.3, 4).astype(np.float32)
            if t % 2:  # a goal near the achieved one, so that success is sometimes True
                goal = expected["achieved_goal"] + rng.normal(0.0, 0.03, 3)
                ours.env.unwrapped.goal, theirs.unwrapped.goal = goal.copy(), goal.copy()
                action[:3] *= 0.1
            obs, achieved, success, truncated = ours.step(action)
            expected, _, terminated, time_up, info = theirs.step(action)
            outcomes.add(success)
            np.testing.assert_array_equal(obs, expected["observation"].astype(np.float32))
            np.testing.assert_array_equal(achieved, expected["achieved_goal"].astype(np.float32))
            assert success == bool(info["is_success"]) and truncated == (terminated or time_up)
            # the whole physical state too, in float64: what the next steps start from
            for field in ("qpos", "qvel", "qacc_warmstart", "mocap_pos", "mocap_quat", "ctrl"):
                np.testing.assert_array_equal(getattr(ours.sim.data, field),
                                              getattr(theirs.unwrapped.data, field), field)
    assert truncated  # the episode's 50th step
    assert outcomes == {True, False}  # both sides of the goal threshold were compared


def rotation(quat) -> np.ndarray:
    import mujoco
    mat, quat = np.zeros(9), np.asarray(quat, np.float64)
    mujoco.mju_quat2Mat(mat, quat / np.linalg.norm(quat))
    return mat


@pytest.mark.parametrize("quat", [
    [1, 0, 0, 0],                        # identity: the object at rest
    [0.9, 0, 0, 0.3], [0.2, 0, 0, -1],   # about z only: a box on the table
    [0.5, 0.5, 0.5, 0.5], [0.3, -0.7, 0.1, 0.6],
    [1, 0, 1, 0],                        # pitch 90 degrees: gimbal lock, the other branch
])
def test_mat2euler_equals_gymnasium_robotics_bit_for_bit(quat):
    from gymnasium_robotics.utils.rotations import mat2euler as general
    from hacray.envs.fetch import mat2euler
    mat = rotation(quat)
    np.testing.assert_array_equal(mat2euler(mat), general(mat.reshape(3, 3)))


def test_mat2euler_equals_gymnasium_robotics_on_many_rotations():
    from gymnasium_robotics.utils.rotations import mat2euler as general
    from hacray.envs.fetch import mat2euler
    for quat in np.random.default_rng(0).standard_normal((2000, 4)):
        mat = rotation(quat)
        np.testing.assert_array_equal(mat2euler(mat), general(mat.reshape(3, 3)))


@pytest.mark.parametrize("task", TASKS)
def test_adapter_contract_and_subgoal_space(task):
    env = make_env(EnvConfig(id=task))
    spec = env.spec
    obs, achieved, goal = env.reset(seed=3)
    assert obs.dtype == achieved.dtype == goal.dtype == np.float32
    assert obs.shape == (spec.obs_dim,) and goal.shape == achieved.shape == (spec.goal_dim,)
    assert spec.max_episode_steps == 50 and spec.goal_threshold == 0.05
    # the env's achieved goal is part of the subgoal projection (gripper or object position)
    subgoal = obs[list(spec.subgoal_indices)]
    assert any(np.allclose(subgoal[i:i + 3], achieved) for i in range(0, len(subgoal), 3))
    # the start state and the goal lie inside the subgoal bounds
    assert np.all(subgoal >= spec.subgoal_low) and np.all(subgoal <= spec.subgoal_high)
    for i in range(0, len(subgoal), 3):
        if np.allclose(subgoal[i:i + 3], achieved):
            assert np.all(goal >= spec.subgoal_low[i:i + 3] - 1e-6)
            assert np.all(goal <= spec.subgoal_high[i:i + 3] + 1e-6)
    steps = 0
    truncated = False
    while not truncated:
        obs, achieved, success, truncated = env.step(np.zeros(spec.action_dim, np.float32))
        steps += 1
    assert steps == 50
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_only_pick_and_place_tells_table_goals_from_air_goals(task):
    from hacray.envs import goal_kind
    env = make_env(EnvConfig(id=task))
    if task != "FetchPickAndPlace-v4":
        # Push and Slide goals lie on the table; Reach has no object
        assert env.spec.air_goal_z is None
        assert {goal_kind(env.spec, env.reset(seed)[2]) for seed in range(5)} == {""}
        return
    kinds = []
    for seed in range(40):
        _, achieved, goal = env.reset(seed)
        kinds.append(goal_kind(env.spec, goal))
        if kinds[-1] == "table":  # on the table: at the height the object rests at
            assert goal[2] == pytest.approx(achieved[2], abs=1e-5)
        else:
            assert goal[2] > achieved[2] + 1e-4
    assert 10 <= kinds.count("air") <= 30 and kinds.count("table") + kinds.count("air") == 40
    env.close()


def test_pick_and_place_run_and_evaluation_split_success_by_goal_kind(tmp_path, configs_dir,
                                                                      capsys):
    run_dir = tmp_path / "run"
    assert main(["train", str(configs_dir / "fetch_pick_and_place_l1.yaml"), "--run-dir",
                 str(run_dir), "--max-env-steps", "100", "--set", "train.eval_every=100",
                 "--set", "train.eval_episodes=6", "--set", "train.tensorboard=false",
                 "--set", "train.video_every=0"]) == 0
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    told = {k: v for k, v in record.items() if k.startswith("eval/episodes_")}
    assert sum(told.values()) == 6 and set(told) <= {"eval/episodes_table", "eval/episodes_air"}
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["eval/episodes_table"] + report["eval/episodes_air"] == 12
    assert report["eval/episodes_table"] > 0 and report["eval/episodes_air"] > 0
    for kind in ("table", "air"):
        assert 0.0 <= report[f"eval/success_rate_{kind}"] <= 1.0


@pytest.mark.parametrize("task", ["FetchReach-v4", "FetchPickAndPlace-v4"])
def test_envs_sharing_one_model_step_as_envs_with_their_own(task):
    """make_envs' envs step on one compiled model, each from its own state: stepped in turn,
    they return what separate envs return, bit for bit, and none moves another's state."""
    shared, separate = make_envs(EnvConfig(id=task), 3), make_envs(EnvConfig(id=task), 1)
    separate += [make_env(EnvConfig(id=task)) for _ in range(2)]
    assert len({id(env.sim.model) for env in shared}) == 1
    assert len({id(env.sim.data) for env in shared}) == 3
    assert len({id(env.sim.model) for env in separate}) == 3
    rng = np.random.default_rng(3)
    for a, b, seed in zip(shared, separate, (5, 6, 7)):
        assert all(np.array_equal(x, y) for x, y in zip(a.reset(seed), b.reset(seed)))
    for _ in range(50):
        actions = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
        ours = [env.step(action) for env, action in zip(shared, actions)]
        theirs = [env.step(action) for env, action in zip(separate, actions)]
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
            assert a[2:] == b[2:]
    for a, b in zip(shared, separate):
        np.testing.assert_array_equal(a.sim.data.qpos, b.sim.data.qpos)
    assert not np.array_equal(shared[0].sim.data.qpos, shared[1].sim.data.qpos)


def test_same_seed_same_reset():
    a, b = make_env(EnvConfig(id="FetchPush-v4")), make_env(EnvConfig(id="FetchPush-v4"))
    assert all(np.array_equal(x, y) for x, y in zip(a.reset(11), b.reset(11)))
    assert not np.array_equal(a.reset(12)[2], b.reset(11)[2])


@pytest.mark.slow
@pytest.mark.parametrize("levels", [1, 2])
def test_fetch_reach_reaches_0_9_within_10k_env_steps(tmp_path, configs_dir, levels):
    run_dir = tmp_path / "run"
    config = configs_dir / f"fetch_reach_l{levels}.yaml"
    assert main(["train", str(config), "--run-dir", str(run_dir),
                 "--seed", "1", "--max-env-steps", "10000"]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(r["eval/success_rate"] for r in records) >= 0.9


def test_a_grasped_start_holds_the_object_as_the_arm_moves():
    """start_grasped: the object closed in the fingers at the gripper's start, the goal and the
    step count as reset left them; the object goes where the gripper goes, and falls when the
    fingers open."""
    env = make_env(EnvConfig(id="FetchPickAndPlace-v4", grasp_start=0.5))
    obs, _, goal = env.reset(4)
    table_z = obs[5]
    obs, achieved, same_goal = env.start_grasped()
    np.testing.assert_array_equal(same_goal, goal)
    np.testing.assert_array_equal(achieved, obs[3:6])
    assert env.elapsed == 0
    assert np.linalg.norm(obs[6:9]) < 0.015 and obs[5] > table_z + 0.08  # in hand, lifted
    assert 0.02 < obs[9] < 0.03 and 0.02 < obs[10] < 0.03  # fingers closed on a 5 cm cube
    for _ in range(10):
        obs, *_ = env.step(np.float32([0.5, -0.3, 0.5, -1.0]))
    assert np.linalg.norm(obs[6:9]) < 0.015
    for _ in range(5):
        obs, *_ = env.step(np.float32([0.0, 0.0, 0.0, 1.0]))
    assert np.linalg.norm(obs[6:9]) > 0.05  # let go: it fell


def test_a_grasped_start_on_the_table_holds_the_object_where_it_was_drawn():
    """grasp_place "table": the object closed in the fingers at its own drawn place, resting
    on the table; lifting lifts it."""
    env = make_env(EnvConfig(id="FetchPickAndPlace-v4", grasp_start=0.5, grasp_place="table"))
    for seed in range(3):
        obs, _, goal = env.reset(seed)
        drawn = obs[3:6].copy()
        obs, achieved, same_goal = env.start_grasped()
        np.testing.assert_array_equal(same_goal, goal)
        assert env.elapsed == 0
        assert np.linalg.norm(obs[3:6] - drawn) < 0.006  # where it lay, on the table
        assert np.linalg.norm(obs[6:9]) < 0.005 and 0.02 < obs[9] < 0.03
        for _ in range(5):
            obs, *_ = env.step(np.float32([0.0, 0.0, 1.0, -1.0]))
        assert obs[5] > drawn[2] + 0.1 and np.linalg.norm(obs[6:9]) < 0.015


@pytest.mark.parametrize("task", ["FetchPush-v4", "FetchReach-v4"])
def test_grasp_start_is_refused_where_there_is_nothing_to_grasp(task):
    from hacray.config import ConfigError
    with pytest.raises(ConfigError, match=f"env.grasp_start needs .*; {task} has none"):
        make_env(EnvConfig(id=task, grasp_start=0.5))


def test_pick_and_place_l2_trains_its_top_level_to_4cm_and_succeeds_at_fetchs_5cm():
    """The shipped 2-level PickAndPlace file trains the top level to 4 cm (its reward, hindsight
    relabelling and hold) and the motor level to 5 cm; success stays Fetch's own is_success."""
    from pathlib import Path
    from hacray.algo.hierarchy import level_spaces
    from hacray.config import load_config
    from hacray.goals import distance_reached
    config = load_config(Path(__file__).parents[1] / "configs" / "fetch_pick_and_place_l2.yaml")
    env = make_env(config.env)
    motor, top = level_spaces(config, env.spec)
    assert (top.threshold, motor.threshold) == (0.04, 0.05)
    _, achieved, _ = env.reset(seed=0)
    rows = []
    for offset in (0.035, 0.045, 0.055):  # object left where it lies, the goal moved away
        env.env.unwrapped.goal = achieved + np.array([offset, 0.0, 0.0])
        _, now, success, _ = env.step(np.zeros(env.spec.action_dim, np.float32))
        top_reached = bool(distance_reached(top.threshold)(now, env.env.unwrapped.goal))
        rows.append((success, top_reached))
    assert rows == [(True, True), (True, False), (False, False)]
    env.close()
