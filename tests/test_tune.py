"""``hacray tune``: grid planning and the summary without Ray (milliseconds), then one sweep on
Ray Tune on the tiny env (about a minute on two cores)."""
import csv
import json
import math

import pytest

from hacray.cli import main
from hacray.runners import tune as sweep
from hacray.runners import tune_summary


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- planning -------------------------------------------------------------------------------
def test_grid_values_split_on_top_level_commas_only():
    grid = sweep.parse_grid(["learner.actor_lr=1e-3, 5e-4", "learner.hidden=[64,64],[32]"])
    assert grid == [("learner.actor_lr", ["1e-3", "5e-4"]),
                    ("learner.hidden", ["[64,64]", "[32]"])]


def test_grid_is_the_product_first_key_slowest():
    points = sweep.grid_points([("a.x", ["1", "2"]), ("b.y", ["p", "q", "r"])])
    assert len(points) == 6
    assert points[0] == (("a.x", "1"), ("b.y", "p"))
    assert points[3] == (("a.x", "2"), ("b.y", "p"))
    assert sweep.grid_points([]) == [()]


@pytest.mark.parametrize("text,expected", [
    ("1e-3", "0.001"), ("5E-4", "0.0005"), ("0.5", "0.5"), ("3", "3"), ("hac", "hac"),
    ("[64,64]", "[64,64]"), ("true", "true")])
def test_numbers_yaml_reads_as_strings_are_made_numbers(text, expected):
    assert sweep.yaml_value(text) == expected


def test_plan_builds_every_point_times_every_seed(point_mass_yaml):
    grid = sweep.parse_grid(["learner.actor_lr=1e-3,5e-4", "agent.relabel=hac,none"])
    trials = sweep.plan_trials(point_mass_yaml, grid, 3, ["train.seed=5", "learner.critic_lr=2e-4"])
    assert len(trials) == 12 and len({t.name for t in trials}) == 12
    assert [t.seed for t in trials[:3]] == [5, 6, 7]
    assert [t.config.train.seed for t in trials[:3]] == [5, 6, 7]
    assert trials[0].config.learner.actor_lr == 0.001 and trials[0].config.agent.relabel == "hac"
    assert all(t.config.learner.critic_lr == 0.0002 for t in trials)
    last = trials[-1]
    assert last.point == 3 and last.config.learner.actor_lr == 0.0005
    assert last.config.agent.relabel == "none" and last.name == "g3-actor_lr=5e-4_relabel=none-s7"


def test_plan_without_a_grid_is_seeds_of_the_config(point_mass_yaml):
    trials = sweep.plan_trials(point_mass_yaml, [], 2)
    assert [t.name for t in trials] == ["g0-s0", "g0-s1"]


def test_trials_keep_no_replay_snapshots_unless_asked(point_mass_yaml):
    (default,) = sweep.plan_trials(point_mass_yaml, [], 1)
    (asked,) = sweep.plan_trials(point_mass_yaml, [], 1, ["train.save_replay=true"])
    assert (default.config.train.save_replay, asked.config.train.save_replay) == (False, True)


@pytest.mark.parametrize("argv,message", [
    (["--grid", "lr=1,2"], "--grid 'lr=1,2' must look like section.key=value1,value2"),
    (["--grid", "learner.actor_lr"], "must look like section.key="),
    (["--grid", "learner.actor_lr=1e-3,,5e-4"], "must look like section.key="),
    (["--grid", "learner.actor_lr=1e-3", "--grid", "learner.actor_lr=5e-4"], "names "
     "learner.actor_lr twice"),
    (["--grid", "learner.actor_rl=1e-3,5e-4"],
     "unknown key 'learner.actor_rl' (did you mean 'actor_lr'?)"),
    (["--grid", "learner.batch_size=64,x"], "'learner.batch_size' must be int, got 'x'"),
    (["--grid", "env.id=PointMass-v0,NoSuchEnv-v0"], "env.id 'NoSuchEnv-v0' is not a registered"),
    (["--grid", "train.seed=1,2"], "--seeds chooses the seeds"),
    (["--grid", "train.max_env_steps=1,2", "--max-env-steps", "5"], "both by --grid and by"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--trial-cpus", "0"], "--trial-cpus must be > 0"),
    (["--set", "distributed.workers=2"], "tune trials are local runs"),
])
def test_bad_sweeps_are_one_line_exit_2_and_create_nothing(tmp_path, capsys, point_mass_yaml,
                                                           argv, message):
    out = tmp_path / "sweep"
    code, stdout, err = run(capsys, "tune", point_mass_yaml, "--out", out, *argv)
    assert code == 2 and stdout == ""
    assert err.startswith("hacray: error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_an_existing_output_directory_is_never_clobbered(tmp_path, capsys, point_mass_yaml):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "tune", point_mass_yaml, "--out", out)
    assert code == 2 and "already exists and is not empty" in err
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


# -- the summary, from hand-written metrics -------------------------------------------------
def write_run(out, name, successes, partial_line=False):
    run_dir = out / name
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"env_steps": 1000 * (i + 1), "wall_time_s": 10.0 * (i + 1),
                         "eval/success_rate": s}) + "\n" for i, s in enumerate(successes)]
    tail = '{"env_steps": 99' if partial_line else ""  # a record still being written
    (run_dir / "metrics.jsonl").write_text("".join(lines) + tail)


