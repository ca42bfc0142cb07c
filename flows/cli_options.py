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
                      prefix: str = "") -> None:
    """One `--kebab-name` option per field; defaults stay in the model (argparse default None)."""
    for name, field in model.model_fields.items():
        ann = _unwrap(field.annotation)
        flag = "--" + (prefix + name).replace("_", "-")
        kw: dict[str, Any] = {"dest": prefix + name, "default": None,
                              "help": f"{field.description or ''} (default: {field.default})"}
        if ann is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(ann) is Literal:
            choices = typing.get_args(ann)
            kw["type"] = type(choices[0])
            kw["choices"] = choices
        elif ann in (int, float, str):
            kw["type"] = ann
        else:
            kw["type"] = str
        parser.add_argument(flag, **kw)


def model_from_args(model: type[BaseModel], args: argparse.Namespace, prefix: str = "") -> Any:
    given = {n: getattr(args, prefix + n) for n in model.model_fields
             if getattr(args, prefix + n, None) is not None}
    return model(**given)


def one_line(err: ValidationError) -> str:
    """The first validation problem, named by its CLI option."""
    e = err.errors()[0]
    loc = "--" + "-".join(str(p) for p in e["loc"]).replace("_", "-") if e["loc"] else "options"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if e["loc"] else msg
