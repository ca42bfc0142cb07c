"""`imgclf`: the command line over the flow stages. `imgclf SUBCOMMAND --help` lists options."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pydantic import ValidationError

from flows.cli_options import add_model_options, model_from_args, one_line
from flows.config import EvalConfig, PrepConfig, StudyConfig, TrainConfig, TuneConfig
from flows.errors import UserError


def _prepare(args: argparse.Namespace) -> int:
    from flows.prep.build import prepare

    res = prepare(model_from_args(PrepConfig, args))
    m = res.manifest
    print(json.dumps({"uri": res.uri, "cache_hit": res.cache_hit, "name": m["name"],
                      "shape": m["shape"], "classes": len(m["classes"]),
                      "counts": {s: v["count"] for s, v in m["splits"].items()},
                      "skipped": m["skipped"]["count"]}))
    return 0


def _train(args: argparse.Namespace) -> int:
    cfg = model_from_args(TrainConfig, args)
    from cluster.launcher import train

    out = train(cfg)
    print(json.dumps({"run_name": out.run_name, "bundle": out.bundle_uri, "cached": out.cached,
                      "metrics": out.info.get("metrics", {}),
                      "train_seconds": out.info.get("train_seconds")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    cfg = model_from_args(EvalConfig, args)
    from flows.evaluate import bundle_uri, evaluate_bundle

    m = evaluate_bundle(bundle_uri(cfg))
    print(json.dumps({k: v for k, v in m.items() if k not in ("confusion", "per_class")}))
    return 0


def _tune(args: argparse.Namespace) -> int:
    cfg = model_from_args(TuneConfig, args)
    from cluster.tuner import run_tune

    out = run_tune(cfg)
    print(json.dumps({"name": out.name, "uri": out.uri, "best": out.best["params"],
                      "best_val_acc": out.best["best_val_acc"], "trials": len(out.trials),
                      "stopped_early": out.best["stopped_early"]}))
    return 0


def _study(args: argparse.Namespace) -> int:
    from flows.study import run_study

    uri = run_study(model_from_args(StudyConfig, args))
    print(json.dumps({"uri": uri, "json": f"{uri}/study.json", "plot": f"{uri}/study.png"}))
    return 0


COMMANDS = {
    "prepare": (PrepConfig, _prepare, "prepare a dataset into the store"),
    "train": (TrainConfig, _train, "train a model on Ray and publish its bundle"),
    "evaluate": (EvalConfig, _evaluate, "evaluate a trained model on its test split"),
    "tune": (TuneConfig, _tune, "tune the study's levers with Ray Tune (ASHA)"),
    "study": (StudyConfig, _study, "sweep each lever alone over a grid, several seeds"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgclf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (model, _, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_model_options(p, model)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][1](args)
    except ValidationError as e:
        print(f"imgclf {args.command}: error: {one_line(e)}", file=sys.stderr)
    except UserError as e:
        print(f"imgclf {args.command}: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"imgclf {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
