"""End to end on one machine: a 3-node Ray cluster made with ``ray start`` (token auth on), a
``hacray train`` submitted with ``ray job submit``, rollout workers on two different nodes.

The layout follows what train_distributed asks of a cluster (``--address``: requests taken at
their word): learner (1 CPU: one level thread) and replay (1 CPU) packed on one node, each rollout worker 1 CPU,
the evaluator 0.5 CPU. The head has 3 CPUs, two worker nodes 1 CPU each (5 for 4.5 asked):
only the head can take the learner+replay pair, after which every node has at most one CPU
free, so the two workers must land on two different nodes, at least one of them not the head.

Token auth is kept on, the documented way: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (a token
file of this test's own, not ~/.ray/auth_token) in the environment of every ``ray`` command;
the SDK clients send ``Authorization: Bearer <token>``.

The cluster is torn down without ``ray stop`` (which would stop every Ray on the machine, other
users' included): every process it started carries a marker in its environment, and teardown
ends exactly those.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.job_submission import JobStatus, JobSubmissionClient  # noqa: E402
from ray.util.state import StateApiClient  # noqa: E402
from ray.util.state.common import ListApiOptions, StateResource  # noqa: E402

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

ROOT = Path(__file__).resolve().parents[1]
MARKER = "HACRAY_TEST_RAY_CLUSTER"
NODES = {"head": 3, "node-b": 1, "node-c": 1}  # CPUs per node; see the module docstring
START_S, JOB_S, STOP_S = 90, 150, 20  # bounds on every wait


def _free_ports(n: int, taken: set[int]) -> list[int]:
    """``n`` ports free now, distinct from each other and from ``taken``, which gains them.

    The OS may hand a probed port out again once its socket closes, so ports probed in
    separate calls can repeat, and Ray refuses to start two components on one port."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(100 * n):
            if len(ports) == n:
                return ports
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in taken:
                taken.add(port)
                ports.append(port)
        raise RuntimeError(f"found only {len(ports)} of {n} free loopback ports")
    finally:
        for sock in socks:
            sock.close()


