"""Typed configs for the flow stages; the CLI options and Prefect UI forms come from these."""
from __future__ import annotations

import os
import re
from typing import Annotated, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, field_validator,
                      model_validator)

from flows.store import url_problem
from lightning_modules.config import Activation, Family, ModelConfig, OptimConfig

DatasetKind = Literal["mnist", "fashion-mnist", "cifar10", "imagefolder"]
# $IMGCLF_STORE sets the default store on a machine (e.g. s3:// on every cluster node).
DEFAULT_STORE = os.environ.get("IMGCLF_STORE", "./artifacts")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _store_form(v: str) -> str:
    """A store URL's form is checked with the options (no network); stages check the rest."""
    problem = url_problem(v)
    if problem:
        raise ValueError(f"store {v!r}: {problem}")
    return v


StoreUrl = Annotated[str, AfterValidator(_store_form)]


class PrepConfig(BaseModel):
    """How to turn a raw source into a prepared dataset in a store."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetKind = Field("mnist", description="kind of source")
    source: Optional[str] = Field(
        None, description="local path or fsspec URL; default: the canonical download")
    name: Optional[str] = Field(
        None, description="name used in the store and reports (default: kind or folder name)")
    store: StoreUrl = Field(DEFAULT_STORE, description="where prepared data goes (path or s3://)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train held out")
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
    cache_dir: str = Field("~/.cache/imgclf", description="where downloads are cached")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid name (letters, digits, '.', '_', '-')")
        return v

    @model_validator(mode="after")
    def _imagefolder_needs_source(self) -> "PrepConfig":
        if self.dataset == "imagefolder" and not self.source:
            raise ValueError("dataset 'imagefolder' needs --source (a folder path or URL)")
        return self

    def resolved_name(self) -> str:
        """The dataset's name in the store: --name, else the folder's name or the kind."""
        if self.name:
            return self.name
        if self.dataset == "imagefolder" and self.source:
            base = self.source.rstrip("/").rsplit("/", 1)[-1]
            clean = re.sub(r"[^A-Za-z0-9._-]", "-", base).strip("-.") or "imagefolder"
            return clean[:64]
        return self.dataset


class ScalingOptions(BaseModel):
    """How training maps onto Ray: workers, resources, placement, fault tolerance."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(1, gt=0, le=1024, description="Ray Train workers (DDP ranks)")
    cpus_per_worker: Optional[int] = Field(
        None, gt=0, description="CPUs (and torch threads) per worker; default: all CPUs / workers")
    use_gpu: Optional[bool] = Field(None, description="one GPU per worker; default: if GPUs exist")
    placement: Literal["PACK", "SPREAD"] = Field("PACK", description="worker placement on nodes")
    ray_address: Optional[str] = Field(
        None, description="existing Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint")
    start_timeout_s: float = Field(
        180, gt=0, le=86_400, description="a run whose workers are not all placed and started "
        "within this many seconds fails, saying what it asked for (raise it on autoscaling "
        "clusters)")
    num_to_keep: int = Field(2, gt=0, description="checkpoints kept (best by val/acc)")


class TrainConfig(BaseModel):
    """One training run: data, model, optimiser and scaling. It travels into the checkpoint."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("mnist", description="a prepared dataset's name in the store")
    store: StoreUrl = Field(DEFAULT_STORE, description="store holding data, checkpoints and models")
    # Plain defaults, not factories: the JSON schema (the Prefect form) then shows them.
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    scaling: ScalingOptions = ScalingOptions()
    epochs: int = Field(1, gt=0, le=1000, description="training epochs")
    seed: int = Field(0, description="seed of weights, shuffling and augmentation")
    max_train_samples: Optional[int] = Field(
        None, gt=0, description="train on a seeded subset of this many images (smoke runs)")

    @field_validator("dataset")
    @classmethod
    def _safe_dataset(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid dataset name")
        return v


class EvalConfig(BaseModel):
    """Which published model to evaluate on its dataset's test split."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("mnist", description="a prepared dataset's name in the store")
    family: Literal["bp", "dnn", "cnn", "dcnn"] = Field(
        "cnn", description="model family", json_schema_extra={"cli_aliases": ["--model"]})
    store: StoreUrl = Field(DEFAULT_STORE, description="store holding the model bundles")
    run_name: Optional[str] = Field(None, description="a training run (default: the latest)")

    @field_validator("run_name")
    @classmethod
    def _safe_run_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid run name")
        return v


