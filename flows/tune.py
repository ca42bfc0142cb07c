"""Stage: tune a (dataset, family) with Ray Tune. Run: `imgclf tune --dataset mnist --model cnn`."""
from __future__ import annotations

import re

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.config import TuneConfig
from flows.prepare_data import transient_only
from flows.store import join, read_json


@task(retries=1, retry_delay_seconds=10, retry_condition_fn=transient_only)
def tune_task(cfg: TuneConfig) -> str:
    """Run or resume the search (finished trials are kept); returns the URI of best.json."""
    from cluster.tuner import run_tune

    return join(run_tune(cfg).uri, "best.json")


@task
def trials_artifact(best_uri: str) -> None:
    """All trials as a Prefect table artifact, best first."""
    rows = read_json(best_uri.rsplit("/", 1)[0] + "/trials.json") or []
    best = read_json(best_uri)
    table = [{"trial": r["trial_id"], "val/acc (best)": r["best_val_acc"], "epochs": r["epochs"],
              "stopped early": r["stopped_early"], **r["params"]}
             for r in sorted(rows, key=lambda r: -(r["best_val_acc"] or 0))]
    # Artifact keys allow lowercase letters, digits and dashes only.
    key = re.sub(r"[^a-z0-9-]+", "-", best["name"].lower())
    key = (key if key.startswith("tune-") else f"tune-{key}")[:100]
    create_table_artifact(key=key, table=table, description=f"Ray Tune trials of {best['name']}")


@flow(name="tune")
def tune(cfg: TuneConfig = TuneConfig()) -> str:
    """ASHA search over the five levers; returns the URI of the best config (best.json)."""
    best_uri = tune_task(cfg)
    trials_artifact(best_uri)
    return best_uri


if __name__ == "__main__":
    print(tune(TuneConfig()))