def _ray_cli() -> str:
    found = shutil.which("ray", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        pytest.skip("the ray command is not installed")
    return found


def _marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries ``MARKER=marker``: the ones this cluster started."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


class Cluster:
    def __init__(self, base: Path):
        self.ray = _ray_cli()
        self.base, self.marker = base, uuid.uuid4().hex
        # short: Ray's unix sockets live under it (path length limit ~107). One per node: nodes
        # that start at once in one temp dir can pick the same socket names
        self.temp_root = Path(tempfile.mkdtemp(prefix="hrj", dir="/tmp"))
        self.token = secrets.token_hex(32)
        token_path = base / "auth_token"
        token_path.write_text(self.token)
        token_path.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS", "RAY_API_SERVER"))}
        self.env.update({MARKER: self.marker, "RAY_AUTH_MODE": "token",
                         "RAY_AUTH_TOKEN_PATH": str(token_path),
                         "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"})
        self.ports_taken: set[int] = set()  # every port given to a component of this cluster
        self.gcs_port, self.dashboard_port, self.client_port = _free_ports(3, self.ports_taken)
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.procs: dict[str, subprocess.Popen] = {}

    def start_node(self, name: str, cpus: int) -> None:
        agent, agent_grpc, runtime_env, metrics, node_mgr, obj_mgr = _free_ports(
            6, self.ports_taken)
        args = [self.ray, "start", "--block", "--disable-usage-stats",
                "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_root / name}",
                f"--num-cpus={cpus}", "--num-gpus=0", f"--resources={json.dumps({name: 1})}",
                f"--object-store-memory={100 * 2**20}",
                f"--dashboard-agent-listen-port={agent}",
                f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
                f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}"]
        if name == "head":
            args += ["--head", f"--port={self.gcs_port}", "--include-dashboard=true",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                     f"--ray-client-server-port={self.client_port}"]
        else:
            args += [f"--address=127.0.0.1:{self.gcs_port}"]
        log = open(self.base / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")[-4000:]

    def wait_for(self, what: str, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"ray start ({name}) exited with {proc.returncode} while "
                                f"waiting for {what}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs)
                pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")
            time.sleep(1.0)

    def get(self, path: str, auth: bool = True) -> tuple[int, bytes]:
        request = urllib.request.Request(self.dashboard + path,
                                         headers=self.headers if auth else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def alive_nodes(self) -> list[dict]:
        status, body = self.get("/api/v0/nodes?detail=1&limit=100")
        if status != 200:
            return []
        nodes = json.loads(body)["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def start(self) -> None:
        self.start_node("head", NODES["head"])
        self.wait_for("the head node",
                      lambda: b"Ray runtime started." in (self.base / "head.log").read_bytes(),
                      START_S)
        for name, cpus in NODES.items():
            if name != "head":
                self.start_node(name, cpus)
        self.wait_for(f"{len(NODES)} alive nodes", lambda: len(self.alive_nodes()) == len(NODES),
                      START_S)

    def stop(self) -> list[int]:
        """SIGTERM each ``ray start --block`` (it stops its node's processes), workers first;
        then SIGKILL whatever this cluster started that is still there. Returns survivors."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_S)
        # what outlives its node (dashboard modules, a job's driver): a moment to exit, then KILL
        grace, deadline = time.monotonic() + 3, time.monotonic() + STOP_S
        while (left := _marked_pids(self.marker)) and time.monotonic() < deadline:
            if time.monotonic() > grace:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.5)
        shutil.rmtree(self.temp_root, ignore_errors=True)
        return _marked_pids(self.marker)


@pytest.fixture
def ray_cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        survivors = cluster.stop()
    assert not survivors, f"processes of the test cluster survived teardown: {survivors}"


def _working_dir(base: Path) -> Path:
    """What the job needs, and nothing else (no runs/, no .git): hacray/, configs/, setup."""
    wd = base / "job"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "hacray", wd / "hacray", ignore=ignore)
    shutil.copytree(ROOT / "configs", wd / "configs", ignore=ignore)
    for name in ("setup.py", "setup.cfg"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, wd / name)
    return wd


def test_job_on_a_token_auth_cluster_spreads_workers_over_nodes(tmp_path, ray_cluster):
    from hacray.runners.distributed import CPUS
    assert CPUS == {"learner": 1.0, "replay": 1.0, "eval": 0.5}, \
        "NODES (and the module docstring) assume these requests (and 1 CPU per worker)"
    cluster = ray_cluster
    # token auth is on: the dashboard refuses a request without the token
    assert cluster.get("/api/jobs/", auth=False)[0] == 401
    assert cluster.get("/api/jobs/")[0] == 200

    run_dir = tmp_path / "run"
    hacray = shutil.which("hacray", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    entrypoint = [hacray] if hacray else [sys.executable, "-m", "hacray"]
    entrypoint += ["train", "configs/point_mass.yaml", "--address", "auto", "--workers", "2",
                   "--run-dir", str(run_dir), "--max-env-steps", "600",
                   "--set", "train.eval_every=300", "--set", "train.eval_episodes=5",
                   "--set", "replay.tolerance=50", "--set", "learner.level_threads=1"]
    submission_id = f"hacray-e2e-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [cluster.ray, "job", "submit", "--address", cluster.dashboard,
         "--submission-id", submission_id, "--working-dir", str(_working_dir(tmp_path)),
         "--no-wait", "--", *entrypoint],
        env=cluster.env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stdout + submit.stderr

    client = JobSubmissionClient(cluster.dashboard, headers=cluster.headers)
    deadline = time.monotonic() + JOB_S
    while (status := client.get_job_status(submission_id)) not in {
            JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            pytest.fail(f"job still {status} after {JOB_S} s:\n"
                        f"{client.get_job_logs(submission_id)[-4000:]}")
        time.sleep(2.0)
    logs = client.get_job_logs(submission_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    # no warning repeated per request (Ray's as_future deprecation once printed one per sample)
    assert "deprecat" not in logs.lower(), logs[-4000:]
    # hacray train's last word: one JSON line (actors' log lines may come around it)
    last = [line for line in logs.splitlines() if line.startswith('{"run_dir"')]
    assert last, logs[-4000:]
    headline = json.loads(last[-1])
    assert headline["run_dir"] == str(run_dir) and headline["env_steps"] >= 600

    # the rollout workers ran on two different nodes (dead actors are still listed)
    nodes = {n["node_id"]: n for n in cluster.alive_nodes()}
    state = StateApiClient(cluster.dashboard, headers=cluster.headers)
    workers = state.list(StateResource.ACTORS, options=ListApiOptions(
        filters=[("class_name", "=", "RolloutWorker")], detail=True, timeout=30),
        raise_on_missing_output=False)
    where = {w.name: w.node_id for w in workers}  # names: hacray-worker-<i>-<run tag>
    assert {name.rsplit("-", 1)[0] for name in where} == {"hacray-worker-0", "hacray-worker-1"}
    assert len(where) == 2, workers
    assert len(set(where.values())) == 2, where
    head_id = next(i for i, n in nodes.items() if n["is_head_node"])
    assert set(where.values()) <= set(nodes) and set(where.values()) != {head_id}
    learner = state.list(StateResource.ACTORS, options=ListApiOptions(
        filters=[("class_name", "=", "LearnerActor")], detail=True, timeout=30),
        raise_on_missing_output=False)
    assert [a.node_id for a in learner] == [head_id]

    # the run directory: config, metrics, checkpoints, TensorBoard events
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records and records[-1]["env_steps"] == headline["env_steps"]
    assert records[-1]["replay/episodes_from_worker_0"] > 0
    assert records[-1]["replay/episodes_from_worker_1"] > 0
    assert list((run_dir / "checkpoints").glob("ckpt_*.pt"))
    assert (run_dir / "config.yaml").is_file() and list((run_dir / "tb").iterdir())
