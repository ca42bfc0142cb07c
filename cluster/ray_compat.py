"""Where this project leans on Ray internals, in one place: each use says what it works around,
so an upgrade that moves one breaks here, loudly, not somewhere in a stage."""
from __future__ import annotations

import os
from typing import Optional

CHECKED_WITH = {"ray": "2.60.0"}  # tests/cluster/test_ray_compat.py fails when one is gone
SECRET_PREFIXES = ("AWS_",)

# Settings Ray reads only from the driver process's environment, and who reads each. This is
# the one place the project writes os.environ (set_driver_setting); everything of its own
# travels in the typed configs, and Ray's workers get theirs in the job's runtime_env.
DRIVER_SETTINGS = {
    # The State API (Train's placement-group cleaner) finds the cluster by these.
    "RAY_ADDRESS": "ray/util/state, ray.init",
    "RAY_API_SERVER_ADDRESS": "ray/util/state",
    # Tune's console: the legacy engine is silent at verbosity 0, the new one is not.
    "RAY_AIR_NEW_OUTPUT": "ray/tune/experimental/output.py",
    # Ray Train V2 copies it from the driver to its controller (constants.py).
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "ray/train/v2/_internal/constants.py",
    # Token authentication, set by Ray's own _enable_token_auth (enable_token_auth below).
    "RAY_AUTH_MODE": "ray/_private/authentication",
}


_before: dict[str, Optional[str]] = {}  # what set_driver_setting changed, as it was


def set_driver_setting(name: str, value: Optional[str]) -> None:
    """Set (None: remove) one of DRIVER_SETTINGS for this driver process, until
    restore_driver_settings()."""
    if name not in DRIVER_SETTINGS:
        raise KeyError(f"{name} is not a Ray driver setting this project sets")
    _before.setdefault(name, os.environ.get(name))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def restore_driver_settings() -> None:
    """The environment as it was before this process joined or started its Ray (a later Ray
    of the same process must not be pointed at this one)."""
    for name, value in _before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _before.clear()


def resolve_auto_address() -> str:
    """`RAY_ADDRESS=auto` → the host:port it means on this machine, as ray.init resolves it
    (raises ConnectionError when no Ray runs here)."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    return canonicalize_bootstrap_address_or_die("auto")


def recorded_head_address() -> Optional[str]:
    """The address that `ray start --head` on this machine recorded (what a bare ray.init()
    joins), or None."""
    from ray._private.utils import read_ray_address

    return read_ray_address()


def gcs_accepts(address: str) -> bool:
    """Whether the cluster's GCS takes this process's credentials: a GCS client answers in well
    under a second (ray.init would retry for tens of seconds and then blame the connection)."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=address)
    except AuthenticationError:
        return False
    return True


def enable_token_auth() -> None:
    """RAY_AUTH_MODE=token for this process and what it starts, Ray's cached config refreshed
    (as Ray itself does it; setting the variable alone leaves the driver in 'disabled')."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _before.setdefault("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE"))
    _enable_token_auth()


def keep_secrets_out_of_runtime_envs() -> None:
    """Tune copies the driver's AWS_* variables into every trial actor's runtime environment
    (ray/tune/execution/class_cache.py), which Ray's runtime-env agent writes into its log
    under /tmp/ray in plain text. Trials need no such copy: a worker process inherits the
    environment of the Ray node it runs on (a local Ray, the driver's; a `ray start` node, the
    shell's or the instance's credentials), as Ray Train's workers and Ray tasks already do."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = {
        v for v in class_cache.ENV_VARS_TO_PROPAGATE if not v.startswith(SECRET_PREFIXES)}
