"""The distributed runner on a local Ray of 2 CPUs (Ray tier, about two minutes)."""
import json
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from hacray import checkpoint  # noqa: E402
from hacray.config import load_config  # noqa: E402
from hacray.runners.distributed import train_distributed  # noqa: E402

pytestmark = pytest.mark.ray
POINT_MASS = Path(__file__).resolve().parents[1] / "configs" / "point_mass.yaml"
# On 2 shared cores the learner is the bottleneck; a tight limiter tolerance keeps the updates
# per env step as close to the local runner's exact ratio as the workers' episodes allow.
FAST = ("distributed.workers=2", "distributed.worker_cpus=0.5", "distributed.timeout_s=60",
        "replay.tolerance=50", "train.tensorboard=false")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_workers_learn_the_tiny_env(tmp_path, local_ray):
    # 14 evaluations rather than the config's 10: on a quiet 2-core machine, 5 runs of 10
    # peaked at 0.85-1.0 (the 0.85 failed a CI check); 4 runs of 14 peaked at 0.95-1.0 and
    # ended at 0.8-1.0
    config = load_config(POINT_MASS, (*FAST, "train.max_env_steps=12600"))
    run_dir = tmp_path / "run"
    last = train_distributed(config, run_dir)
    saved = records(run_dir)
    assert saved[-1]["env_steps"] == last["env_steps"] >= config.train.max_env_steps
    # it learns, and stays learnt (runs on Ray are not bit-for-bit repeatable: allow a dip;
    # one run on a machine loaded by two other trainings peaked at 1.0, ended 0.8, 0.8, 0.75)
    success = [r["eval/success_rate"] for r in saved]
    assert max(success) >= 0.9 and sum(success[-3:]) / 3 >= 0.75, success
    # episodes from both workers reached replay, acted on by advancing weight versions
    assert last["replay/episodes_from_worker_0"] > 0 and last["replay/episodes_from_worker_1"] > 0
    versions = [r["policy_version"] for r in saved]
    assert versions == sorted(versions) and versions[-1] > 10
    assert 0 <= last["policy_lag"] < versions[-1]
    # the limiter held updates per env step at the ratio, within its tolerance plus the one
    # episode per worker that was under way
    ratio, slack = config.replay.updates_per_env_step, config.replay.tolerance + 2 * 30 * 0.25
    assert abs(last["updates"] - ratio * last["env_steps"]) <= slack
    state = checkpoint.load(checkpoint.list_checkpoints(run_dir)[-1])
    assert state["counters"]["env_steps"] == last["env_steps"]
    assert state["learner"]["updates"] == last["updates"]
    assert not [a for a in ray.util.list_named_actors() if a.startswith("hacray-")]


def named(prefix: str):
    """The handle of this run's actor whose name starts with ``prefix`` (names end in a tag)."""
    name, = [n for n in ray.util.list_named_actors() if n.startswith(prefix)]
    return ray.get_actor(name)


