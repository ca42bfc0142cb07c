"""argparse options generated from a pydantic config: one source of truth for CLI and UI."""
from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError


def _unwrap(annotation: Any) -> Any:
    """Optional[X] → X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel],
                      prefix: str = "", defaults: Any = None) -> None:
    """One `--kebab-name` option per field; defaults stay in the model (argparse default None).
    The help shows the default that runs: a nested config's own (the pipeline's tuning budget,
    say), not its class's."""
    for name, field in model.model_fields.items():
        ann = _unwrap(field.annotation)
        default = getattr(defaults, name) if defaults is not None \
            else field.get_default(call_default_factory=True)
        if isinstance(ann, type) and issubclass(ann, BaseModel):  # nested: flatten its fields
            add_model_options(parser, ann, prefix + _cli_prefix(field), default)
            continue
        flag = "--" + (prefix + name).replace("_", "-")
        text = field.description or ""
        if "default" not in text:  # a description that says its default says it better
            text += f" (default: {_show(default)})"
        kw: dict[str, Any] = {"dest": prefix + name, "default": None, "help": text}
        if ann is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(ann) is Literal:
            choices = typing.get_args(ann)
            kw["type"] = type(choices[0])
            kw["choices"] = choices
        elif ann in (int, float, str):
            kw["type"] = ann
        elif typing.get_origin(ann) is list:
            kw["type"] = _list_of(typing.get_args(ann)[0])
            kw["metavar"] = "A,B,..."
        elif typing.get_origin(ann) is dict:
            kw["type"] = _pairs
            kw["metavar"] = "K=V,..."
        else:
            kw["type"] = str
        extra = (field.json_schema_extra or {}).get("cli_aliases", []) \
            if isinstance(field.json_schema_extra, dict) else []
        parser.add_argument(flag, *extra, **kw)


def _cli_prefix(field: Any) -> str:
    """A nested config's options are flattened; one whose names would clash carries a prefix
    (the pipeline's study plan: --study-levers, --study-seeds, ...)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("cli_prefix", ""))


def _show(value: Any) -> str:
    """A default as a user would type it: lists comma-separated, configs by their text form."""
    if isinstance(value, list):
        return ",".join(_show(v) for v in value) or "none"
    if isinstance(value, BaseModel):
        return str(getattr(value, "dataset", None) or value)
    return "none" if value is None else str(value)


def _pairs(text: str) -> dict[str, str]:
    """A parser for `key=value,key=value` (a family's structure: `dcnn=large`)."""
    pairs = [p.partition("=") for p in text.split(",") if p.strip()]
    if any(not k.strip() or not sep or not v.strip() for k, sep, v in pairs):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of key=value")
    return {k.strip(): v.strip() for k, _, v in pairs}


def _list_of(item: Any) -> Any:
    """A parser for comma-separated lists; pydantic validates the items (choices, ranges)."""
    convert = item if item in (int, float) else str
    name = {int: "integers", float: "numbers"}.get(convert, "values")

    def parse(text: str) -> list:
        try:
            return [convert(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {name}") from None
    parse.__name__ = f"list of {name}"
    return parse


def model_from_args(model: type[BaseModel], args: argparse.Namespace, prefix: str = "") -> Any:
    """Rebuild the (possibly nested) config from the flat options that were given; MLflow's
    MLFLOW_TRACKING_URI is read here, at the command's entry, when --tracking-uri is not given."""
    from lightning_modules.tracking import with_env

    return with_env(model(**_given(model, args, prefix)))


def given_options(model: type[BaseModel], args: argparse.Namespace) -> dict:
    """Only the options given on the command line, nested like the config (for overrides)."""
    return _given(model, args, "")


def _given(model: type[BaseModel], args: argparse.Namespace, prefix: str) -> dict:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann = _unwrap(field.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = _given(ann, args, prefix + _cli_prefix(field))
        elif getattr(args, prefix + name, None) is not None:
            out[name] = getattr(args, prefix + name)
    return out


def one_line(err: ValidationError) -> str:
    """The first validation problem, named by its CLI option (`--lr`, `--activations`)."""
    e = err.errors()[0]
    msg = e["msg"].removeprefix("Value error, ")
    names = [p for p in e["loc"] if isinstance(p, str)]  # list positions are ints: skip them
    if not names or names[-1] in _NESTED:  # a check across fields names its own options
        return msg
    return f"--{names[-1].replace('_', '-')}: {msg}"


# Field names that hold nested configs rather than options.
_NESTED = {"base", "space", "tune", "model", "optim", "scaling", "plan", "study_plan",
           "tracking"}
