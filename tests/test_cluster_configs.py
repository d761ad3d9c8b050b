"""Cluster launcher files: valid for Ray, offline, and never exposing Ray to the internet.

Validation is Ray's own: ``prepare_config`` (merges the provider's defaults.yaml, no cloud calls
and no credentials) then ``validate_config`` (the JSON schema and node-type checks ``ray up``
applies). Security rules are checked on the prepared config, so a default that a file forgets
to override (AWS's default head command binds the dashboard to 0.0.0.0) is caught too.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
CLUSTER_FILES = sorted(CLUSTER_DIR.glob("*.yaml"))
OPEN_TO_ALL = {"0.0.0.0/0", "::/0"}
SSH_PORT = 22
DASHBOARD_LOCAL = re.compile(r"--dashboard-host[= ](127\.0\.0\.1|localhost)(\s|$)")


def prepared(path: Path) -> dict[str, Any]:
    return prepare_config(yaml.safe_load(path.read_text()))


def ingress_rules(node: Any) -> Iterator[dict[str, Any]]:
    """Every AWS IpPermissions entry anywhere in a config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "IpPermissions":
                yield from value
            else:
                yield from ingress_rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from ingress_rules(item)


def public_non_ssh_rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules that open anything but SSH to the whole internet (IPv4 or IPv6)."""
    bad = []
    for rule in ingress_rules(config):
        cidrs = {r.get("CidrIp") for r in rule.get("IpRanges", [])}
        cidrs |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        ssh_only = rule.get("FromPort") == SSH_PORT and rule.get("ToPort") == SSH_PORT
        if cidrs & OPEN_TO_ALL and not (ssh_only and rule.get("IpProtocol") == "tcp"):
            bad.append(rule)
    return bad


def head_starts(config: dict[str, Any]) -> list[str]:
    """Every ``ray start --head`` command line in any command list of a config."""
    lines = [cmd for key, cmds in config.items() if key.endswith("_commands") and cmds
             for cmd in cmds]
    return [line for line in lines if "ray start" in line and "--head" in line]


def insecure_starts(config: dict[str, Any]) -> list[str]:
    """Head start lines that do not bind the dashboard to the loopback interface."""
    return [line for line in head_starts(config) if not DASHBOARD_LOCAL.search(line)]


def test_the_cluster_directory_holds_the_aws_and_onprem_files():
    assert {p.name for p in CLUSTER_FILES} >= {"aws-gpu.yaml", "onprem.yaml"}


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_config_validates_offline_with_rays_own_checks(path):
    validate_config(prepared(path))


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_no_security_group_rule_opens_more_than_ssh_to_the_internet(path):
    assert public_non_ssh_rules(prepared(path)) == []


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_head_start_binds_the_dashboard_to_localhost(path):
    config = prepared(path)
    assert head_starts(config), "no `ray start --head` line found"
    assert insecure_starts(config) == []
    assert "0.0.0.0" not in yaml.safe_dump(config["head_start_ray_commands"])


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_node_installs_this_checkout_of_hacray(path):
    config = prepared(path)
    assert config["file_mounts"].get("~/hacray") == "."
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = config[key]
        installs = [i for i, c in enumerate(commands) if "pip install -e ~/hacray" in c]
        torch = [i for i, c in enumerate(commands) if re.search(r"pip install torch\b", c)]
        assert installs and torch and torch[0] < installs[0], key  # torch wheel chosen first


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_token_authentication_stays_on_for_every_node(path):
    config = prepared(path)
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert any("export RAY_AUTH_MODE=token" in cmd for cmd in config["setup_commands"])


@pytest.mark.parametrize("rule", [
    {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"FromPort": 6379, "ToPort": 6379, "IpProtocol": "tcp", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    {"FromPort": 0, "ToPort": 65535, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
])
def test_the_security_check_catches_a_public_ray_port(rule):
    config = prepared(CLUSTER_DIR / "aws-gpu.yaml")
    config["provider"]["security_group"]["IpPermissions"] = [rule]
    assert public_non_ssh_rules(config) == [rule]


def test_the_dashboard_check_catches_rays_public_default():
    raw = yaml.safe_load((CLUSTER_DIR / "aws-gpu.yaml").read_text())
    del raw["head_start_ray_commands"]  # AWS's defaults.yaml starts the head with 0.0.0.0
    config = prepare_config(copy.deepcopy(raw))
    assert insecure_starts(config) and "--dashboard-host=0.0.0.0" in insecure_starts(config)[0]


def test_ssh_and_private_networks_pass_the_security_check():
    rules = [{"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp",
              "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
             {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
              "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]
    assert public_non_ssh_rules({"provider": {"security_group": {"IpPermissions": rules}}}) == []
