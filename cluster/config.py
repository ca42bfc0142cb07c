"""The training config, end to end: flow parameter → Ray `train_loop_config` → module arguments
→ checkpoint and bundle. Also the search space and budget of a tuning, and the five levers of
the study, applied by one function for Tune and the study alike."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lightning_modules.config import (
    Activation,
    ComputeConfig,
    ModelConfig,
    Name,
    OptimConfig,
    StoreUrl,
)
from lightning_modules.layout import DEFAULT_STORE
from lightning_modules.tracking import TrackingConfig


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
    deadline: Optional[float] = Field(
        None, gt=0, description="wall-clock time (Unix seconds) at which training stops, "
        "after its first epoch at least, keeping its best epoch (the pipeline sets it from "
        "its time budget)")
    in_process: Optional[bool] = Field(
        None, description="train the one worker in the process that runs the stage rather "
        "than as a Ray task holding its resources (default: yes for `imgclf train` with no "
        "Ray cluster to join, i.e. no --ray-address, $RAY_ADDRESS or `ray start` head here; "
        "no starts a local Ray); a re-run resumes from the last saved epoch")

    @field_validator("ray_address")
    @classmethod
    def _not_ray_client(cls, v: Optional[str]) -> Optional[str]:
        if v and v.startswith("ray://"):
            raise ValueError("ray:// (Ray Client) is not supported for Train/Tune; run this on "
                             "the head node with --ray-address auto or host:port")
        return v

    @model_validator(mode="after")
    def _one_worker_in_process(self) -> "ScalingOptions":
        if self.in_process and self.workers > 1:
            raise ValueError(f"--in-process trains one worker; --workers {self.workers} needs Ray")
        return self


class TrainConfig(BaseModel):
    """One training run: data, model, optimiser and scaling. It travels into the checkpoint."""

    model_config = ConfigDict(extra="forbid")

    dataset: Name = Field("mnist", description="a prepared dataset's name in the store")
    store: StoreUrl = Field(DEFAULT_STORE, description="store holding data, checkpoints and models")
    # Plain defaults, not factories: the JSON schema (the Prefect form) then shows them.
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    compute: ComputeConfig = ComputeConfig()
    scaling: ScalingOptions = ScalingOptions()
    epochs: int = Field(1, gt=0, le=1000, description="training epochs")
    seed: int = Field(0, description="seed of weights, shuffling and augmentation")
    max_train_samples: Optional[int] = Field(
        None, gt=0, description="train on a seeded subset of this many images (smoke runs)")
    max_eval_samples: Optional[int] = Field(
        None, gt=0, description="validate and test on a fixed sample of this many images, the "
        "same for every run (study points; default: the whole splits)")
    tracking: TrackingConfig = Field(TrackingConfig(), description="MLflow tracking")


# The study's five levers (plus weight decay, which Tune also samples): where each lives in a
# TrainConfig. `apply_levers` is the one place that sets them, for Tune's trials and the study.
Lever = Literal["lr", "batch_size", "activation", "structure", "dropout"]
LEVERS: tuple[str, ...] = ("lr", "batch_size", "activation", "structure", "dropout")
_LEVER_PATH: dict[str, tuple[str, str]] = {
    "lr": ("optim", "lr"), "batch_size": ("optim", "batch_size"),
    "weight_decay": ("optim", "weight_decay"), "activation": ("model", "activation"),
    "dropout": ("model", "dropout"), "structure": ("model", "preset")}


def lever_value(cfg: TrainConfig, lever: str) -> Any:
    """A lever's value in cfg (a structure: its preset, or the family's default one)."""
    part, field = _LEVER_PATH[lever]
    value = getattr(getattr(cfg, part), field)
    if lever == "structure" and value is None:
        from lightning_modules.nets import FAMILIES

        return FAMILIES[cfg.model.family].default_preset
    return value


def apply_levers(cfg: TrainConfig, values: dict[str, Any], **top: Any) -> TrainConfig:
    """cfg with the given levers set (a structure is a named preset: free widths are dropped)
    and top-level fields replaced (epochs, seed); validated again as a whole."""
    d = cfg.model_dump(mode="json")
    for lever, value in values.items():
        if lever not in _LEVER_PATH:
            raise ValueError(f"unknown lever {lever!r}; one of {sorted(_LEVER_PATH)}")
        part, field = _LEVER_PATH[lever]
        d[part][field] = value
        if lever == "structure":
            d["model"]["widths"] = None
    return TrainConfig(**{**d, **top})


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
    min_gain: float = Field(0.0, ge=0.0, le=1.0, description="a sampled config replaces the "
                            "base config (the first trial) only if it scores more than this "
                            "higher: short trials are noisy")
    tune_name: Optional[Name] = Field(None, description="experiment name (default: from "
                                      "inputs); the same name resumes an interrupted tune")


class TuneConfig(BaseModel):
    """A tuning run: the base training config, the search space and the budget."""

    model_config = ConfigDict(extra="forbid")

    base: TrainConfig = TrainConfig()
    space: SearchSpace = SearchSpace()
    tune: TuneOptions = TuneOptions()
