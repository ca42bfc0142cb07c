"""Image decoding spread over a Ray cluster's nodes (`imgclf prepare --ray-address`): the
prep's chunks of images go out in pieces as Ray tasks, one CPU each, and come back in order;
the shards are written where prepare runs. Each node reads its images itself (a shared path
or s3://), so only decoded pixels travel."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import ray

from cluster.connect import connect

Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def _decode_piece(fn: Callable[[Any], Any], items: Sequence[Any],
                  init: Optional[Callable[..., None]], init_args: tuple) -> list[Any]:
    if init is not None:
        init(*init_args)
    return [fn(a) for a in items]


def cluster_mapper(address: Optional[str], init: Optional[Callable[..., None]] = None,
                   init_args: tuple = ()) -> Mapper:
    """map(fn, items) in order over the cluster's CPUs: pieces of a chunk as Ray tasks."""
    connect(address)
    # SPREAD: a chunk's pieces go to different nodes first (Ray's default packs short tasks
    # onto the node that frees up first, which can leave the others idle).
    task = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_decode_piece)

    def run(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        pieces = max(1, int(ray.cluster_resources().get("CPU", 1)) * 2)
        size = -(-len(items) // pieces) or 1
        refs = [task.remote(fn, items[i:i + size], init, init_args)
                for i in range(0, len(items), size)]
        return [r for part in ray.get(refs) for r in part]
    return run
