"""Stage: evaluate a model bundle on its test split. Run: `imgclf evaluate --dataset mnist --model cnn`."""
from __future__ import annotations

import json
import time
from functools import partial
from typing import Optional

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.config import EvalConfig
from flows.plots import confusion_png, curves_png
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules import tracking
from lightning_modules.bundle import INFO, BundleError, load_bundle
from lightning_modules.datamodule import PreparedData
from lightning_modules.errors import UserError
from lightning_modules.evaluation import size_and_flops, speed, test_metrics
from lightning_modules.store import (
    join,
    normalize,
    read_bytes,
    read_json,
    write_bytes,
    write_json,
    write_npy,
)
from lightning_modules.store_check import check_store
from lightning_modules.tracking import TrackingConfig

PREDICTIONS = "test_predictions.npy"


def bundle_uri(cfg: EvalConfig) -> str:
    """The bundle of cfg's run, or the latest one for (dataset, family)."""
    base = layout.models_dir(check_store(cfg.store), cfg.dataset, cfg.family)
    if cfg.run_name:
        return join(base, cfg.run_name)
    latest = read_json(layout.latest(base))
    if latest is None:
        raise UserError(f"no trained {cfg.family!r} model for {cfg.dataset!r} in "
                        f"{normalize(cfg.store)}; run imgclf train first")
    return latest["uri"]


def evaluate_bundle(uri: str, light: bool = False) -> dict:
    """metrics.json, confusion.json/png and the test predictions next to the bundle. light (a
    study point): one view of each test image (no test-time augmentation, a sixth of the
    passes), no speed measurement and no plot, into study_metrics.json: the points of a study
    compare with each other, not with a published model."""
    started = time.monotonic()
    try:
        pred = load_bundle(uri)
    except BundleError as e:
        raise UserError(str(e)) from None
    pred.tta = pred.tta and not light
    sample = pred.info.get("config", {}).get("max_eval_samples")  # a study point's fixed sample
    test = PreparedData(pred.info["data_uri"], batch_size=1,
                        max_eval_samples=sample).split("test")
    scores = test_metrics(pred, test)
    file = layout.STUDY_PREDICTIONS if light else PREDICTIONS
    preds = write_npy(join(uri, file), scores.pop("predictions").astype("int16"))
    result = {"dataset": pred.info["dataset"], "family": pred.info["family"],
              "run_name": pred.info["run_name"], "bundle": uri,
              "train_seconds": pred.info.get("train_seconds"),
              "val": {k: v for k, v in pred.info.get("metrics", {}).items()},
              "predictions": {"file": file, **preds}, "test_time_augmentation": pred.tta,
              **scores, **size_and_flops(pred)}
    if light:
        result["eval_seconds"] = time.monotonic() - started
        write_json(join(uri, layout.STUDY_METRICS), result)
        return result
    result.update(speed(pred))
    title = f"{result['dataset']} {result['family']}: test acc {result[M.TEST_ACC]:.4f}"
    write_json(join(uri, "confusion.json"), {"classes": pred.classes, "matrix": result["confusion"]})
    write_bytes(join(uri, "confusion.png"), confusion_png(result["confusion"], pred.classes, title))
    result["eval_seconds"] = time.monotonic() - started
    write_json(join(uri, layout.METRICS), result)
    return result


@task(retries=1, retry_delay_seconds=5, task_run_name="evaluate")
def evaluate_task(uri: str, reuse: bool = False,
                  tracking: Optional[TrackingConfig] = None, light: bool = False) -> str:
    """Evaluate one bundle (or, with reuse, keep an earlier evaluation of the same immutable
    bundle); returns the URI of its metrics (light: a study point's, see evaluate_bundle).
    Tracked: an MLflow run of its own."""
    out = join(uri, layout.STUDY_METRICS if light else layout.METRICS)
    if not (reuse and read_json(out) is not None):
        from cluster.config import TrainConfig
        from cluster.launcher import evaluate_where_trained

        info = read_json(join(uri, INFO)) or {}
        evaluate_where_trained(TrainConfig(**info.get("config", {})),
                               partial(evaluate_bundle, light=light), uri)
    if tracking is not None and tracking.tracking_uri and not light:
        track_evaluation(tracking, uri)
    return out


TRACKED = (M.TEST_ACC, M.TEST_F1, M.TEST_ECE, "img_per_s", "latency_ms_p50", "eval_seconds")


def track_evaluation(t: TrackingConfig, uri: str) -> None:
    """The evaluation as an MLflow run (found again on a retry): test metrics, the confusion
    matrix, the training curves and metrics.json."""
    m = read_json(join(uri, layout.METRICS)) or {}
    info = read_json(join(uri, INFO)) or {}
    name = f"{m['dataset']}/{m['family']}"
    run = tracking.run_for(t, layout.cache_key("evaluation", uri, t.parent_run_id),
                           f"evaluate {name} {m['run_name']}", "evaluation",
                           params={"bundle": uri, "dataset": m["dataset"],
                                   "family": m["family"], "run_name": m["run_name"]})
    files = {"metrics.json": json.dumps(m, indent=1).encode(),
             "confusion.png": read_bytes(join(uri, "confusion.png")),
             "curves.png": curves_png({name: info.get("history", [])}, f"{name}: training")}
    tracking.log_results(t, run, {k: m[k] for k in TRACKED if isinstance(m.get(k), (int, float))},
                         files)


@task(task_run_name="metrics artifact")
def metrics_artifact(metrics_uri: str) -> None:
    """The headline numbers as a Prefect markdown artifact."""
    m = read_json(metrics_uri)
    keys = [M.TEST_ACC, M.TEST_F1, M.TEST_ECE, "params", "flops_per_image", "img_per_s",
            "latency_ms_p50", "latency_ms_p99"]
    rows = "\n".join(f"| {k} | {m[k]:.4g} |" for k in keys)
    create_markdown_artifact(key=f"eval-{m['dataset']}-{m['family']}".lower(),
                             markdown=f"# {m['dataset']} / {m['family']}\n\n| metric | value |\n"
                                      f"|---|---:|\n{rows}\n")


@flow(name="evaluate")
def evaluate(cfg: EvalConfig = EvalConfig()) -> str:
    """Evaluate the latest (or named) bundle of a (dataset, family); returns metrics.json's URI.

    Args:
        cfg: which model (dataset, family, optionally its run name), the store, and MLflow
            tracking.
    """
    uri = evaluate_task(bundle_uri(cfg), tracking=tracking.from_env(cfg.tracking))
    metrics_artifact(uri)
    return uri


if __name__ == "__main__":
    print(json.dumps(read_json(evaluate(EvalConfig())), indent=2)[:2000])
