"""The model and optimiser configs: what a network and its training step need, nothing else."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from lightning_modules.nets import ACTIVATIONS, FAMILIES
from lightning_modules.store import url_problem
from lightning_modules.streamed import DEFAULT_CACHE
from lightning_modules.torch_compat import cpu_has_native_bf16

# The choices come from the registry (lightning_modules/nets.py): a new family is added there.
Family = Literal[tuple(FAMILIES)]  # type: ignore[valid-type]
FAMILY_NAMES: list[str] = list(FAMILIES)
Activation = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_PATTERN = _NAME_RE.pattern


def _store_form(v: str) -> str:
    """A store URL's form is checked with the options (no network); stages check the rest."""
    problem = url_problem(v)
    if problem:
        raise ValueError(f"store {v!r}: {problem}")
    return v


def _safe_name(v: Optional[str]) -> Optional[str]:
    """Names become folder names in the store: letters, digits, '.', '_', '-', 64 at most."""
    if v is not None and not _NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a valid name (letters, digits, '.', '_', '-')")
    return v


StoreUrl = Annotated[str, AfterValidator(_store_form)]
Name = Annotated[str, AfterValidator(_safe_name)]


class ModelConfig(BaseModel):
    """Which network, and the structure/activation/dropout levers of the study."""

    model_config = ConfigDict(extra="forbid")

    family: Family = Field("cnn", description=", ".join(FAMILY_NAMES),
                           json_schema_extra={"cli_aliases": ["--model"]})
    activation: Activation = Field("relu", description="activation function")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before dense layers")
    preset: Optional[str] = Field(None, description="named structure (small, medium, large; "
                                  "dcnn also wide); default medium, dcnn small")
    widths: Optional[list[int]] = Field(None, description="free widths, comma-separated; "
                                        "overrides --preset")

    @model_validator(mode="after")
    def _check_structure(self) -> "ModelConfig":
        presets = FAMILIES[self.family].presets
        if self.preset is not None and self.preset not in presets:
            raise ValueError(f"preset {self.preset!r} is not one of {sorted(presets)} "
                             f"for family {self.family!r}")
        if self.widths is not None:
            lo, hi = FAMILIES[self.family].widths
            if not lo <= len(self.widths) <= hi or any(w <= 0 for w in self.widths):
                raise ValueError(f"family {self.family!r} needs {lo}..{hi} positive widths, "
                                 f"got {self.widths}")
        return self

    def resolved_widths(self) -> list[int]:
        if self.widths is not None:
            return list(self.widths)
        fam = FAMILIES[self.family]
        return fam.presets[self.preset or fam.default_preset]


class OptimConfig(BaseModel):
    """Learning rate, batch size and the rest of the optimiser and schedule."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam", "adamw"] = Field("adamw", description="optimiser")
    lr: float = Field(2e-3, gt=0.0, le=10.0, description="peak learning rate")
    batch_size: int = Field(128, gt=0, description="batch size per worker")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    nesterov: bool = Field(True, description="Nesterov momentum for SGD")
    weight_decay: float = Field(5e-4, ge=0.0, description="weight decay")
    schedule: Literal["onecycle", "cosine", "warmup_linear", "none"] = Field(
        "onecycle", description="LR schedule (warmup_linear: from 0.2x up to the peak over "
        "the first 23 per cent of steps, then linearly down to 0.07x, as airbench)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing")
    decoupled_weight_decay: bool = Field(
        False, description="SGD: weight decay is the fraction of each weight removed per step "
        "at the peak learning rate, whatever the learning rate (airbench's decoupling)")
    norm_lr_scale: float = Field(1.0, gt=0.0, le=1000.0, description="learning-rate "
                                 "multiplier for batch-norm shifts (airbench: 64)")
    lookahead: bool = Field(False, description="every 5 steps pull the weights towards their "
                            "running average, ending on the average (airbench's lookahead EMA)")


Precision = Literal["auto", "32-true", "bf16-mixed"]


def native_bf16(device: str) -> bool:
    """Whether the device computes bf16 natively (else autocast only adds conversions)."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


class ComputeConfig(BaseModel):
    """How the steps run on the hardware, not what they learn: precision, memory layout and
    where the data lives. `auto` picks what measured faster (README, "Throughput")."""

    model_config = ConfigDict(extra="forbid")

    precision: Precision = Field(
        "auto", description="32-true, bf16-mixed, or auto: bf16 autocast on CUDA and, for the "
        "convolutional families, on CPUs with native bf16 (AVX512-BF16, AMX); else 32-bit")
    channels_last: Optional[bool] = Field(
        None, description="NHWC memory layout (default: for the convolutional families)")
    resident_data: bool = Field(
        True, description="copy the whole training set to the device once (a GPU), instead of "
        "one batch per step")
    stream_data: Optional[bool] = Field(
        None, description="read the training images batch by batch from their shards instead "
        "of holding them (default: when they exceed 256 MB)")
    shard_cache: str = Field(
        DEFAULT_CACHE, description="local folder for a remote store's shards when "
        "streamed (shared by the runs of a machine)")

    def resolved(self, family: str, device: str) -> tuple[str, bool]:
        """(Lightning precision, channels_last) for this family on this device type."""
        conv = FAMILIES[family].convolutional
        precision = self.precision
        if precision == "auto":
            fast = native_bf16(device) and (device == "cuda" or conv)
            precision = "bf16-mixed" if fast else "32-true"
        channels_last = conv if self.channels_last is None else self.channels_last
        return precision, channels_last
