"""A pipeline run is complete only when every branch and the champion gate are: a trigger after
a run whose branches all failed publishes nothing and fails; after a run with a failed branch,
or one killed before its champion gate, the next trigger finishes that run (the published
branches kept, the failed one redone, the gate applied) instead of saying "Nothing changed"."""
from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import PipelineConfig
from flows.pipeline import pipeline
from flows.publish import champion_uri, verify_run
from lightning_modules.errors import UserError
from lightning_modules.store import join, read_json
from tests.conftest import shared_dataset
from tests.datagen import idx_subset

pytestmark = pytest.mark.slow  # the whole pipeline on Ray, four times


def _decision(state) -> str:
    """The retrain-decision artifact of a finished flow run, as the UI shows it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return next(a.data for a in arts if a.key == "retrain-decision")


def _block(path: Path) -> None:
    """A file where a folder must go: writes under it fail (as a full or read-only disk's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("in the way")


@pytest.fixture
def own_ray():
    """The pipeline starts a local Ray in this process; end it after, so later tests start
    theirs with their own environment (an S3 endpoint, say)."""
    from cluster.connect import disconnect

    yield
    disconnect()


def test_an_incomplete_run_is_finished_by_the_next_trigger(tmp_path, prefect_harness, own_ray):
    digits = idx_subset(shared_dataset("mnist"), tmp_path / "digits", 300, 100)
    store = tmp_path / "store"
    cfg = PipelineConfig(datasets=[{"dataset": "mnist", "source": str(digits),
                                    "name": "digits"}],
                         families=["bp", "cnn"], store=str(store), max_train_samples=None,
                         tune_train_samples=None, max_final_epochs=1, epochs=1,
                         run_time_budget_s=None, tune={"num_samples": 1, "max_epochs": 1})

    # Every branch fails: no run is published, and the flow fails with one line.
    _block(store / "tuning" / "digits")
    with pytest.raises(UserError, match="every branch failed: digits/bp: tuning: .*digits/cnn"):
        pipeline(cfg=cfg)
    assert not (store / "runs").exists()

    # One branch fails: the run is published with it named as failed.
    (store / "tuning" / "digits").unlink()
    _block(store / "tuning" / "digits" / "cnn")
    run = pipeline(cfg=cfg)
    manifest = verify_run(run)
    assert list(manifest["failed_branches"]) == ["digits/cnn"]
    assert "digits/bp/weights.safetensors" in manifest["files"]

    # The obstacle gone, the next trigger redoes that branch only and completes the run.
    (store / "tuning" / "digits" / "cnn").unlink()
    state = pipeline(cfg=cfg, return_state=True)
    assert state.result() == run
    said = _decision(state)
    assert "incomplete: digits/cnn failed" in said and "1 published branch(es) kept" in said
    manifest = verify_run(run)
    assert manifest["failed_branches"] == {}
    assert {"digits/bp/weights.safetensors", "digits/cnn/weights.safetensors"} <= set(
        manifest["files"])
    assert read_json(champion_uri(str(store), "digits", "cnn"))["run_uri"] == run

    # Killed between the manifest and the champion gate: the gate is applied on the next one.
    Path(run, "gate.json").unlink()
    Path(champion_uri(str(store), "digits", "bp")).unlink()
    state = pipeline(cfg=cfg, return_state=True)
    assert "the champion gate never ran" in _decision(state)
    assert read_json(champion_uri(str(store), "digits", "bp"))["run_uri"] == run
    assert read_json(join(run, "gate.json"))["run_id"] == manifest["run_id"]

    # Complete now: nothing to do.
    state = pipeline(cfg=cfg, return_state=True)
    assert "Nothing changed" in _decision(state)
