import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

os.environ.setdefault("MUJOCO_GL", "osmesa")


@pytest.fixture
def point_mass_yaml() -> Path:
    return CONFIGS / "point_mass.yaml"


@pytest.fixture
def configs_dir() -> Path:
    return CONFIGS
