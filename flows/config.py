"""Typed configs of the flows: preparing data, evaluating, publishing, the study and the
whole pipeline. The training and tuning configs they hold live in cluster/config.py; the CLI
options and the Prefect UI forms are generated from these."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.config import LEVERS, Lever, ScalingOptions, SearchSpace, TrainConfig, TuneOptions
from flows.prep.kinds import KINDS
from lightning_modules.config import (
    FAMILY_NAMES,
    Activation,
    Family,
    ModelConfig,
    Name,
    StoreUrl,
)
from lightning_modules.layout import DEFAULT_STORE
from lightning_modules.tracking import TrackingConfig

# The choices come from the registry of sources (flows/prep/kinds.py).
DatasetKind = Literal[tuple(KINDS)]  # type: ignore[valid-type]


class PrepConfig(BaseModel):
    """How to turn a raw source into a prepared dataset in a store."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetKind = Field("mnist", description="kind of source: " + ", ".join(KINDS))
    source: Optional[str] = Field(
        None, description="local path or fsspec URL; default: the canonical download")
    name: Optional[Name] = Field(
        None, description="name used in the store and reports (default: kind or folder name)")
    store: StoreUrl = Field(DEFAULT_STORE, description="where prepared data goes (path or s3://)")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of train held out "
                                "for validation: what checkpoints, tuning and champions are "
                                "chosen on (never the test split)")
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="test share for an image folder with no test/ tree")
    seed: int = Field(0, description="seed of the stratified splits")
    image_size: Optional[int] = Field(
        None, gt=0, le=1024, description="square side images are resized to (default: inferred)")
    channels: Optional[Literal[1, 3]] = Field(
        None, description="1 (grey) or 3 (RGB); default: inferred from the images")
    strict: bool = Field(False, description="fail on unreadable images instead of skipping them")
    max_pixels: int = Field(
        40_000_000, gt=0, description="images with more pixels are refused (decompression bombs)")
    workers: Optional[int] = Field(None, gt=0, description="decode processes (default: all cores)")
    ray_address: Optional[str] = Field(
        None, description="decode an image folder on this Ray cluster's nodes (host:port or "
        "auto; the folder a shared path or s3://); default: this machine's processes")
    cache_dir: str = Field("~/.cache/imgclf", description="where downloads are cached")

    @model_validator(mode="after")
    def _needs_source(self) -> "PrepConfig":
        if not KINDS[self.dataset].canonical and not self.source:
            raise ValueError(f"dataset {self.dataset!r} needs --source (a folder path or URL)")
        return self

    def resolved_name(self) -> str:
        """The dataset's name in the store: --name, else the folder's name or the kind."""
        if self.name:
            return self.name
        if not KINDS[self.dataset].canonical and self.source:
            base = self.source.rstrip("/").rsplit("/", 1)[-1]
            clean = re.sub(r"[^A-Za-z0-9._-]", "-", base).strip("-.") or "imagefolder"
            return clean[:64]
        return self.dataset


class EvalConfig(BaseModel):
    """Which published model to evaluate on its dataset's test split."""

    model_config = ConfigDict(extra="forbid")

    dataset: Name = Field("mnist", description="a prepared dataset's name in the store")
    family: Family = Field(
        "cnn", description="model family", json_schema_extra={"cli_aliases": ["--model"]})
    store: StoreUrl = Field(DEFAULT_STORE, description="store holding the model bundles")
    run_name: Optional[Name] = Field(None, description="a training run (default: the latest)")
    tracking: TrackingConfig = Field(TrackingConfig(), description="MLflow tracking")


class RollbackConfig(BaseModel):
    """Which (dataset, family) champion to point back at the previous one."""

    model_config = ConfigDict(extra="forbid")

    dataset: Name = Field("mnist", description="a published dataset's name")
    family: Family = Field(
        "cnn", description="model family", json_schema_extra={"cli_aliases": ["--model"]})
    store: StoreUrl = Field(DEFAULT_STORE, description="store holding the champions")
    tracking: TrackingConfig = Field(TrackingConfig(), description="MLflow tracking (the "
                                     "`champion` alias moves too)")


