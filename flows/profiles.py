"""Pipeline profiles: `smoke` (minutes, CI and demos), `default` (`make run`: the three
datasets within 15 minutes on a 2-core machine), `cifar` (CIFAR-10 alone, 30 minutes), `full`
(three seeds, a larger search, the study)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from flows.config import DatasetSpec, PipelineConfig
from flows.prep.kinds import KINDS

# Where offline copies of the canonical datasets may live: $IMGCLF_OFFLINE_DATA, else
# ../shared/datasets beside the repository (the layout of this project's machines).
_REPO = Path(__file__).resolve().parents[1]

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"families": ["bp", "cnn"], "epochs": 1, "max_train_samples": 2000,
              "tune_train_samples": 1000,
              "tune": {"num_samples": 2, "max_epochs": 1}, "run_time_budget_s": 300,
              "space": {"batch_sizes": [64, 128]}},
    "default": {},
    # CIFAR-10 alone with time for airbench94's net (30 minutes on a 2-core machine).
    "cifar": {"datasets": ["cifar10"], "structures": {"dcnn": "large"},
              "run_time_budget_s": 1680, "max_final_epochs": 10},
    "full": {"datasets": ["mnist", "fashion-mnist", "cifar10"], "epochs": 5, "seeds": 3,
             "max_train_samples": None, "tune_train_samples": 20_000,
             "tune": {"num_samples": 8, "max_epochs": 3}, "run_time_budget_s": None,
             "space": {"presets": None},
             "study": True},
}
PROFILE_NAMES = tuple(PROFILES)
ProfileName = Literal[PROFILE_NAMES]  # type: ignore[valid-type]


def offline_dir() -> Path:
    return Path(os.environ.get("IMGCLF_OFFLINE_DATA") or _REPO.parent / "shared" / "datasets")


def with_offline_source(spec: DatasetSpec) -> DatasetSpec:
    """A canonical dataset with no source reads its offline copy when this machine has one
    (content-addressed prep makes the result identical to the verified download)."""
    offline = KINDS[spec.dataset].offline
    if spec.source or offline is None:
        return spec
    folder, read_as = offline
    path = offline_dir() / folder
    if not path.is_dir():
        return spec
    # Read as another kind (CIFAR-10's JPEG tree), it keeps the copy's own name.
    name = spec.name or (path.name if read_as != spec.dataset else None)
    return DatasetSpec(dataset=read_as, source=str(path), name=name)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build(profile: ProfileName = "default", overrides: Optional[dict] = None) -> PipelineConfig:
    """The profile's config with the given overrides (nested dicts merge field by field)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {sorted(PROFILES)}")
    base = PipelineConfig().model_dump(mode="json")
    cfg = PipelineConfig(**_merge(_merge(base, PROFILES[profile]), overrides or {}))
    return resolve_sources(cfg)


def resolve_sources(cfg: PipelineConfig) -> PipelineConfig:
    return cfg.model_copy(update={"datasets": [with_offline_source(d) for d in cfg.datasets]})
