"""MLflow tracking, when a tracking URI is configured: every training (a tuning trial or a final
model) and every evaluation is an MLflow run, nested under its pipeline's (or study's) run.
Runs are found by a content key (tag `imgclf.key`) before one is created, so a retried task
or a resumed training continues its run instead of starting a duplicate. Without a URI nothing
is imported, logged or failed. The champion of a (dataset, family) is mirrored in the model
registry as the alias `champion` on a version of `imgclf-<dataset>-<family>`."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

KEY_TAG = "imgclf.key"
KIND_TAG = "imgclf.kind"
PARENT_TAG = "mlflow.parentRunId"  # how MLflow's UI nests runs
CHAMPION = "champion"
URI_TAG = "imgclf.uri"  # a registered version's model folder in the store


class TrackingConfig(BaseModel):
    """Where runs are tracked; not part of any result's identity (layout.identity)."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: Optional[str] = Field(
        None, description="MLflow tracking URI (http://..., a folder, sqlite:///...); "
        "default: none, nothing is tracked")
    experiment: str = Field("imgclf", min_length=1, max_length=200,
                            description="MLflow experiment of the runs")
    parent_run_id: Optional[str] = Field(
        None, description="MLflow run the runs are nested under (set by the pipeline)")
    mlflow_run_id: Optional[str] = Field(
        None, description="MLflow run a training logs to (set by the launcher for DDP)")


def from_env(t: TrackingConfig) -> TrackingConfig:
    """MLflow's own variable, MLFLOW_TRACKING_URI, when the config names no URI (read at a
    flow's start; the resolved config is what travels on)."""
    if t.tracking_uri or not os.environ.get("MLFLOW_TRACKING_URI"):
        return t
    return t.model_copy(update={"tracking_uri": os.environ["MLFLOW_TRACKING_URI"]})


def with_env(cfg: Any) -> Any:
    """A config with every TrackingConfig in it (at any depth) resolved by from_env."""
    updates = {}
    for name, value in cfg:
        if isinstance(value, TrackingConfig):
            updates[name] = from_env(value)
        elif isinstance(value, BaseModel):
            updates[name] = with_env(value)
    return cfg.model_copy(update=updates)


def _client(t: TrackingConfig) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=t.tracking_uri)


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by a run side by side
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def run_for(t: TrackingConfig, key: str, name: str, kind: str,
            params: Optional[dict[str, Any]] = None) -> Optional[str]:
    """The MLflow run of `key` (found, or created with `params`), nested under the parent;
    None without a tracking URI."""
    if not t.tracking_uri:
        return None
    client = _client(t)
    exp = _experiment_id(client, t.experiment)
    found = client.search_runs([exp], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    tags = {KEY_TAG: key, KIND_TAG: kind}
    if t.parent_run_id:
        tags[PARENT_TAG] = t.parent_run_id
    run_id = client.create_run(exp, run_name=name[:250], tags=tags).info.run_id
    if params:
        from mlflow.entities import Param

        client.log_batch(run_id, params=[Param(k, str(v)[:6000])
                                         for k, v in flatten(params).items()])
    return run_id


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}: MLflow's parameters are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def lightning_logger(t: TrackingConfig, run_id: Optional[str]) -> Any:
    """Lightning's MLflow logger writing to run_id (per-epoch metrics at each step), or False."""
    if not t.tracking_uri or not run_id:
        return False
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=t.experiment, tracking_uri=t.tracking_uri,
                        run_id=run_id, log_model=False)


def log_results(t: TrackingConfig, run_id: Optional[str], metrics: dict[str, float],
                files: dict[str, bytes]) -> None:
    """Final metrics and files (plots, reports) of a run, and the run marked finished."""
    if not t.tracking_uri or not run_id:
        return
    from mlflow.entities import Metric

    client = _client(t)
    now = _now_ms()
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            Path(d, name).write_bytes(data)
            client.log_artifact(run_id, str(Path(d, name)))
    client.set_terminated(run_id, "FINISHED")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def model_name(dataset: str, family: str) -> str:
    return f"imgclf-{dataset}-{family}"


def mirror_champion(t: TrackingConfig, dataset: str, family: str, source: str,
                    run_id: Optional[str] = None) -> Optional[str]:
    """Point the registered model's `champion` alias at the version of `source` (a published
    model's folder in the store), registering that version first if needed; returns it.
    MLflow refuses a store path as a version's source: the version's source is a small
    pointer artifact (`champion/<dataset>-<family>/model.json`) of the pipeline's run, and
    the store URI its tag `imgclf.uri`."""
    if not t.tracking_uri:
        return None
    client = _client(t)
    name = model_name(dataset, family)
    try:
        client.create_registered_model(name, description=f"{family} on {dataset}, published "
                                       "by imgclf; the alias `champion` is the served one")
    except Exception:  # it exists already
        pass
    version = next((v.version for v in client.search_model_versions(f"name = '{name}'")
                    if (v.tags or {}).get(URI_TAG) == source), None)
    if version is None:
        run = run_id or t.parent_run_id or run_for(t, f"registry-{name}", f"registry {name}",
                                                   "registry")
        folder = f"champion/{dataset}-{family}"
        with tempfile.TemporaryDirectory() as d:
            Path(d, "model.json").write_text(json.dumps({"uri": source, "dataset": dataset,
                                                         "family": family}))
            client.log_artifact(run, str(Path(d, "model.json")), folder)
        version = client.create_model_version(name, f"runs:/{run}/{folder}", run_id=run,
                                              tags={URI_TAG: source},
                                              description=f"published at {source}").version
    client.set_registered_model_alias(name, CHAMPION, version)
    return str(version)
