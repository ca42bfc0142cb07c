"""Whether a run can be placed on the Ray cluster, and one line saying why not: Ray itself
would wait for resources that never come, or retry a worker group forever."""
from __future__ import annotations

import time
from typing import Optional

import ray
from ray.train import ScalingConfig

from cluster.config import TrainConfig
from lightning_modules.errors import UserError
from lightning_modules.store import is_local, normalize


def check_cluster(cfg: TrainConfig) -> None:
    """A multi-node cluster needs a store every node can reach."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and is_local(cfg.store):
        raise UserError(f"the Ray cluster has {len(alive)} nodes but the store "
                        f"{normalize(cfg.store)} is a local path; use shared storage (s3://...)")


def explain_failure(err: BaseException, sc: ScalingConfig, timeout_s: float) -> Optional[str]:
    """One line for a run whose workers could not be placed or started, else None."""
    from ray.train.v2.api.exceptions import ControllerError

    cause = getattr(err, "controller_failure", None) if isinstance(err, ControllerError) else None
    if cause is None:
        return None
    want = f"{sc.num_workers} worker(s) × {dict(sc.resources_per_worker or {})}"
    if sc.use_gpu:
        want += " + 1 GPU each"
    have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    return (f"the training workers did not start within {timeout_s:.0f} s: "
            f"{want} ({sc.placement_strategy}) could not be placed on the Ray cluster {have} "
            f"({type(cause).__name__}); use fewer --workers, or a longer --start-timeout-s "
            f"if the cluster is scaling up")


def wait_until_placeable(resources: dict[str, float], timeout_s: float) -> None:
    """A trial whose resources no node has would wait in Tune forever: wait for a node that
    could host it (an autoscaler may be adding one) for at most timeout_s, then say why."""
    want = {k: v for k, v in resources.items() if v}
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(n.get(k, 0) >= v for k, v in want.items()) for n in nodes):
            return
        if time.monotonic() >= deadline:
            have = [{k: n.get(k, 0) for k in want} for n in nodes]
            raise UserError(f"the training worker did not start within {timeout_s:.0f} s: "
                            f"{want} fits on no node of the Ray cluster {have}; use fewer "
                            "--cpus-per-worker, or a longer --start-timeout-s if the cluster "
                            "is scaling up")
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