class PublishConfig(EvalConfig):
    """One trained model to publish as a run of its own, so `imgclf serve` shows it."""

    champion_margin: float = Field(
        0.0, ge=0, le=1, description="test accuracy it must add to become champion")


class StudyPlan(BaseModel):
    """The levers of the study and how they are judged: what `imgclf study` and the pipeline's
    study race (the pipeline's options carry a `--study-` prefix). Every grid also holds the
    family's recipe value (added where missing)."""

    model_config = ConfigDict(extra="forbid")

    levers: list[Lever] = Field(list(LEVERS), min_length=1, description="levers to race")
    seeds: int = Field(3, gt=0, le=20, description="seeds of each depth model and of each "
                       "confirmation arm (the races train on other seeds)")
    lr_grid: Optional[list[float]] = Field(
        None, min_length=1, description="learning rates (default: the recipe's × 0.1, 0.3, 1, "
        "3, 10: each family around its own)")
    batch_size_grid: list[int] = Field([32, 64, 128, 256], min_length=1, description="batch sizes")
    batch_lr_rule: Literal["linear", "sqrt"] = Field(
        "sqrt", description="the batch-size lever scales the recipe's learning rate by "
        "(batch / recipe batch) to this power's rule: linear (1) or sqrt (1/2); every batch "
        "trains the same epochs")
    activation_grid: list[Activation] = Field(
        ["relu", "gelu", "leaky_relu", "elu", "tanh", "sigmoid"], min_length=1,
        description="activations")
    structure_grid: Optional[list[str]] = Field(None, description="presets (default: the "
                                                "family's CPU-sized ones)")
    dropout_grid: list[float] = Field([0.0, 0.1, 0.3, 0.5], min_length=1, description="dropouts")
    eta: int = Field(2, ge=2, le=8, description="successive halving: the best 1/eta of a rung "
                     "go on to a rung eta times larger")
    eval_samples: Optional[int] = Field(
        2000, gt=0, description="race points validate on one fixed sample of this many "
        "validation images (depth models and confirmations: the whole splits)")


class StudyConfig(BaseModel):
    """One lever at a time, as in the original study: each lever swept from a base config."""

    model_config = ConfigDict(extra="forbid")

    base: TrainConfig = TrainConfig()
    plan: StudyPlan = StudyPlan()
    datasets: Optional[list[Name]] = Field(
        None, description="study these prepared datasets, each family from its recipe (default: "
        "the base's dataset and config only)")
    families: Optional[list[Family]] = Field(
        None, description="study these families, each from its recipe (default: the base's)")
    budget_s: Optional[float] = Field(
        None, gt=0, description="wall seconds the whole study may take: depth models, races "
        "and confirmations get the sizes that fit, from each (dataset, family)'s measured "
        "speed; what does not fit is reported as not tested (default: the base's sizes)")


