"""Benchmark dataset prep: `python bench/prepare.py` writes wall times to
bench/results/prepare.json.

Cases: MNIST from the offline IDX copy, the 60,000-file cifar10-jpeg tree, and a re-run of
each (a cache hit). Each case uses a fresh temporary store, so the first run does all the work.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench_results import command, write
from flows.config import PrepConfig
from flows.prep.build import prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CASES = {
    "mnist": dict(dataset="mnist", source=str(SHARED / "mnist")),
    "cifar10-jpeg": dict(dataset="imagefolder", source=str(SHARED / "cifar10-jpeg"),
                         name="cifar10-jpeg"),
}


def timed(cfg: PrepConfig) -> tuple[float, bool]:
    t = time.perf_counter()
    res = prepare(cfg)
    return time.perf_counter() - t, res.cache_hit


def main() -> None:
    out: dict = {"cases": {}}
    for name, kw in CASES.items():
        with tempfile.TemporaryDirectory() as store:
            cfg = PrepConfig(store=store, **kw)
            first, hit1 = timed(cfg)
            again, hit2 = timed(cfg)
        out["cases"][name] = {"first_s": round(first, 2), "rerun_s": round(again, 2),
                              "rerun_cache_hit": hit2 and not hit1}
    print(write("prepare", {"command": command(), **out}))


if __name__ == "__main__":
    main()
