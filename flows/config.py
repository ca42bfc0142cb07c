"""Typed configs for the flow stages; the CLI options and Prefect UI forms come from these."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DatasetKind = Literal["mnist", "fashion-mnist", "cifar10", "imagefolder"]
DEFAULT_STORE = "./artifacts"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PrepConfig(BaseModel):
    """How to turn a raw source into a prepared dataset in a store."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetKind = Field("mnist", description="kind of source")
    source: Optional[str] = Field(
        None, description="local path or fsspec URL; default: the canonical download")
    name: Optional[str] = Field(
        None, description="name used in the store and reports (default: kind or folder name)")
    store: str = Field(DEFAULT_STORE, description="where prepared data goes (path or s3://)")
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
