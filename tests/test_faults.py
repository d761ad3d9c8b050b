"""Faults: a run's replay actor dies; a rollout worker's process dies; the driver is SIGKILLed,
then resumed; SIGTERM once (graceful) and twice (at once) on a run on Ray."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from hacray import checkpoint
from hacray.config import load_config

WAIT_S = 180  # longest any step of a fault test waits on a loaded 2-core machine


def records(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def written(run_dir):
    """Complete lines of metrics.jsonl so far (while a run may be writing one)."""
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def live_actors(class_name):
    """Rows of Ray's actor table for the live actors of one class, keyed by actor id (which a
    restart keeps): Name, Pid, NumRestarts. Read from the GCS directly: Ray's public state API
    (ray.util.state.list_actors) needs the dashboard, which these tests leave off."""
    import ray._private.state
    return {actor_id: row for actor_id, row in ray._private.state.actors().items()
            if row["ActorClassName"] == class_name and row["State"] == "ALIVE"}


def handle_of(class_name):
    """The handle of the run's one live actor of ``class_name``, found by class: names carry a
    per-run tag."""
    import ray
    (row,) = live_actors(class_name).values()
    return ray.get_actor(row["Name"])


@pytest.mark.ray
def test_replay_actor_death_fails_loudly(tmp_path, point_mass_yaml, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    from hacray.runners.distributed import train_distributed

    run_dir = tmp_path / "run"
    config = load_config(point_mass_yaml, (
        "distributed.workers=2", "distributed.worker_cpus=0.5", "distributed.timeout_s=60",
        "replay.tolerance=50", "train.tensorboard=false", "train.eval_every=300",
        "train.eval_episodes=5", "train.max_env_steps=1000000"))
    outcome: dict = {}

    def train():
        try:
            outcome["result"] = train_distributed(config, run_dir)
        except BaseException as err:  # noqa: BLE001 - the test inspects whatever ended the run
            outcome["error"] = err

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        thread = threading.Thread(target=train, daemon=True)
        thread.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not written(run_dir) and thread.is_alive():
            time.sleep(0.2)
        assert records(run_dir), outcome
        ray.kill(handle_of("ReplayActor"))
        killed_at = time.monotonic()
        thread.join(timeout=90)
        took = time.monotonic() - killed_at
        assert not thread.is_alive(), "the run went on after its replay actor died"
        assert "result" not in outcome, f"the run ended as if nothing happened: {outcome}"
        error = outcome["error"]
        assert isinstance(error, RuntimeError), repr(error)
        assert "replay" in str(error) and "\n" not in str(error), str(error)
        assert took < 90
        # nothing was written after the replay died, and the last checkpoint still loads
        path, state, notes = checkpoint.load_latest(run_dir)
        assert not notes
        assert state.counters.env_steps == records(run_dir)[-1]["env_steps"]
        assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        assert not [a for a in ray.util.list_named_actors() if a.startswith("hacray-")]
    finally:
        ray.shutdown()
    # `hacray train --workers N` reports that error as one line, exit code 1
    from hacray import cli

    def fail(args):
        raise error
    monkeypatch.setattr(cli, "_train", fail)
    capsys.readouterr()
    assert cli.main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hacray: error: the replay actor died") and err.count("\n") == 1, err


def until(probe, over, what):
    """Call ``probe`` until it returns something true (Ray errors count as not yet); fail after
    WAIT_S or as soon as the run is over."""
    import ray
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not over.is_set():
        try:
            found = probe()
            if found:
                return found
        except (ValueError, ray.exceptions.RayError):  # not started yet, or a busy machine
            pass
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what}")


def recent_episodes(replay):
    """(arrival number, worker id, policy version) of replay's newest episodes. Reads the
    ReplayActor's ``recent`` and ``from_worker``: status() does not say which version acted."""
    import ray

    def read(actor):
        arrived = sum(actor.from_worker.values())
        recent = list(actor.recent)
        return [(arrived - len(recent) + i + 1, e.worker_id, e.policy_version)
                for i, e in enumerate(recent)]
    return ray.get(replay.__ray_call__.remote(read), timeout=30)


def kill_a_worker_process(run_dir, seen, over):
    """Second thread: once the run has written a record, SIGKILL one worker's process; note what
    the learner, replay and Ray's actor table say until its restart has sent episodes; then end
    the run as a user would, with SIGINT (a final checkpoint, then train_distributed returns)."""
    try:
        # a record: every actor is up and the driver's StopFlag listens for SIGINT
        until(lambda: written(run_dir), over, "the first metrics record")
        watch_a_worker_die_and_return(seen, over)
    except BaseException as err:  # noqa: BLE001 - reported by the test, in the main thread
        seen["error"] = err
    finally:
        if written(run_dir) and not over.is_set():
            os.kill(os.getpid(), signal.SIGINT)


