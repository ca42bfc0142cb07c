"""The store's layout, in one place: every stage asks here where a thing lives.

    <store>/datasets/<name>/<key>/            a prepared dataset (manifest.json written last)
    <store>/datasets/<name>/latest.json       its newest version
    <store>/models/<ds>/<family>/<run>/       a trained bundle (bundle.json written last)
    <store>/models/<ds>/<family>/latest.json  the newest bundle of (ds, family)
    <store>/tuning/<ds>/<family>/<name>/      a tuning: best.json, trials.json, trials/
    <store>/study/<ds>/<family>/<key>/        a lever study: study.json, study.png
    <store>/runs/<run id>/                    a published run (manifest.json written last;
                                              records.json its branches, gate.json once the
                                              champion gate ran: the run is complete)
    <store>/runs/latest.json                  the newest published run
    <store>/champions/<ds>/<family>.json      the champion pointer of (ds, family)
    <store>/ray/                              Ray Train and Tune checkpoints
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from pydantic import BaseModel

from lightning_modules.store import join, normalize

# $IMGCLF_STORE sets the default store on a machine (e.g. s3:// on every cluster node).
DEFAULT_STORE = os.environ.get("IMGCLF_STORE", "./artifacts")
MANIFEST = "manifest.json"
LATEST = "latest.json"
METRICS = "metrics.json"
STUDY_METRICS = "study_metrics.json"  # a study point's light evaluation (flows/evaluate.py)
STUDY_PREDICTIONS = "study_predictions.npy"
BEST = "best.json"
TRIALS = "trials.json"
RECORDS = "records.json"
GATE = "gate.json"


# Where results go and what they are called do not change them; nor does how a run is spread
# over the cluster, except its number of DDP workers (the effective batch size).
_NOT_IDENTITY = {"store", "run_id", "tune_name", "tracking", "stream_data", "shard_cache"}


def identity(obj: Any) -> Any:
    """The part of a config (or of plain data holding configs) that changes results."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {k: {"workers": v.get("workers")} if k == "scaling" and isinstance(v, dict)
                else identity(v) for k, v in obj.items() if k not in _NOT_IDENTITY}
    if isinstance(obj, (list, tuple)):
        return [identity(v) for v in obj]
    return obj


def cache_key(*parts: Any, length: int = 12) -> str:
    """The one content key of the project: SHA-256 of the parts' identity as sorted JSON,
    shortened. Run names, tuning names, study keys and run ids are all made by it."""
    blob = json.dumps(identity(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def dataset_dir(store: str, name: str) -> str:
    return join(normalize(store), "datasets", name)


def dataset_uri(store: str, name: str, key: str) -> str:
    return join(dataset_dir(store, name), key)


def models_dir(store: str, dataset: str, family: str) -> str:
    return join(normalize(store), "models", dataset, family)


def bundle_uri(store: str, dataset: str, family: str, run_name: str) -> str:
    return join(models_dir(store, dataset, family), run_name)


def tuning_uri(store: str, dataset: str, family: str, name: str) -> str:
    return join(normalize(store), "tuning", dataset, family, name)


def study_uri(store: str, dataset: str, family: str, key: str) -> str:
    return join(normalize(store), "study", dataset, family, key)


def runs_dir(store: str) -> str:
    return join(normalize(store), "runs")


def run_uri(store: str, run_id: str) -> str:
    return join(runs_dir(store), run_id)


def champions_dir(store: str) -> str:
    return join(normalize(store), "champions")


def champion_uri(store: str, dataset: str, family: str) -> str:
    return join(champions_dir(store), dataset, f"{family}.json")


def ray_storage(store: str) -> str:
    return join(normalize(store), "ray")


def latest(folder: str) -> str:
    """The pointer file of a folder of versions (datasets/<name>, models/<ds>/<fam>, runs)."""
    return join(folder, LATEST)
