"""Typed records the stages hand each other: a (dataset, family) branch's outcome, and the
cells of the model comparison. Metric-valued fields carry their metric's name
(lightning_modules/metrics.py) as their JSON key, so every file says `test/acc`, never a
renamed copy of it."""
from __future__ import annotations

import statistics
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from lightning_modules import metrics as M

Files = dict[str, dict[str, Any]]  # path inside a run folder → {"sha256", "bytes"}


class BranchRecord(BaseModel):
    """One (dataset, family) of a pipeline run: its tuning, its models (one per seed) and their
    evaluations, or the error that ended it."""

    dataset: str
    family: str
    error: Optional[str] = None
    tune_uri: Optional[str] = Field(None, description="the tuning's best.json")
    tune_cached: Optional[bool] = None
    trials_requested: Optional[int] = None
    budget_note: Optional[str] = None
    # How the time budget was spent on this branch (the report's budget lines).
    trials: Optional[int] = None
    tune_seconds: Optional[float] = None
    img_per_s: Optional[float] = Field(None, description="the tuning winner's measured speed")
    startup_s: Optional[float] = None
    epochs: Optional[int] = None
    train_images: Optional[int] = Field(None, description="the plan's seeded subset of the "
                                        "training images (None: all)")
    planned_seconds: Optional[float] = None
    train_seconds: Optional[float] = None
    tuned_train_config: Optional[dict[str, Any]] = None
    bundles: list[str] = []
    metrics_uris: list[str] = []

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.family}"


Status = Literal["ok", "failed", "missing"]


class Cell(BaseModel):
    """One dataset × family entry of the comparison. The report's columns are its fields;
    a new column is a new field here and a line in flows/compare.py's COLUMNS."""

    model_config = ConfigDict(populate_by_name=True)

    status: Status
    error: Optional[str] = None
    test_acc: Optional[float] = Field(None, alias=M.TEST_ACC, description="mean over seeds")
    test_acc_std: Optional[float] = Field(None, alias=f"{M.TEST_ACC}_std")
    seeds: int = 0
    macro_f1: Optional[float] = Field(None, alias=M.TEST_F1)
    ece: Optional[float] = Field(None, alias=M.TEST_ECE)
    params: Optional[int] = None
    flops_per_image: Optional[int] = None
    train_seconds: Optional[float] = None
    img_per_s: Optional[float] = None
    latency_ms_p50: Optional[float] = None
    latency_ms_p99: Optional[float] = None
    best_params: Optional[dict[str, Any]] = None
    history: list[dict[str, float]] = []
    bundle: Optional[str] = None
    data_uri: Optional[str] = None
    tuning: Optional[dict[str, Any]] = None

    def dump(self, history: bool = True) -> dict[str, Any]:
        """The cell as comparison.json holds it (metric names as keys)."""
        return self.model_dump(mode="json", by_alias=True, exclude=None if history
                               else {"history"})


def chosen_seed(infos: list[dict]) -> int:
    """The published model among the seeds: the best on validation (never on test)."""
    return max(range(len(infos)), key=lambda i: infos[i].get("metrics", {}).get(M.SCORE, -1.0))


def seed_summary(metrics: list[dict]) -> dict[str, Any]:
    accs = [m[M.TEST_ACC] for m in metrics]
    return {"test_accs": accs, "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
