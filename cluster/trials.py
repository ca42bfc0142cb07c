"""Tune trials as records: a row per trial (trials.json), one JSON file per finished trial
written as the search goes, and what a resumed search reads back (never Tune's pickles)."""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import tune

from cluster.train_worker import IMG_PER_S, STARTUP_S
from lightning_modules import metrics as M
from lightning_modules.store import filesystem, join, write_json

log = logging.getLogger(__name__)


class TrialRow(BaseModel):
    """One trial as the tune stage records it (trials.json); scores under their metric names."""

    model_config = ConfigDict(populate_by_name=True)

    trial_id: Optional[str] = None
    params: dict[str, Any]
    best_score: Optional[float] = Field(None, alias=M.SCORE, description="best over epochs")
    epochs: int = 0
    seconds: Optional[float] = None
    img_per_s: Optional[float] = Field(None, description="steady-state training speed")
    startup_s: Optional[float] = Field(None, description="trial start to its first batch")
    stopped_early: bool = False
    error: Optional[str] = None


def trial_row(trial: Any, max_epochs: int) -> TrialRow:
    """A finished trial as a row: its best score over epochs, its last epoch's speeds."""
    last = trial.last_result or {}
    best = trial.metric_analysis.get(M.SCORE, {}).get("max")
    epochs = int(last.get("training_iteration") or 0)
    return TrialRow(trial_id=trial.trial_id, params=trial.config["point"]["params"],
                    best_score=best, epochs=epochs, seconds=last.get("time_total_s"),
                    img_per_s=last.get(IMG_PER_S), startup_s=last.get(STARTUP_S),
                    stopped_early=epochs < max_epochs)


def record_uri(log_uri: str, index: int, trial_id: str) -> str:
    return join(log_uri, "trials", f"p{index:03d}-{trial_id}.json")


class TrialLog(tune.Callback):
    """One JSON file per finished trial under `<tune uri>/trials/`, named by its point: the
    search's progress, and what a resumed search skips."""

    def __init__(self, uri: str, max_epochs: int) -> None:
        self.uri, self.max_epochs = uri, max_epochs

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = trial_row(trial, self.max_epochs)
        write_json(record_uri(self.uri, trial.config["point"]["index"], trial.trial_id),
                   {"index": trial.config["point"]["index"], "finished_at": time.time(),
                    **row.model_dump(mode="json", by_alias=True)})


def finished_points(log_uri: str) -> dict[int, TrialRow]:
    """The points whose trials finished in an earlier attempt, from their JSON records (a
    record that does not parse is ignored: that point runs again)."""
    fs, root = filesystem(join(log_uri, "trials"))
    done: dict[int, TrialRow] = {}
    for path in sorted(fs.glob(f"{root}/p*.json")) if fs.exists(root) else []:
        try:
            rec = json.loads(fs.cat_file(path))
            done[int(rec["index"])] = TrialRow(**rec)
        except (ValueError, KeyError, TypeError, ValidationError):
            log.warning("ignoring the unreadable trial record %s", path)
    return done


def unrecorded_rows(results: tune.ResultGrid, max_epochs: int) -> dict[int, TrialRow]:
    """Rows of this attempt's trials that left no record (errors, a time budget's stops)."""
    rows = {}
    for r in results:
        df = r.metrics_dataframe
        best = float(df[M.SCORE].max()) if df is not None and M.SCORE in df else None
        epochs = int(df["training_iteration"].max()) if df is not None and len(df) else 0
        last = r.metrics or {}
        rows[r.config["point"]["index"]] = TrialRow(
            trial_id=last.get("trial_id"), params=r.config["point"]["params"], best_score=best,
            epochs=epochs, seconds=last.get("time_total_s"), img_per_s=last.get(IMG_PER_S),
            startup_s=last.get(STARTUP_S), stopped_early=r.error is None and epochs < max_epochs,
            error=str(r.error).strip().splitlines()[-1][:300] if r.error else None)
    return rows
