"""The model and optimiser configs: what a network and its training step need, nothing else."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

Family = Literal["bp", "dnn", "cnn", "dcnn"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"]

# Named structures per family; `widths` overrides them. The meaning of each width:
#   bp: [hidden]; dnn: [hidden, ...] (depth = len); cnn: [conv1, conv2, fc];
#   dcnn: [stem, block1, block2, block3] (each block: two 3×3 convs with batch norm, then a pool).
PRESETS: dict[str, dict[str, list[int]]] = {
    "bp": {"small": [64], "medium": [256], "large": [1024]},
    "dnn": {"small": [256, 128], "medium": [512, 256, 128], "large": [1024, 512, 256, 128]},
    "cnn": {"small": [6, 16, 120], "medium": [32, 64, 256], "large": [64, 128, 512]},
    "dcnn": {"small": [16, 32, 64, 64], "medium": [32, 64, 128, 128],
             "large": [64, 128, 256, 256], "wide": [64, 256, 512, 512]},
}
GPU_PRESETS = {"wide"}  # too slow to sweep on CPUs; tuning and the study skip them by default


def cpu_presets(family: str) -> list[str]:
    return [p for p in PRESETS[family] if p not in GPU_PRESETS]


DEFAULT_PRESET = {"bp": "medium", "dnn": "medium", "cnn": "medium", "dcnn": "medium"}
WIDTH_COUNT = {"bp": (1, 1), "dnn": (1, 8), "cnn": (3, 3), "dcnn": (4, 4)}


class ModelConfig(BaseModel):
    """Which network, and the structure/activation/dropout levers of the study."""

    model_config = ConfigDict(extra="forbid")

    family: Family = Field("cnn", description="bp, dnn, cnn or dcnn",
                           json_schema_extra={"cli_aliases": ["--model"]})
    activation: Activation = Field("relu", description="activation function")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before dense layers")
    preset: Optional[str] = Field(None, description="named structure (small, medium, large; "
                                  "dcnn also wide); default medium")
    widths: Optional[list[int]] = Field(None, description="free widths, comma-separated; "
                                        "overrides --preset")

    @model_validator(mode="after")
    def _check_structure(self) -> "ModelConfig":
        presets = PRESETS[self.family]
        if self.preset is not None and self.preset not in presets:
            raise ValueError(f"preset {self.preset!r} is not one of {sorted(presets)} "
                             f"for family {self.family!r}")
        if self.widths is not None:
            lo, hi = WIDTH_COUNT[self.family]
            if not lo <= len(self.widths) <= hi or any(w <= 0 for w in self.widths):
                raise ValueError(f"family {self.family!r} needs {lo}..{hi} positive widths, "
                                 f"got {self.widths}")
        return self

    def resolved_widths(self) -> list[int]:
        if self.widths is not None:
            return list(self.widths)
        return PRESETS[self.family][self.preset or DEFAULT_PRESET[self.family]]


class OptimConfig(BaseModel):
    """Learning rate, batch size and the rest of the optimiser and schedule."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam", "adamw"] = Field("adamw", description="optimiser")
    lr: float = Field(2e-3, gt=0.0, le=10.0, description="peak learning rate")
    batch_size: int = Field(128, gt=0, description="batch size per worker")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    nesterov: bool = Field(True, description="Nesterov momentum for SGD")
    weight_decay: float = Field(5e-4, ge=0.0, description="weight decay")
    schedule: Literal["onecycle", "cosine", "none"] = Field("onecycle", description="LR schedule")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing")
