"""The hacray_* metrics of a running job reach Ray's per-node Prometheus endpoint, and the
Grafana dashboard shipped in cluster/grafana asks only for series that are there (Ray tier)."""
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "cluster" / "grafana" / "hacray_dashboard.json"
WANTED = ("ray_hacray_env_steps_total", "ray_hacray_episodes_total", "ray_hacray_updates_total",
          "ray_hacray_replay_size_level0", "ray_hacray_replay_size_level1",
          "ray_hacray_eval_success", "ray_hacray_policy_lag", "ray_hacray_policy_version")


def scrape(session: Path) -> str:
    """The node's metrics in Prometheus text, from the port Ray wrote into its session folder."""
    (port_file,) = session.glob("metrics_export_port_*")
    port = int(port_file.read_text().strip())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def dashboard_series() -> set[str]:
    names = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"ray_hacray_[a-z_]+(?:\[0-9\]\+)?", target["expr"]))
    return names


def test_a_running_jobs_metrics_reach_the_nodes_prometheus_endpoint(tmp_path):
    run_dir = tmp_path / "run"
    run = subprocess.Popen(
        [sys.executable, "-m", "hacray", "train", str(ROOT / "configs" / "point_mass.yaml"),
         "--workers", "1", "--run-dir", str(run_dir), "--max-env-steps", "10000000",
         "--set", "train.eval_every=300", "--set", "train.video_every=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, text, missing = time.time() + 180, "", list(WANTED)
        while time.time() < deadline and run.poll() is None and missing:
            time.sleep(2)
            session = Path("/tmp/ray/session_latest").resolve()
            if (run_dir / "metrics.jsonl").exists() and list(session.glob("metrics_export_*")):
                text = scrape(session)
                missing = [name for name in WANTED if not re.search(rf"^{name}{{", text, re.M)]
        assert run.poll() is None, run.communicate()[1][-2000:]
        assert not missing, (missing, text[-2000:])
        # the series are this run's: Ray labels them with its session
        assert f'SessionName="{session.name}"' in text
        assert re.search(r'^ray_hacray_env_steps_total\{.*role="worker-0".*\} [1-9]', text, re.M)
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=120)
    # every series the dashboard plots is one the endpoint serves
    served = set(re.findall(r"^(ray_hacray_[a-z_0-9]+)\{", text, re.M))
    plotted = dashboard_series()
    assert len(plotted) >= 7, plotted
    for name in plotted:  # names, or a regex for the per-level series
        assert any(re.fullmatch(name, series) for series in served), (name, served)