class PublishConfig(EvalConfig):
    """One trained model to publish as a run of its own, so `imgclf serve` shows it."""

    champion_margin: float = Field(
        0.0, ge=0, le=1, description="test accuracy it must add to become champion")


class SearchSpace(BaseModel):
    """The study's five levers as Tune search space (plus weight decay)."""

    model_config = ConfigDict(extra="forbid")

    lr_min: float = Field(3e-4, gt=0.0, description="learning rate range, log-uniform: low")
    lr_max: float = Field(1e-2, gt=0.0, le=10.0, description="learning rate range: high")
    batch_sizes: list[int] = Field([64, 128, 256], min_length=1, description="batch sizes to try")
    activations: list[Activation] = Field(["relu", "gelu", "elu"], min_length=1,
                                          description="activations to try")
    presets: Optional[list[str]] = Field(None, description="structures to try (default: the "
                                         "family's presets but the GPU-sized ones)")
    dropout_min: float = Field(0.0, ge=0.0, lt=1.0, description="dropout range, uniform: low")
    dropout_max: float = Field(0.3, ge=0.0, lt=1.0, description="dropout range: high")
    weight_decays: list[float] = Field([0.0, 5e-4], min_length=1, description="weight decays")

    @model_validator(mode="after")
    def _ranges(self) -> "SearchSpace":
        if self.lr_min >= self.lr_max:
            raise ValueError(f"learning-rate range is empty or inverted: {self.lr_min} .. {self.lr_max}")
        if self.dropout_min > self.dropout_max:
            raise ValueError(f"dropout range is inverted: {self.dropout_min} .. {self.dropout_max}")
        if any(b <= 0 for b in self.batch_sizes) or any(w < 0 for w in self.weight_decays):
            raise ValueError("batch sizes must be positive and weight decays non-negative")
        return self


class TuneOptions(BaseModel):
    """The tuning budget and the ASHA scheduler."""

    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(8, gt=0, le=10000, description="trials to sample")
    max_epochs: int = Field(2, gt=0, le=1000, description="epochs per trial (ASHA's max_t)")
    time_budget_s: Optional[float] = Field(None, gt=0, description="stop sampling after this long")
    max_concurrent: int = Field(1, gt=0, description="trials running at once")
    grace_period: int = Field(1, gt=0, description="epochs before ASHA may stop a trial")
    reduction_factor: int = Field(2, ge=2, description="ASHA reduction factor")
    tune_name: Optional[str] = Field(None, description="experiment name (default: from inputs); "
                                     "the same name resumes an interrupted tune")


class TuneConfig(BaseModel):
    """A tuning run: the base training config, the search space and the budget."""

    model_config = ConfigDict(extra="forbid")

    base: TrainConfig = TrainConfig()
    space: SearchSpace = SearchSpace()
    tune: TuneOptions = TuneOptions()


Lever = Literal["lr", "batch_size", "activation", "structure", "dropout"]
LEVERS: tuple[str, ...] = ("lr", "batch_size", "activation", "structure", "dropout")


