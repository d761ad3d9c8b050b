"""Config loading, overrides and validation (unit tier)."""
import dataclasses

import pytest

from hacray.config import Config, ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_validate_and_are_frozen():
    config = load_config()
    assert isinstance(config, Config) and config.agent.levels == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.agent.levels = 3  # type: ignore[misc]


def test_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "learner:\n  actor_lr: 0.0005\nagent:\n  levels: 1\n  horizons: [50]\n")
    config = load_config(path, ("learner.batch_size=512", "agent.relabel=future",
                                "env.subgoal_indices=[0,1]", "env.subgoal_low=[0,0]",
                                "env.subgoal_high=[1,1]"))
    assert config.learner.actor_lr == 5e-4 and config.learner.batch_size == 512
    assert config.agent.relabel == "future" and config.env.subgoal_indices == [0, 1]
    assert config.env.subgoal_high == [1.0, 1.0]


BAD = [
    ("learner:\n  lr: 0.1\n", "unknown key 'learner.lr'"),
    ("learner:\n  actor_lrr: 0.1\n", "did you mean 'actor_lr'"),
    ("learnr:\n  actor_lr: 0.1\n", "unknown key 'learnr' (did you mean 'learner'?)"),
    ("learner:\n  batch_size: big\n", "'learner.batch_size' must be int"),
    ("learner:\n  batch_size: 1.5\n", "'learner.batch_size' must be int"),
    ("agent:\n  terminate_on_goal: 1\n", "'agent.terminate_on_goal' must be bool"),
    ("agent:\n  horizons: 5\n", "'agent.horizons' must be a list"),
    ("agent:\n  levels: 3\n", "agent.horizons needs one entry per level (3)"),
    ("agent:\n  relabel: sometimes\n", "agent.relabel must be one of"),
    ("learner:\n  gamma: 1.5\n", "learner.gamma must be in (0, 1)"),
    ("env:\n  subgoal_low: [0, 1]\n", "must be given together"),
    ("env:\n  subgoal_indices: [0]\n  subgoal_low: [0, 1]\n  subgoal_high: [1, 2]\n",
     "must be given together"),
    ("env:\n  entry_point: my_env.make\n", "env.entry_point must look like"),
    ("env:\n  kwargs: [1]\n", "'env.kwargs' must be a mapping"),
    ("env:\n  subgoal_indices: [0]\n  subgoal_low: [1]\n  subgoal_high: [0]\n",
     "env.subgoal_low must be below"),
    ("env:\n  subgoal_scale: [1, 0]\n", "env.subgoal_scale must hold finite weights > 0"),
    ("env:\n  subgoal_scale: [1, .nan]\n", "env.subgoal_scale must hold finite weights > 0"),
    ("env:\n  grasp_start: 1.5\n", "env.grasp_start must lie in [0, 1], got 1.5"),
    ("env:\n  grasp_place: hand\n", "env.grasp_place must be one of start, table, got 'hand'"),
    ("learner: [1, 2]\n", "'learner' must be a mapping"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("learner:\n  actor_lr: [\n", "malformed YAML"),
    ("replay:\n  her_at_sample: true\nagent:\n  relabel: episode\n",
     "replay.her_at_sample needs agent.relabel and agent.top_relabel among hac, future, final"),
    ("replay:\n  her_at_sample: true\nagent:\n  top_relabel: none\n",
     "replay.her_at_sample needs"),
    ("distributed:\n  replay_shards: 0\n", "distributed.replay_shards must be >= 1"),
    ("distributed:\n  replay_shards: 3\n  workers: 2\n",
     "distributed.replay_shards must be <= distributed.workers"),
    ("replay:\n  her_at_sample: true\nagent:\n  relabel_k: 0\n",
     "replay.her_at_sample needs agent.relabel_k >= 1"),
    ("replay:\n  her_actual: 0.5\n", "replay.her_actual needs replay.her_at_sample: true"),
    ("replay:\n  her_at_sample: true\n  her_actual: 1.5\n",
     "replay.her_actual must be in [0, 1]"),
    ("learner:\n  updates_per_call: 0\n", "learner.updates_per_call must be >= 1"),
    ("agent:\n  test_top_noise: 1.5\n", "agent.test_top_noise must be in [0, 1]"),
    ("agent:\n  level0_speed: 0\n", "agent.level0_speed must be in (0, 1]"),
    ("agent:\n  level0_speed: 1.5\n", "agent.level0_speed must be in (0, 1]"),
    ("learner:\n  level_update_every: [1]\n",  # the default agent has 2 levels
     "learner.level_update_every needs one entry per level"),
    ("learner:\n  level_update_every: [1, 0]\n", "learner.level_update_every entries must be >= 1"),
    ("agent:\n  level_random_eps: [0.1]\n",  # the default agent has 2 levels
     "agent.level_random_eps needs one entry per level (2)"),
    ("agent:\n  level_random_eps: [0.1, 1.5]\n", "agent.level_random_eps entries must be in"),
    ("agent:\n  level_noise_std: [0.1, 0.1, 0.1]\n",
     "agent.level_noise_std needs one entry per level (2)"),
    ("agent:\n  level_noise_std: [-0.1, 0.1]\n", "agent.level_noise_std entries must be >= 0"),
    ("replay:\n  lift_priority: -1\n", "replay.lift_priority must be >= 0"),
    ("replay:\n  lift_full: 0\n", "replay.lift_full must be > 0"),
    ("replay:\n  lift_index: -1\n", "replay.lift_index must be >= 0"),
    ("learner:\n  top_hidden: [64, 0]\n", "learner.top_hidden must list positive layer sizes"),
    ("learner:\n  top_hidden: []\n", "learner.top_hidden must list positive layer sizes"),
    ("agent:\n  levels: 1\n  horizons: [50]\nlearner:\n  top_hidden: [64]\n",
     "learner.top_hidden needs agent.levels >= 2"),
    ("learner:\n  subgoal_l2: -1\n", "learner.subgoal_l2 and learner.subgoal_preact_l2 must"),
    ("learner:\n  subgoal_preact_l2: -0.1\n", "learner.subgoal_l2 and learner.subgoal_preact_l2"),
    ("learner:\n  subgoal_preact_to: object\n", "learner.subgoal_preact_to must be centre or goal"),
    ("learner:\n  subgoal_preact_free: -1\n", "learner.subgoal_preact_free must be >= 0"),
    ("learner:\n  subgoal_preact_to: goal\nagent:\n  subgoal_offset: [0.1, 0.1]\n",
     "learner.subgoal_preact_to goal needs absolute subgoals"),
    ("agent:\n  top_time_aware: true\n",  # the default top level is capped
     "agent.top_time_aware needs agent.levels >= 2 and agent.top_until_episode_end"),
    ("agent:\n  levels: 1\n  horizons: [50]\n  top_time_aware: true\n"
     "  top_until_episode_end: true\n", "agent.top_time_aware needs agent.levels >= 2"),
    ("agent:\n  top_time_aware: true\n  top_until_episode_end: true\nreplay:\n"
     "  her_at_sample: true\n", "agent.top_time_aware does not work with replay.her_at_sample"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_configs_name_the_problem_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override,message", [
    ("nodot=1", "must look like section.key=value"),
    ("learner.batch_size", "must look like section.key=value"),
    ("learner.nope=1", "unknown key 'learner.nope'"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, (override,))


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/x.yaml")


@pytest.mark.parametrize("text,expected", [("1e-3", 1e-3), ("5E-4", 5e-4), ("2e+1", 20.0)])
def test_exponent_without_a_dot_is_a_float(text, expected):
    """PyYAML reads 1e-3 as a string; a float field takes it as the number it means."""
    assert load_config(None, (f"learner.actor_lr={text}",)).learner.actor_lr == expected
    assert load_config(None, (f"env.goal_threshold={text}",)).env.goal_threshold == expected
    with pytest.raises(ConfigError, match="learner.actor_lr' must be float"):
        load_config(None, ("learner.actor_lr=1e-3x",))


@pytest.mark.parametrize("batch,ratio", [(256, 0.4), (1024, 0.1), (2048, 0.05)])
def test_samples_per_env_step_hold_while_the_batch_grows(batch, ratio):
    config = load_config(None, ("replay.samples_per_env_step=102.4",
                                f"learner.batch_size={batch}"))
    assert config.replay.updates_per_env_step == pytest.approx(ratio)
    assert config.replay.updates_per_env_step * batch == pytest.approx(102.4)


def test_without_samples_per_env_step_the_ratio_is_as_given():
    config = load_config(None, ("replay.updates_per_env_step=0.25", "learner.batch_size=1024"))
    assert config.replay.updates_per_env_step == 0.25 and config.replay.samples_per_env_step is None


def test_grasp_start_is_refused_on_the_point_mass():
    from hacray.envs import make_env
    config = load_config(None, ("env.id=PointMass-v0", "env.grasp_start=0.5"))
    with pytest.raises(ConfigError, match="env.grasp_start needs a Fetch task .*PointMass-v0 has none"):
        make_env(config.env)