def kill_worker_0_once(after_episodes: int, killed: dict) -> None:
    """From a second thread: kill worker 0's process once it has sent some episodes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        try:
            status = ray.get(named("hacray-replay-").status.remote(), timeout=10)
            if status.episodes_from_worker.get(0, 0) >= after_episodes:
                killed["episodes"] = status.episodes_from_worker[0]
                ray.kill(named("hacray-worker-0-"), no_restart=False)
        except (ValueError, ray.exceptions.RayError):  # not started yet, or a busy machine
            pass
        time.sleep(0.1)


def test_a_killed_worker_comes_back_and_a_resumed_run_continues(tmp_path, local_ray):
    run_dir, killed = tmp_path / "run", {}
    short = FAST + ("train.eval_every=600", "train.eval_episodes=5")
    killer = threading.Thread(target=kill_worker_0_once, args=(1, killed), daemon=True)
    killer.start()
    # long enough for a restart (a new process importing torch) on a busy machine
    first = train_distributed(load_config(POINT_MASS, short + ("train.max_env_steps=3600",)),
                              run_dir)
    killer.join(timeout=5)
    # restarted with fresh state, it fetched the current weights and went on sending episodes
    assert killed, "worker 0 was never killed"
    assert first["replay/episodes_from_worker_0"] > killed["episodes"] + 3, (killed, first)
    second = train_distributed(load_config(POINT_MASS, short + ("train.max_env_steps=4200",)),
                               run_dir, resume=True)
    saved = records(run_dir)
    # the replay came back from its snapshot: the resumed run starts with the buffer it left
    resumed_at = next(i for i, r in enumerate(saved) if r["env_steps"] > first["env_steps"])
    assert saved[resumed_at]["replay/level0_size"] > first["replay/level0_size"]
    for key in ("env_steps", "updates", "episodes", "policy_version", "wall_time_s"):
        values = [r[key] for r in saved]
        assert values == sorted(values), key
    assert saved[-1]["env_steps"] == second["env_steps"] >= 4200
    assert len(saved) >= 7


def test_two_replay_shards_hold_the_ratio_each_and_resume_from_their_snapshots(
        tmp_path, local_ray):
    """Worker i writes to shard i mod 2; the learner samples from both; each shard grants
    updates at the ratio of its own env steps, so the run holds it too; a resumed run gets
    each shard's buffer back from the checkpoint's snapshot."""
    run_dir = tmp_path / "run"
    short = FAST + ("distributed.replay_shards=2", "train.eval_every=600",
                    "train.eval_episodes=5")
    config = load_config(POINT_MASS, short + ("train.max_env_steps=3000",))
    first = train_distributed(config, run_dir)
    ratio, tolerance = config.replay.updates_per_env_step, config.replay.tolerance
    slack = 30 * ratio + config.learner.updates_per_call  # an episode under way, a reply
    for shard in (0, 1):
        steps, granted = (first[f"replay/shard{shard}_{k}"] for k in ("env_steps",
                                                                      "updates_granted"))
        assert steps > 0 and granted > 0, (shard, first)
        assert abs(granted - ratio * steps) <= tolerance + slack, (shard, steps, granted)
    assert first["replay/shard0_env_steps"] + first["replay/shard1_env_steps"] == \
        first["env_steps"]
    assert abs(first["updates"] - ratio * first["env_steps"]) <= 2 * (tolerance + slack)
    assert first["replay/episodes_from_worker_0"] > 0 and first["replay/episodes_from_worker_1"] > 0
    saved = checkpoint.list_checkpoints(run_dir)[-1]
    snapshot, _ = checkpoint.load_replay(run_dir, checkpoint.load(saved)["counters"]["env_steps"])
    assert len(snapshot["shards"]) == 2
    second = train_distributed(load_config(POINT_MASS, short + ("train.max_env_steps=3600",)),
                               run_dir, resume=True)
    saved = records(run_dir)
    resumed_at = next(i for i, r in enumerate(saved) if r["env_steps"] > first["env_steps"])
    assert saved[resumed_at]["replay/level0_size"] > first["replay/level0_size"]
    assert second["env_steps"] >= 3600 and second["updates"] > first["updates"]


def test_synchronous_one_worker_reproduces_the_local_run(tmp_path, local_ray):
    """distributed.synchronous with one worker is the local runner's loop in actors: the same
    seed gives the same episodes, the same updates and the same weights, bit for bit."""
    import torch

    from hacray.runners.local import train_local
    short = ("train.max_env_steps=1800", "train.eval_every=600", "train.eval_episodes=5",
             "train.tensorboard=false")
    train_local(load_config(POINT_MASS, short), tmp_path / "local")
    train_distributed(load_config(POINT_MASS, short + (
        "distributed.workers=1", "distributed.synchronous=true",
        "distributed.worker_cpus=0.5")), tmp_path / "ray")
    local, on_ray = records(tmp_path / "local"), records(tmp_path / "ray")
    assert len(local) == len(on_ray) == 3
    for key in ("env_steps", "updates", "episodes", "eval/success_rate", "eval/return",
                "train/success_rate", "train/return", "replay/level0_size", "replay/level1_size"):
        assert [r[key] for r in local] == [r[key] for r in on_ray], key
    assert local[-1]["updates"] > 0
    states = [checkpoint.load(checkpoint.list_checkpoints(tmp_path / d)[-1])["learner"]
              for d in ("local", "ray")]
    for level_local, level_ray in zip(states[0]["levels"], states[1]["levels"]):
        for net in ("actor", "critic", "actor_target", "critic_target"):
            for name, tensor in level_local[net].items():
                assert torch.equal(tensor, level_ray[net][name]), (net, name)
    assert torch.equal(states[0]["obs_stats"]["sum"], states[1]["obs_stats"]["sum"])


def test_a_local_ray_started_by_hacray_runs_its_actors_at_normal_priority():
    """Ray starts workers at nice 15 by default: beside any busy process they starve (~3% of a
    core each, measured). hacray's own local Ray runs them at the priority of the run."""
    import os
    import subprocess
    import sys
    script = ("import os, ray\n"
              "from hacray.runners.ray_util import init_ray\n"
              "assert init_ray(None, include_dashboard=False)\n"
              "print(ray.get(ray.remote(lambda: os.nice(0)).remote()), os.nice(0))\n"
              "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    worker_nice, driver_nice = map(int, done.stdout.split()[-2:])
    assert worker_nice == driver_nice


@pytest.mark.parametrize("cpus,asked,expected", [(0.5, 0, 1), (2, 0, 2), (2, 1, 1)])
def test_the_learner_actor_runs_as_many_level_threads_as_it_was_granted_cpus(
        local_ray, cpus, asked, expected):
    from hacray.runners.learner_actor import granted_level_threads
    config = load_config(POINT_MASS, (f"learner.level_threads={asked}",))  # 2 levels
    task = ray.remote(lambda: granted_level_threads(config).learner.level_threads)
    assert ray.get(task.options(num_cpus=cpus).remote(), timeout=60) == expected


@pytest.mark.parametrize("asked,expected", [(0, 2.0), (1, 1.0), (3, 2.0)])
def test_a_cluster_learner_asks_a_cpu_per_level_thread(monkeypatch, asked, expected):
    from hacray.runners import distributed
    monkeypatch.setattr(distributed.ray, "cluster_resources", lambda: {"CPU": 64.0})
    config = load_config(POINT_MASS, ("distributed.address=auto", "distributed.workers=2",
                                      f"learner.level_threads={asked}"))
    cpus, gpus = distributed._resources(config)
    assert cpus["learner"] == expected and cpus["replay"] == 1.0 and gpus == 0.0