class StudyConfig(BaseModel):
    """One lever at a time, as in the original study: each lever swept from a base config."""

    model_config = ConfigDict(extra="forbid")

    base: TrainConfig = TrainConfig()
    levers: list[Lever] = Field(list(LEVERS), min_length=1, description="levers to sweep")
    seeds: int = Field(3, gt=0, le=20, description="seeds per grid point")
    lr_grid: list[float] = Field([1e-4, 3e-4, 1e-3, 3e-3, 1e-2], min_length=1,
                                 description="learning rates")
    batch_size_grid: list[int] = Field([32, 64, 128, 256], min_length=1, description="batch sizes")
    activation_grid: list[Activation] = Field(["relu", "leaky_relu", "elu", "tanh", "sigmoid"],
                                              min_length=1, description="activations")
    structure_grid: Optional[list[str]] = Field(None, description="presets (default: the "
                                                "family's CPU-sized ones)")
    dropout_grid: list[float] = Field([0.0, 0.1, 0.3, 0.5], min_length=1, description="dropouts")


class DatasetSpec(BaseModel):
    """One dataset of the pipeline: its kind, source and name (as `imgclf prepare` takes them)."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetKind = Field(description="kind of source")
    source: Optional[str] = Field(
        None, description="path or URL; default: the offline copy if present, else the download")
    name: Optional[str] = Field(None, description="name in the store (default: the kind)")

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


ProfileName = Literal["smoke", "default", "full"]


class PipelineConfig(BaseModel):
    """The whole DAG: datasets × families, tuning budget, final training, study, publishing.
    Its defaults are the `default` profile; flows/profiles.py holds the others."""

    model_config = ConfigDict(extra="forbid")

    # Plain defaults, not factories, so that the Prefect form and --help show what runs.
    datasets: list[DatasetSpec] = Field(
        [DatasetSpec(dataset="mnist"), DatasetSpec(dataset="fashion-mnist")], min_length=1, description="datasets: kind, kind=source or name:kind=source")
    families: list[Family] = Field(["bp", "dnn", "cnn", "dcnn"], min_length=1,
                                   description="model families")
    store: StoreUrl = Field(DEFAULT_STORE, description="store for data, models and runs (path or s3://)")
    epochs: int = Field(1, gt=0, le=1000, description="epochs of each final training")
    seeds: int = Field(1, gt=0, le=20, description="final models per (dataset, family), "
                       "one per seed; >1 gives mean ± std")
    seed: int = Field(0, description="first seed (data splits, tuning, final models)")
    max_train_samples: Optional[int] = Field(
        10_000, gt=0, description="final models train on a seeded subset of this many images")
    tune_train_samples: Optional[int] = Field(
        3_000, gt=0, description="tuning trials train on a seeded subset of this many images")
    tune: TuneOptions = Field(TuneOptions(num_samples=2, max_epochs=1),
                              description="tuning budget of each (dataset, family)")
    space: SearchSpace = Field(SearchSpace(), description="the search space of the five levers")
    scaling: ScalingOptions = Field(ScalingOptions(), description="how runs map onto Ray")
    run_time_budget_s: Optional[float] = Field(
        900, gt=0, description="time budget of the whole run; tuning gets fewer trials to fit")
    tune_share: float = Field(0.5, gt=0, le=1, description="share of the budget for tuning")
    trial_seconds_guess: float = Field(
        30, gt=0, description="assumed seconds per trial until the run has measured some")
    champion_margin: float = Field(
        0.0, ge=0, le=1, description="test accuracy a new model must add to become champion")
    study: bool = Field(False, description="also run the one-lever-at-a-time study")
    study_levers: list[Lever] = Field(list(LEVERS), min_length=1, description="study levers")
    study_seeds: int = Field(1, gt=0, le=20, description="seeds per study grid point")
    run_id: Optional[str] = Field(None, description="run folder name (default: from the inputs)")

    @field_validator("run_id")
    @classmethod
    def _safe_run_id(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid run id")
        return v

    @model_validator(mode="after")
    def _check(self) -> "PipelineConfig":
        if self.tune.tune_name:
            raise ValueError("--tune-name names one experiment; the pipeline names each its own")
        names = [d.prep(self.store, self.seed).resolved_name() for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"two datasets share a name: {names}; give one a name:kind=source")
        return self
