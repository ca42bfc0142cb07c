"""The whole pipeline in-process on a tiny config (Prefect's test harness, a local Ray, moto's
S3 on loopback as the store): every file in the manifest, every comparison cell, the champion
pointers; a corrupt dataset fails its branch only. Then a re-run with the same inputs: every
stage is a cache hit and nothing is published twice."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import s3fs

from flows.config import PipelineConfig
from flows.pipeline import pipeline
from flows.publish import champion_uri, verify_run
from lightning_modules import metrics as M
from lightning_modules.store import join, read_json
from tests.conftest import shared_dataset
from tests.datagen import idx_subset

pytestmark = pytest.mark.slow  # the whole pipeline on Ray


def tiny_sources(tmp_path: Path) -> list[dict]:
    a = idx_subset(shared_dataset("mnist"), tmp_path / "digits", 400, 100)
    b = idx_subset(shared_dataset("fashion-mnist"), tmp_path / "clothes", 400, 100)
    bad = idx_subset(shared_dataset("mnist"), tmp_path / "broken", 400, 100)
    raw = (bad / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(raw)[:5000]))
    return [{"dataset": "mnist", "source": str(a), "name": "digits"},
            {"dataset": "fashion-mnist", "source": str(b), "name": "clothes"},
            {"dataset": "mnist", "source": str(bad), "name": "broken"}]


def _listing(store: str) -> dict[str, str]:
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return {p: info.get("ETag", "") for p, info in fs.find(store, detail=True).items()}


def _branch_spans(flow_run_id) -> list[tuple]:
    """(start, end) of each `branch` task run of a flow run, as the Prefect API records them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    return [(r.start_time, r.end_time) for r in runs if r.name.startswith("branch ")]


def test_pipeline_publishes_every_cell_then_reruns_from_cache(s3_bucket, tmp_path,
                                                             prefect_harness):
    store = f"{s3_bucket}/imgclf"
    cfg = PipelineConfig(
        datasets=tiny_sources(tmp_path), families=["bp", "cnn"], store=store,
        max_train_samples=None, tune_train_samples=None, max_final_epochs=2,
        trial_seconds_guess=8,  # trials of seconds on this tiny data: both fit the budget
        tune={"num_samples": 2, "max_epochs": 1, "max_concurrent": 2},
        space={"batch_sizes": [32, 64]},
        study=True, study_plan={"levers": ["dropout"], "dropout_grid": [0.0], "seeds": 1})
    state = pipeline(cfg=cfg, return_state=True)
    run = state.result()
    # Fan-out: the four branches ran side by side, not one after another.
    spans = _branch_spans(state.state_details.flow_run_id)
    assert len(spans) == 4
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans

    latest = read_json(join(store, "runs", "latest.json"))
    assert latest["uri"] == run
    manifest = verify_run(run)  # every listed file re-read: size and SHA-256
    assert {f"{ds}/{fam}/weights.safetensors" for ds in ("digits", "clothes")
            for fam in ("bp", "cnn")} <= set(manifest["files"])
    assert "broken" in manifest["failed_datasets"]
    # `--study`: one study over both datasets and families, its figures in the report.
    assert {"plots/study-depth-digits.png", "plots/study-depth-clothes.png"} <= \
        set(manifest["files"])
    comp = read_json(join(run, "comparison.json"))
    for ds in ("digits", "clothes"):
        for fam in ("bp", "cnn"):
            c = comp["cells"][ds][fam]
            assert c["status"] == "ok" and 0 <= c[M.TEST_ACC] <= 1 and c["best_params"]
            assert c["tuning"]["trials_run"] == 2
            assert read_json(champion_uri(store, ds, fam))["run_id"] == latest["run_id"]
    # Planned epochs (tiny data: the cap of 2 fits), and the report says how the budget went,
    # branch by branch, from measured speeds.
    budget = [n for n in comp["notes"] if " trial(s) in " in n]
    assert len(budget) == 4 and all("img/s → 2 epoch(s)" in n for n in budget), comp["notes"]
    assert {c["status"] for c in comp["cells"]["broken"].values()} == {"failed"}
    assert "truncated" in comp["cells"]["broken"]["bp"]["error"].lower()

    # Same inputs again: prep, tuning, training and evaluation are cache hits, and the
    # published run is not written again (the S3 listing, ETags included, is unchanged).
    before = _listing(store)
    assert pipeline(cfg=cfg) == run
    assert _listing(store) == before


def test_a_run_whose_every_dataset_fails_publishes_nothing_and_says_why(tmp_path,
                                                                        prefect_harness):
    from lightning_modules.errors import UserError

    bad = tiny_sources(tmp_path)[2]
    cfg = PipelineConfig(datasets=[bad], families=["bp"], store=str(tmp_path / "store"))
    with pytest.raises(UserError, match="every dataset failed to prepare: broken: .*truncated"):
        pipeline(cfg=cfg)
    assert not (tmp_path / "store" / "runs").exists()
