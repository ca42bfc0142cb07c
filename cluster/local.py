"""A local multi-node Ray cluster on one machine: a head and N worker nodes, each its own
raylet with logical CPUs/GPUs (ray.cluster_utils.Cluster), kept by a small background process.
`imgclf cluster up --nodes 2` prints the address and dashboard; `imgclf cluster down` stops it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psutil

from lightning_modules.errors import UserError

DEFAULT_STATE = Path("~/.cache/imgclf/local-cluster.json").expanduser()


def serve(nodes: int, cpus: int, gpus: int, dashboard_port: int, state: Path) -> None:
    """The keeper process: start the nodes, write the state file, stop them all on SIGTERM."""
    from ray.cluster_utils import Cluster

    # A head without CPUs (as on a real cluster: drivers only), then the worker nodes.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": dashboard_port})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus, num_gpus=gpus)
    cluster.wait_for_nodes()
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "address": cluster.address,
                               "dashboard": f"http://{cluster.webui_url}", "nodes": nodes,
                               "cpus_per_node": cpus, "gpus_per_node": gpus}))
    tmp.replace(state)  # the state appears complete or not at all
    while not stopping:
        time.sleep(0.2)
    cluster.shutdown()


def read_state(state: Path = DEFAULT_STATE) -> Optional[dict]:
    try:
        info = json.loads(state.read_text())
    except FileNotFoundError:
        return None
    return info if psutil.pid_exists(info["pid"]) else None


def up(nodes: int, cpus: Optional[int] = None, gpus: int = 0, dashboard_port: int = 8265,
       state: Path = DEFAULT_STATE, timeout: float = 120) -> dict:
    """Start the cluster in the background; returns its address and dashboard URL."""
    if nodes < 1:
        raise UserError("--nodes must be at least 1")
    if read_state(state):
        raise UserError(f"a local cluster is already up ({state}); run imgclf cluster down")
    cpus = cpus or max(1, (os.cpu_count() or 2) // nodes)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.unlink(missing_ok=True)
    log = open(state.with_suffix(".log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "cluster.local", str(nodes), str(cpus),
                             str(gpus), str(dashboard_port), str(state)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state.exists():
            return json.loads(state.read_text())
        if proc.poll() is not None:
            raise UserError(f"the local cluster failed to start; see {state.with_suffix('.log')}")
        time.sleep(0.5)
    proc.kill()
    raise UserError(f"the local cluster did not start in {timeout:.0f} s")


def down(state: Path = DEFAULT_STATE, timeout: float = 60) -> list[int]:
    """Stop the cluster and wait for every one of its processes; returns the PIDs stopped."""
    info = read_state(state)
    if info is None:
        raise UserError("no local cluster is up")
    keeper = psutil.Process(info["pid"])
    procs = [keeper, *keeper.children(recursive=True)]
    keeper.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:  # anything that ignored the shutdown
        try:
            p.kill()
        except psutil.NoSuchProcess:  # went between the wait and the kill
            pass
    psutil.wait_procs(alive, timeout=10)
    state.unlink(missing_ok=True)
    return [p.pid for p in procs]


if __name__ == "__main__":
    n, c, g, port, path = sys.argv[1:6]
    serve(int(n), int(c), int(g), int(port), Path(path))
