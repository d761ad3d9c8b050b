"""Every config in configs/ loads, builds its env and its levels, and says what it reached
(MuJoCo tier: the Fetch configs make their env)."""
from pathlib import Path

import pytest

from hacray.blueprint import Blueprint
from hacray.config import load_config
from hacray.envs import make_env

pytestmark = pytest.mark.mujoco
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_is_a_flat_and_a_2_level_config_for_every_fetch_task():
    names = {path.stem for path in CONFIGS}
    for task in ("reach", "push", "pick_and_place", "slide"):
        assert {f"fetch_{task}_l1", f"fetch_{task}_l2"} <= names, task


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_a_shipped_config_builds_its_env_and_levels(path):
    config = load_config(path)
    env = make_env(config.env)
    try:
        spaces = Blueprint.of(config, env.spec).spaces
    finally:
        env.close()
    assert len(spaces) == config.agent.levels
    if config.agent.levels > 1:  # every subgoal box has as many bounds as indices
        below = spaces[0]
        assert below.goal_dim == len(env.spec.subgoal_indices)
        # the top level's action: a subgoal, and the env action values it sets itself
        assert spaces[1].act_dim == below.goal_dim + len(config.agent.top_action_indices or [])
        assert spaces[1].direct_dim == len(config.agent.top_action_indices or [])
    if path.stem.startswith("fetch_"):  # the header says what it reached (or that it was not)
        header = "".join(line for line in path.read_text().splitlines()[:3])
        assert "Reached" in header, path.name
