"""The Prefect flow under Prefect's test harness: returns the URI and publishes the card."""
from __future__ import annotations

from prefect.artifacts import Artifact

from flows.config import PrepConfig
from flows.prepare_data import prepare_data
from tests.datagen import write_idx_set


def test_flow_prepares_and_shows_the_card(prefect_harness, tmp_path):
    src = write_idx_set(tmp_path / "src")
    cfg = PrepConfig(dataset="fashion-mnist", source=str(src), store=str(tmp_path / "s"))
    uri = prepare_data(cfg)
    assert (tmp_path / "s").as_posix() in uri
    assert prepare_data(cfg) == uri  # cache hit, same URI
    card = Artifact.get("dataset-card-fashion-mnist")
    assert "Dataset card: fashion-mnist" in card.data and "data:image/png;base64," in card.data
