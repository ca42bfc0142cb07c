"""Joining the user's Ray cluster, or starting a private local one, so that a run works on any
Ray a user brings (`ray start --head` with or without token auth, `imgclf cluster up`, KubeRay)
and two runs on one machine never confuse their Rays.

Why the environment matters: Ray Train's PlacementGroupCleaner (a detached actor) finds the
dashboard through the State API, which, given no address, looks for *any* Ray on the machine
and fails with "Found multiple active Ray instances" when there are two; the placement group
then stays reserved and the next worker group never starts. Every process of a run is told
which cluster is its own (RAY_ADDRESS or RAY_API_SERVER_ADDRESS in the job's runtime_env)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import ray

from cluster.ray_compat import (
    enable_token_auth,
    gcs_accepts,
    recorded_head_address,
    resolve_auto_address,
    restore_driver_settings,
    set_driver_setting,
)
from lightning_modules.errors import UserError

log = logging.getLogger(__name__)

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_HELP = ("set RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token` on the head node) "
              "or put it in ~/.ray/auth_token")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_available() -> bool:
    """A token the way Ray looks for one: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).expanduser().is_file()


def _resolve(address: str) -> str:
    """`auto` → the host:port it means on this machine (the latest `ray start`)."""
    if address != "auto":
        return address
    try:
        return resolve_auto_address()
    except ConnectionError as e:
        raise UserError(f"RAY_ADDRESS=auto: {e}") from None


_connecting = threading.Lock()


def connect(address: Optional[str], verbose: Optional[bool] = None) -> None:
    """Join --ray-address / $RAY_ADDRESS, or start a private local Ray; never Ray Client.
    Worker output reaches the console only when verbose (default: when this module's logger
    shows DEBUG, as `imgclf -v` sets it).
    Once per process: the pipeline's branches, in threads, share one connection."""
    with _connecting:
        if not ray.is_initialized():
            _connect(address, verbose)


def cluster_to_join(address: Optional[str]) -> bool:
    """Whether connect() would join a running Ray (this process's own, --ray-address,
    $RAY_ADDRESS, or the head `ray start` recorded on this machine) rather than start one."""
    return (ray.is_initialized() or bool(address or os.environ.get("RAY_ADDRESS"))
            or _recorded_head() is not None)


def disconnect() -> None:
    """Leave (or stop) this process's Ray, and put back the driver settings connect() made."""
    with _connecting:
        ray.shutdown()
        restore_driver_settings()


def _connect(address: Optional[str], verbose: Optional[bool]) -> None:
    if verbose is None:
        verbose = log.isEnabledFor(logging.DEBUG)
    set_driver_setting("RAY_AIR_NEW_OUTPUT", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address.startswith("ray://"):
        raise UserError("ray:// (Ray Client) is not supported for Train/Tune; run this on the "
                        "head node with --ray-address auto or host:port")
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose
             else logging.WARNING}
    address = address or _recorded_head()
    if address:
        _join(_resolve(address), quiet)
    else:
        _start_local(quiet)


def _recorded_head() -> Optional[str]:
    """The cluster that `ray start --head` on this machine recorded, if it is up: what a plain
    ray.init() joins, so a driver or Prefect worker on the head node needs no RAY_ADDRESS."""
    address = recorded_head_address()
    if not address:
        return None
    try:
        _reachable(address, timeout_s=1.0)
    except UserError:
        return None
    log.info("joining the Ray cluster started on this machine at %s", address)
    return address


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Ray retries an unreachable GCS for minutes; a plain TCP connect says so in seconds."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address {address!r} is not host:port (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}; is "
                        f"`ray start --head` running there, and RAY_ADDRESS right?") from None


def _authenticate(address: str) -> None:
    """Ray 2.60 turns token auth on for a head started where ~/.ray/auth_token exists, but a
    client given an explicit address does not, and fails with InvalidAuthToken. A head without
    auth, though, cannot run the work of a client in token mode (its Train controller died).
    So: ask the head first; use the token only if it wants one."""
    if os.environ.get(AUTH_MODE) is None and not gcs_accepts(address):
        if not token_available():
            raise UserError(f"the Ray cluster at {address} requires token authentication: "
                            f"{TOKEN_HELP}")
        enable_token_auth()
    if not gcs_accepts(address):
        raise UserError(f"the Ray cluster at {address} refused this machine's credentials "
                        f"(RAY_AUTH_MODE={os.environ.get(AUTH_MODE)}); {TOKEN_HELP}")


def _join(address: str, quiet: dict) -> None:
    from ray.exceptions import AuthenticationError

    _reachable(address)
    _authenticate(address)
    set_driver_setting("RAY_ADDRESS", address)  # the driver's own State API calls
    set_driver_setting("RAY_API_SERVER_ADDRESS", None)  # an earlier local Ray's, if any
    try:
        ray.init(address=address, runtime_env={"env_vars": {"RAY_ADDRESS": address}}, **quiet)
    except AuthenticationError:
        ray.shutdown()
        raise UserError(f"the Ray cluster at {address} requires token authentication: "
                        f"{TOKEN_HELP}") from None
    except ConnectionError as e:
        ray.shutdown()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot connect to the Ray cluster at {address}: {first}") from None


def _start_local(quiet: dict) -> None:
    """A Ray of this run's own, its dashboard on a free port that every process is told of."""
    if os.environ.get(AUTH_MODE) is None:
        # Token auth, Ray's own default for a new local cluster, chosen here so that Ray does
        # not warn about it on every run.
        enable_token_auth()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    set_driver_setting("RAY_API_SERVER_ADDRESS", url)
    # address="local": a new instance even where `ray start` left an address behind.
    ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=port,
             runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": url}}, **quiet)
    log.info("started a local Ray for this run (dashboard %s)", url)


def tune_verbosity() -> int:
    """Tune's console output: its status tables only with `imgclf -v` (the trial files, the
    Prefect table and our progress lines say the same; connect() chose Tune's legacy output
    engine, which at verbosity 0 prints nothing)."""
    return 2 if log.isEnabledFor(logging.DEBUG) else 0


T = TypeVar("T")


def on_cluster(address: Optional[str], fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) as a Ray task of its own (no CPU: it only drives Train and Tune), so that the
    pipeline's branches each get their own Tune/Train driver process (Tune keeps per-process
    state that concurrent experiments in one process trample) and Ray's scheduler, not the
    caller, decides how many of their trainings run side by side. Errors come back as raised
    (Ray's task error is also an instance of the original class)."""
    connect(address)
    return ray.get(ray.remote(num_cpus=0, max_retries=0)(fn).remote(*args))