class DatasetSpec(BaseModel):
    """One dataset of the pipeline: its kind, source and name (as `imgclf prepare` takes them)."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetKind = Field(description="kind of source")
    source: Optional[str] = Field(
        None, description="path or URL; default: the offline copy if present, else the download")
    name: Optional[Name] = Field(None, description="name in the store (default: the kind)")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: object) -> object:
        """The CLI form: `kind`, `kind=source` or `name:kind=source`."""
        if isinstance(v, str):
            head, _, source = v.partition("=")
            name, _, kind = head.rpartition(":")
            return {"dataset": kind.strip(), "source": source.strip() or None,
                    "name": name.strip() or None}
        return v

    def prep(self, store: str, seed: int) -> PrepConfig:
        return PrepConfig(dataset=self.dataset, source=self.source, name=self.name, store=store,
                          seed=seed)


class PipelineConfig(BaseModel):
    """The whole DAG: datasets × families, tuning budget, final training, study, publishing.
    Its defaults are the `default` profile; flows/profiles.py holds the others."""

    model_config = ConfigDict(extra="forbid")

    # Plain defaults, not factories, so that the Prefect form and --help show what runs.
    datasets: list[DatasetSpec] = Field(
        [DatasetSpec(dataset="mnist"), DatasetSpec(dataset="fashion-mnist"),
         DatasetSpec(dataset="cifar10")], min_length=1,
        description="datasets: kind, kind=source or name:kind=source")
    families: list[Family] = Field(FAMILY_NAMES, min_length=1,
                                   description="model families")
    structures: dict[str, str] = Field(
        {}, description="named structure per family instead of its recipe's, e.g. dcnn=large "
        "(airbench94's net, for a run with time for it)")
    store: StoreUrl = Field(DEFAULT_STORE, description="store for data, models and runs (path or s3://)")
    epochs: Optional[int] = Field(
        None, gt=0, le=1000, description="epochs of each final training (default: planned "
        "from the time budget and each model's measured speed, up to --max-final-epochs)")
    max_final_epochs: int = Field(6, gt=0, le=1000, description="most epochs the planner gives")
    seeds: int = Field(1, gt=0, le=20, description="final models per (dataset, family), "
                       "one per seed; >1 gives mean ± std")
    seed: int = Field(0, description="first seed (data splits, tuning, final models)")
    max_train_samples: Optional[int] = Field(
        None, gt=0, description="final models train on a seeded subset of this many images "
        "(default: all)")
    tune_train_samples: Optional[int] = Field(
        5_000, gt=0, description="tuning trials train on a seeded subset of this many images")
    # Two one-epoch trials on 5,000 images differ by a point or two either way: the fashion
    # cnn trial that beat the recipe by 0.95 points trained to 0.8952 in 2 epochs, the recipe
    # to 0.9037 (README, "The default run"); a sampled config must win by more than 2 points.
    tune: TuneOptions = Field(TuneOptions(num_samples=2, max_epochs=1, min_gain=0.02),
                              description="tuning budget of each (dataset, family)")
    # CPU-sized structures only: on a small budget a slow winner leaves no time for epochs.
    space: SearchSpace = Field(SearchSpace(presets=["small", "medium"]),
                               description="the search space of the five levers")
    scaling: ScalingOptions = Field(ScalingOptions(), description="how runs map onto Ray")
    # 780 s for the flow, so that `make run` with its Prefect server's start, three datasets'
    # preparation and the evaluations ends within 15 minutes.
    run_time_budget_s: Optional[float] = Field(
        780, gt=0, description="time budget of the whole run: tuning gets fewer trials and the "
        "final trainings the epochs that fit")
    tune_share: float = Field(0.25, gt=0, le=1, description="share of the budget for tuning")
    # A trial's slot time, its tuning's start included: 12 tunings of 2 trials took 402 s on
    # 2 slots of a 2-core AVX2 machine (bench/results/pipeline-default.json's machine).
    trial_seconds_guess: float = Field(
        30, gt=0, description="assumed seconds per tuning trial (planned before any is measured)")
    finish_seconds: float = Field(
        40, ge=0, description="seconds kept from the budget for evaluation and publishing")
    # Measured: 8 final trainings, each a Ray task training in its warm process, took 335 s of
    # wall time for 328 s of steps, evaluations included (bench/pipeline.py, 2 cores; as
    # one-trial Tune experiments they took 535 s for 441 s).
    overhead_seconds: float = Field(
        3, ge=0, description="seconds each final training spends outside its steps")
    champion_margin: float = Field(
        0.0, ge=0, le=1, description="test accuracy a new model must add to become champion")
    study: bool = Field(False, description="also run the study over the branches' datasets "
                       "and families (depth on trained models, levers raced and confirmed)")
    study_plan: StudyPlan = Field(StudyPlan(), description="the study's levers and seeds",
                                  json_schema_extra={"cli_prefix": "study_"})
    study_budget_s: Optional[float] = Field(
        None, gt=0, description="wall seconds the study may take after the branches (default: "
        "the final trainings' sizes)")
    run_id: Optional[Name] = Field(None, description="run folder name (default: from the inputs)")
    tracking: TrackingConfig = Field(TrackingConfig(), description="MLflow tracking")

    @model_validator(mode="after")
    def _check(self) -> "PipelineConfig":
        if self.tune.tune_name:
            raise ValueError("--tune-name names one experiment; the pipeline names each its own")
        for fam, preset in self.structures.items():
            ModelConfig(family=fam, preset=preset)  # names an existing family and preset
        names = [d.prep(self.store, self.seed).resolved_name() for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"two datasets share a name: {names}; give one a name:kind=source")
        return self
