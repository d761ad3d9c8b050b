"""The algorithm is plain Python: only the Ray shells (actors, their driver, sweeps) import ray."""
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hacray"
RAY_IMPORT = re.compile(r"^\s*(import ray|from ray[ .])", re.MULTILINE)


def test_only_the_ray_shells_import_ray():
    importing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if RAY_IMPORT.search(p.read_text()))
    assert importing == ["runners/distributed.py", "runners/evaluator_actor.py",
                         "runners/learner_actor.py", "runners/ray_util.py",
                         "runners/replay_actor.py", "runners/tune.py", "runners/worker_actor.py"]


def test_the_algorithm_never_imports_torch_outside_the_learner_and_networks():
    algo = PACKAGE / "algo"
    importing = sorted(p.name for p in algo.glob("*.py") if "import torch" in p.read_text())
    assert importing == ["feed.py", "learner.py", "level.py", "networks.py"]


def test_the_cli_and_what_a_rollout_worker_runs_import_neither_torch_nor_ray():
    """A worker plays episodes with the numpy policy; the CLI parses and reports errors: on a
    32-worker node each needless torch is ~32 copies in memory. A fresh interpreter tells."""
    import subprocess
    import sys
    code = ("import sys, hacray.cli, hacray.algo.rollout, hacray.algo.replay, hacray.envs\n"
            "import hacray.runners.common\n"
            "from hacray.config import load_config\n"
            "from hacray.envs import make_env\n"
            "make_env(load_config(None, ('env.id=PointMass-v0',)).env)\n"
            "assert hacray.cli.main(['train', '--set', 'learner.nope=1']) == 2\n"
            "print(sorted({'torch', 'ray'} & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_rollout_worker_imports_no_torch():
    """What a worker process imports: its actor's module, and those of the actors it holds
    handles to (Ray imports an actor's module to make a handle): ray, but not torch."""
    import subprocess
    import sys
    code = ("import sys, hacray.runners.worker_actor, hacray.runners.replay_actor\n"
            "import hacray.runners.learner_actor\n"
            "print('torch' in sys.modules, 'ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_layers_point_one_way():
    """envs never import the algorithm; evaluation and videos never import the runners."""
    def imports(path: Path) -> set[str]:
        return set(re.findall(r"^\s*(?:from|import) (hacray[\w.]*)", path.read_text(), re.M))
    for path in (PACKAGE / "envs").glob("*.py"):
        assert not {m for m in imports(path) if m.startswith("hacray.algo")}, path.name
    for name in ("evaluate.py", "video.py", "render.py"):
        assert not {m for m in imports(PACKAGE / name) if m.startswith("hacray.runners")}, name
