"""The algorithm is plain Python: only the Ray shells (actors, their driver, sweeps) import ray."""
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hacray"
RAY_IMPORT = re.compile(r"^\s*(import ray|from ray[ .])", re.MULTILINE)


def test_only_the_ray_shells_import_ray():
    importing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if RAY_IMPORT.search(p.read_text()))
    assert importing == ["runners/actors.py", "runners/distributed.py", "runners/tune.py"]


def test_the_algorithm_never_imports_torch_outside_the_learner_and_networks():
    algo = PACKAGE / "algo"
    importing = sorted(p.name for p in algo.glob("*.py") if "import torch" in p.read_text())
    assert importing == ["learner.py", "networks.py"]