def test_summary_medians_and_first_arrival_at_the_target(tmp_path, point_mass_yaml):
    trials = sweep.plan_trials(point_mass_yaml, sweep.parse_grid(["agent.relabel=hac,none"]), 3)
    for trial, successes in zip(trials, [
            [0.5, 0.9, 0.8], [0.0, 0.2, 1.0], [0.95, 0.7, 0.6],  # hac: reached at 2k, 3k, 1k
            [0.0, 0.1, 0.2], [0.0, 0.0, 0.0]]):                  # none: never; seed 2 missing
        write_run(tmp_path, trial.name, successes, partial_line=True)
    hac, none = tune_summary.summarize(trials, tmp_path)
    assert hac["agent.relabel"] == "hac" and hac["seeds"] == 3
    assert hac["success_median"] == 0.8 and hac["success_min"] == 0.6
    assert hac["success_max"] == 1.0 and math.isclose(hac["success_mean"], 0.8)
    assert hac["steps_to_0.9"] == 2000 and hac["wall_time_s"] == 30.0
    assert none["seeds"] == 2 and none["seeds_planned"] == 3
    assert none["success_median"] == 0.1 and none["steps_to_0.9"] is None
    table = tune_summary.format_table([hac, none]).splitlines()
    assert table[0].split() == ["agent.relabel", "seeds", "success_median", "success_mean",
                                "success_min", "success_max", "steps_to_0.9", "wall_time_s"]
    assert table[2].split() == ["none", "2/3", "0.10", "0.10", "0.00", "0.20", "-", "30.0"]


# -- on Ray Tune ----------------------------------------------------------------------------
@pytest.mark.ray
def test_sweep_ranks_hindsight_relabelling_above_none(tmp_path, capsys, point_mass_yaml):
    out = tmp_path / "sweep"
    code, stdout, err = run(
        capsys, "tune", point_mass_yaml, "--grid", "agent.relabel=hac,none", "--seeds", "2",
        "--max-env-steps", "3000", "--set", "train.eval_every=1000", "--set",
        "train.eval_episodes=10", "--set", "train.tensorboard=false", "--out", out)
    assert code == 0, err
    assert err.count(" done: eval success ") == 4
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["agent.relabel"] for row in rows] == ["hac", "none"]
    assert all(row["seeds"] == "2" for row in rows)
    for row in rows:
        for key in ("success_median", "success_mean", "success_min", "success_max"):
            assert 0.0 <= float(row[key]) <= 1.0
    hac, none = rows
    assert float(hac["success_median"]) >= 0.5 and float(none["success_max"]) < 0.5
    assert stdout.splitlines()[0].split()[0] == "agent.relabel" and len(stdout.splitlines()) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and len(summary["rows"][0]["trials"]) == 2
    for trial in sweep.plan_trials(point_mass_yaml, sweep.parse_grid(["agent.relabel=hac,none"]),
                                   2):
        records = sweep.read_records(out / trial.name / "metrics.jsonl")
        assert [r["env_steps"] // 1000 for r in records] == [1, 2, 3]
        assert (out / trial.name / "checkpoints" / "best.pt").is_file()
    assert (out / sweep.TUNE_DIR).is_dir()  # Tune's own files stay inside the sweep
