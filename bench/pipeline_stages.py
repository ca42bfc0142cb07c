"""Where a small pipeline's time goes: one branch (MNIST subset, one family) through every
stage under Prefect's temporary server, each task run's duration read back from Prefect.
Prints JSON.

    python bench/pipeline_stages.py [--family bp] [--train 400] [--trials 2]"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from bench_results import command, write
from fixtures import idx_subset
from flows.config import PipelineConfig
from flows.pipeline import pipeline
from flows.profiles import offline_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="bp")
    ap.add_argument("--train", type=int, default=400, help="training images")
    ap.add_argument("--trials", type=int, default=2, help="tuning trials, all at once")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    src = idx_subset(offline_dir() / "mnist", tmp / "digits", args.train, args.train // 4)
    cfg = PipelineConfig(
        datasets=[{"dataset": "mnist", "source": str(src), "name": "digits"}],
        families=[args.family], store=str(tmp / "store"), epochs=1, max_train_samples=None,
        tune_train_samples=None, run_time_budget_s=None,
        tune={"num_samples": args.trials, "max_epochs": 1, "max_concurrent": args.trials},
        space={"batch_sizes": [32, 64]})
    with prefect_test_harness():
        started = time.perf_counter()
        state = pipeline(cfg=cfg, return_state=True)
        total = time.perf_counter() - started
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    stages = {r.name: round(r.total_run_time.total_seconds(), 2)
              for r in sorted(runs, key=lambda r: r.start_time or r.expected_start_time)}
    print(write("pipeline_stages", {
        "command": command(), "family": args.family, "train_images": args.train,
        "trials": args.trials, "state": state.type.value, "total_s": round(total, 2),
        "stages_s": stages}))


if __name__ == "__main__":
    main()
