"""Ray internals this project uses (cluster/ray_compat.py): each still there and still doing
what the project relies on. An upgrade that moves one fails here, not in a stage."""
from __future__ import annotations

import pytest
import ray
from ray.tune.execution import class_cache

from cluster import ray_compat


def test_checked_version_is_the_installed_one():
    assert ray.__version__ == ray_compat.CHECKED_WITH["ray"]


def test_auto_resolution_answers_an_address_or_a_connection_error(monkeypatch):
    """`auto` means the Ray running on this machine: its host:port, or ConnectionError when
    none runs (which one depends on what else runs here)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    recorded = ray_compat.recorded_head_address()
    assert recorded is None or isinstance(recorded, str)
    try:
        address = ray_compat.resolve_auto_address()
    except ConnectionError:
        return
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), address


def test_token_auth_switch_and_the_tune_env_list_exist():
    from ray._private.authentication import authentication_token_setup

    assert callable(authentication_token_setup._enable_token_auth)
    assert isinstance(class_cache.ENV_VARS_TO_PROPAGATE, set)


@pytest.mark.slow  # a local Ray
def test_the_gcs_probe_accepts_this_processes_own_cluster(local_ray):
    assert ray_compat.gcs_accepts(ray.get_runtime_context().gcs_address)