def watch_a_worker_die_and_return(seen, over):
    import ray
    replay, learner = handle_of("ReplayActor"), handle_of("LearnerActor")
    until(lambda: min(ray.get(replay.status.remote(), timeout=30).episodes_from_worker.values(),
                      default=0) >= 3, over, "episodes from both workers")
    actor_id, row = next(iter(live_actors("RolloutWorker").items()))
    # its id from its name, "hacray-worker-<id>-<run tag>": a busy worker answers no calls
    wid = int(re.search(r"worker-(\d+)", row["Name"]).group(1))
    at_kill = ray.get(learner.snapshot.remote(), timeout=30)
    arrived = {n: (w, v) for n, w, v in recent_episodes(replay)}
    seen.update(row=row, worker_id=wid, updates=at_kill.updates, version=at_kill.version,
                episodes=ray.get(replay.status.remote(), timeout=30).episodes_from_worker[wid],
                arrived_before=max(arrived))
    os.kill(row["Pid"], signal.SIGKILL)
    # while it is down: the learner's updates, until the table shows it alive in a new process
    down = [(time.monotonic(), at_kill.updates)]

    def restarted():
        down.append((time.monotonic(), ray.get(learner.snapshot.remote(), timeout=30).updates))
        now = live_actors("RolloutWorker").get(actor_id)
        return now if now and now["Pid"] != row["Pid"] else None
    seen["restarted"] = until(restarted, over, "the worker's restart")
    seen["down"] = down

    def sent_since():
        arrived.update({n: (w, v) for n, w, v in recent_episodes(replay)})
        count = ray.get(replay.status.remote(), timeout=30).episodes_from_worker[wid]
        return count >= seen["episodes"] + 3
    until(sent_since, over, "episodes from the restarted worker")
    seen["arrived"] = arrived


@pytest.mark.ray
def test_a_worker_whose_process_dies_comes_back_with_current_weights(tmp_path, point_mass_yaml):
    """SIGKILL a rollout worker's process: training goes on with the other, Ray restarts it in
    a new process under the same name, it fetches the current weights (and normaliser) before
    it acts, and the run finishes; at most the episode in flight is lost."""
    ray = pytest.importorskip("ray")
    from hacray.runners.distributed import train_distributed
    run_dir, seen, over = tmp_path / "run", {}, threading.Event()
    config = load_config(point_mass_yaml, (
        "distributed.workers=2", "distributed.worker_cpus=0.5", "distributed.timeout_s=60",
        "replay.tolerance=50", "train.tensorboard=false", "train.eval_every=600",
        "train.eval_episodes=5", "train.max_env_steps=30000"))  # the cap, should all else fail
    ray.init(num_cpus=2, include_dashboard=False)
    # the watcher ends the run with SIGINT; one landing after the run must not end pytest
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    watcher = threading.Thread(target=kill_a_worker_process, args=(run_dir, seen, over),
                               daemon=True)
    try:
        watcher.start()
        last = train_distributed(config, run_dir)
    finally:
        over.set()
        watcher.join(timeout=60)
        signal.signal(signal.SIGINT, previous)
        ray.shutdown()
    assert "error" not in seen, seen.get("error")
    old, new, wid = seen["row"], seen["restarted"], seen["worker_id"]
    assert new["Name"] == old["Name"] and new["Pid"] != old["Pid"] and new["NumRestarts"] >= 1
    # the learner went on learning from the other worker while this one was down
    down = seen["down"]
    assert down[-1][1] > down[0][1], down
    # the restarted worker acted with the weights of the kill's time or newer, never with its
    # fresh version-0 policy; the first episode after the kill may be the one it had in flight
    versions = [v for n, (w, v) in sorted(seen["arrived"].items())
                if w == wid and n > seen["arrived_before"]]
    if versions and versions[0] < seen["version"]:
        versions = versions[1:]
    assert versions and min(versions) >= seen["version"], (seen["version"], versions)
    # the run finished with a final record and checkpoint, counting the restart's episodes
    saved = records(run_dir)
    assert saved[-1]["env_steps"] == last["env_steps"] < config.train.max_env_steps
    assert last[f"replay/episodes_from_worker_{wid}"] >= seen["episodes"] + 3
    for key in ("env_steps", "updates", "episodes"):
        values = [r[key] for r in saved]
        assert values == sorted(values), (key, values)
    assert checkpoint.load_latest(run_dir)[1].counters.env_steps == last["env_steps"]


def train_cmd(config, run_dir, max_env_steps, *extra):
    return [sys.executable, "-m", "hacray", "train", str(config), "--run-dir", str(run_dir),
            "--max-env-steps", str(max_env_steps), "--set", "train.eval_every=300",
            "--set", "train.tensorboard=false", *extra]


