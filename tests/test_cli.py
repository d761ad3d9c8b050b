"""The command line: bad input is one line, exit 2, nothing written (component tier)."""
import json

import pytest

from hacray.cli import main

FAST = ["--max-env-steps", "300", "--set", "train.eval_every=150", "--set", "train.eval_episodes=2",
        "--set", "train.tensorboard=false"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("extra,message", [
    (["--set", "learner.batch_sise=1"], "unknown key 'learner.batch_sise' (did you mean"),
    (["--set", "learner.batch_size=x"], "'learner.batch_size' must be int"),
    (["--set", "env.id=NoSuchEnv-v0"], "env.id 'NoSuchEnv-v0' is not a registered"),
    (["--seed", "1", "--set", "agent.levels=0"], "agent.levels must be >= 1"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, point_mass_yaml,
                                                         extra, message):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", str(point_mass_yaml), "--run-dir", str(run_dir), *extra)
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("hacray: error:")
    assert not run_dir.exists()


@pytest.mark.mujoco
def test_non_goal_env_is_rejected(tmp_path, capsys, point_mass_yaml):
    code, _, err = run(capsys, "train", str(point_mass_yaml), "--run-dir", str(tmp_path / "r"),
                       "--set", "env.id=CartPole-v1")
    assert code == 2 and "is not goal-conditioned" in err


def test_existing_run_dir_is_never_clobbered(tmp_path, capsys, point_mass_yaml):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "train", str(point_mass_yaml), "--run-dir", str(run_dir), *FAST)
    assert code == 2 and "already exists" in err
    assert (run_dir / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in run_dir.iterdir()) == ["precious.txt"]


def test_resume_needs_an_existing_run(tmp_path, capsys, point_mass_yaml):
    code, _, err = run(capsys, "train", str(point_mass_yaml), "--resume", "--run-dir",
                       str(tmp_path / "none"))
    assert code == 2 and "cannot resume" in err


def test_train_writes_config_metrics_checkpoints_and_tensorboard(tmp_path, capsys,
                                                                 point_mass_yaml):
    run_dir = tmp_path / "run"
    code, out, _ = run(capsys, "train", str(point_mass_yaml), "--run-dir", str(run_dir),
                       "--max-env-steps", "300", "--set", "train.eval_every=150",
                       "--set", "train.eval_episodes=2")
    assert code == 0 and json.loads(out)["env_steps"] >= 300
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for key in ("env_steps", "updates", "wall_time_s", "eval/success_rate",
                "eval/level0_subgoal_reach", "eval/level1_subgoal_spread"):
        assert key in records[0]
    assert records[0]["env_steps"] < records[1]["env_steps"]
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert any((run_dir / "tb").iterdir())
    code, out, _ = run(capsys, "evaluate", str(run_dir), "--episodes", "3", "--json")
    assert code == 0 and 0.0 <= json.loads(out)["eval/success_rate"] <= 1.0
    # a replay snapshot is not a policy: one line, exit 2
    (snapshot,) = (run_dir / "checkpoints").glob("replay_*.pt")
    code, _, err = run(capsys, "evaluate", str(snapshot))
    assert code == 2 and "holds no policy" in err and err.count("\n") == 1


def test_a_checkpoint_copied_out_of_its_run_still_evaluates(tmp_path, capsys, point_mass_yaml):
    import shutil

    import torch
    run_dir = tmp_path / "run"
    assert run(capsys, "train", str(point_mass_yaml), "--run-dir", str(run_dir), *FAST)[0] == 0
    elsewhere = tmp_path / "shared" / "policy.pt"
    elsewhere.parent.mkdir()
    shutil.copyfile(run_dir / "checkpoints" / "best.pt", elsewhere)
    code, out, _ = run(capsys, "evaluate", str(elsewhere), "--episodes", "2", "--json")
    assert code == 0 and json.loads(out)["episodes"] == 2
    # written before checkpoints kept their config: one line naming what to do
    raw = torch.load(elsewhere, weights_only=True)
    raw.pop("config")
    torch.save(raw, elsewhere)
    code, _, err = run(capsys, "evaluate", str(elsewhere))
    assert code == 2 and err.count("\n") == 1
    assert "keeps no config" in err and "inside its run directory" in err