@pytest.mark.training
def test_driver_sigkill_then_resume_continues(tmp_path, point_mass_yaml):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(point_mass_yaml, run_dir, 20000),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and (
                written(run_dir) < 3 or len(checkpoint.list_checkpoints(run_dir)) < 3):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err
    before = records(run_dir)
    assert len(before) >= 3, err
    ckpt_path, ckpt, _ = checkpoint.load_latest(run_dir)
    ckpt = ckpt.to_dict()
    ckpt_steps, ckpt_updates = ckpt["counters"]["env_steps"], ckpt["learner"]["updates"]
    # the checkpoint is written right after its record: a record newer than the checkpoint
    # may exist, never a checkpoint without its record
    at_ckpt = [r for r in before if r["env_steps"] == ckpt_steps]
    assert at_ckpt and at_ckpt[-1]["updates"] == ckpt_updates
    orphans = [r for r in before if r["env_steps"] > ckpt_steps]
    assert len(orphans) <= 1

    budget = before[-1]["env_steps"] + 1200
    done = subprocess.run(train_cmd(point_mass_yaml, run_dir, budget, "--resume"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = records(run_dir)[len(before):]
    assert after, done.stderr
    # counters continue from the checkpoint (not from 0) and strictly increase
    kept = [r for r in before if r["env_steps"] <= ckpt_steps] + after
    for key in ("env_steps", "updates", "episodes"):
        values = [r[key] for r in kept]
        assert all(a < b for a, b in zip(values, values[1:])), (key, values)
    first = after[0]
    assert first["env_steps"] > ckpt_steps and first["updates"] > ckpt_updates
    assert after[-1]["env_steps"] >= budget
    assert json.loads(done.stdout)["env_steps"] == after[-1]["env_steps"]
    # the normaliser came back with the learner: its statistics keep growing, not restart
    newest = checkpoint.load_latest(run_dir)[1].to_dict()
    assert newest["counters"]["env_steps"] == after[-1]["env_steps"]
    old_count = float(ckpt["learner"]["obs_stats"]["count"])
    new_count = float(newest["learner"]["obs_stats"]["count"])
    assert new_count >= old_count > 0, (old_count, new_count)
    # every observation of the run, before the kill and since the resume, is in the statistics
    # (an episode of n steps has n + 1 observations): a restarted normaliser has fewer
    assert new_count >= newest["counters"]["env_steps"], (old_count, new_count)
    # the policy came back too: the first evaluation after resume is close to the checkpoint's
    # (eval_episodes from the config: 20 on the tiny env)
    assert abs(first["eval/success_rate"] - at_ckpt[-1]["eval/success_rate"]) <= 0.3, (
        at_ckpt[-1]["eval/success_rate"], first["eval/success_rate"])


def start_on_ray(config_yaml, run_dir, eval_episodes):
    """`hacray train --workers 1` in a process of its own (it starts its own Ray), returned once
    its first metrics record is written, with every process it has started by then."""
    psutil = pytest.importorskip("psutil")  # shipped with ray
    proc = subprocess.Popen(train_cmd(
        config_yaml, run_dir, 1000000, "--workers", "1", "--set", "distributed.worker_cpus=0.5",
        "--set", f"train.eval_episodes={eval_episodes}"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None and not written(run_dir):
        time.sleep(0.2)
    if not written(run_dir):
        proc.kill()
        pytest.fail(f"no metrics record within {WAIT_S} s: {proc.communicate()[1][-2000:]}")
    return proc, psutil.Process(proc.pid).children(recursive=True)


def still_running(processes, within_s):
    """Names of ``processes`` still running (zombies count as ended) after up to ``within_s``."""
    import psutil

    def running(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    deadline = time.monotonic() + within_s
    while (left := [p for p in processes if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p.name() for p in left if running(p)]


@pytest.mark.ray
def test_sigterm_on_ray_checkpoints_and_shuts_ray_down_within_10_s(tmp_path, point_mass_yaml):
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    proc, ray_processes = start_on_ray(point_mass_yaml, run_dir, eval_episodes=20)
    assert any(p.name() == "raylet" for p in ray_processes), [p.name() for p in ray_processes]
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and time.monotonic() - sent < 10, err
    assert not still_running(ray_processes, 10 - (time.monotonic() - sent))
    last = records(run_dir)[-1]
    newest = checkpoint.load(checkpoint.list_checkpoints(run_dir)[-1])
    # Ray's log lines may share stdout with the result line
    (result,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert newest["counters"]["env_steps"] == last["env_steps"] == result["env_steps"]


@pytest.mark.ray
def test_a_second_sigterm_on_ray_exits_at_once(tmp_path, point_mass_yaml):
    """The second signal cuts the final evaluation and checkpoint short: exit code 128 + 15, no
    result line, no half-written checkpoint, and the run's Ray still shut down."""
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    # a final evaluation long enough (100 episodes) that the second signal lands before its end
    proc, ray_processes = start_on_ray(point_mass_yaml, run_dir, eval_episodes=100)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and time.monotonic() - sent < 10, err
    assert not [line for line in out.splitlines() if line.startswith("{")], out  # no result
    assert not still_running(ray_processes, 10)
    folder = checkpoint.checkpoint_dir(run_dir)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    for path in [*checkpoint.list_checkpoints(run_dir), *folder.glob("best.pt")]:
        checkpoint.load(path)  # raises CheckpointError for a damaged file
    assert checkpoint.list_checkpoints(run_dir)
