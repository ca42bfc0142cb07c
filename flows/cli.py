"""`imgclf`: the command line over the flow stages. `imgclf SUBCOMMAND --help` lists options."""
from __future__ import annotations

import argparse
import json
import os
import sys

from cluster.config import TrainConfig, TuneConfig
from flows.cli_options import add_model_options, model_from_args
from flows.config import (
    EvalConfig,
    PipelineConfig,
    PrepConfig,
    PublishConfig,
    RollbackConfig,
    StudyConfig,
)
from flows.console import report, setup_logging
from flows.profiles import PROFILE_NAMES
from flows.supervise import CHILD_ENV


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
    from cluster.launcher import train_stage
    from flows.train import train_model

    out = train_stage(cfg, train_model)
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


def _publish(args: argparse.Namespace) -> int:
    from flows.evaluate import bundle_uri
    from flows.publish_model import publish_model
    from lightning_modules.store import normalize

    cfg = model_from_args(PublishConfig, args)
    bundle_uri(cfg)  # no such model: said now, not after Prefect's temporary server started
    out = publish_model(cfg)
    print(json.dumps({**out, "serve": f"imgclf serve --store {normalize(cfg.store)}"}))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from flows.publish import previous_champion
    from flows.rollback import rollback

    cfg = model_from_args(RollbackConfig, args)
    previous_champion(cfg.store, cfg.dataset, cfg.family)  # none: said before Prefect starts
    print(json.dumps(rollback(cfg)))
    return 0


def _tune(args: argparse.Namespace) -> int:
    cfg = model_from_args(TuneConfig, args)
    from flows.tune import tune_model
    from lightning_modules import metrics as M

    out = tune_model(cfg)
    print(json.dumps({"name": out.name, "uri": out.uri, "best": out.best.params,
                      M.SCORE: out.best.best_score, "trials": len(out.trials),
                      "stopped_early": out.best.stopped_early}))
    return 0


def _study(args: argparse.Namespace) -> int:
    from flows.study import study

    uri = study(model_from_args(StudyConfig, args))
    print(json.dumps({"uri": uri, "json": f"{uri}/study.json",
                      "findings": f"{uri}/findings.md"}))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from flows.cli_options import given_options
    from flows.pipeline import pipeline
    from flows.profiles import build

    cfg = build(args.profile, given_options(PipelineConfig, args))
    run = pipeline(cfg=cfg, storage_block=args.storage_block or "")
    print(json.dumps({"run": run, "comparison": f"{run}/comparison.html",
                      "manifest": f"{run}/manifest.json"}))
    return 0


def _pipeline_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=list(PROFILE_NAMES), default="default",
                   help=f"{', '.join(PROFILE_NAMES)} (flows/profiles.py); the defaults shown "
                   "below are the default profile's, and options given override the profile")
    p.add_argument("--storage-block", default=None,
                   help="a Prefect Secret block with the store's credentials as JSON env vars")


def _cluster(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cluster import local

    state = Path(args.state).expanduser()
    if args.action == "up":
        info = local.up(args.nodes, args.cpus_per_node, args.gpus_per_node, args.dashboard_port,
                        state)
        print(json.dumps({**info, "use": f"RAY_ADDRESS={info['address']} imgclf train ..."}))
    elif args.action == "down":
        print(json.dumps({"stopped_processes": len(local.down(state))}))
    else:
        print(json.dumps(local.read_state(state) or {"up": False}))
    return 0


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--nodes", type=int, default=2, help="worker nodes (default: 2)")
    p.add_argument("--cpus-per-node", type=int, default=None,
                   help="logical CPUs per worker node (default: all CPUs / nodes)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="logical GPUs per worker node")
    p.add_argument("--dashboard-port", type=int, default=8265)
    p.add_argument("--state", default="~/.cache/imgclf/local-cluster.json",
                   help="the cluster's state file (address, keeper PID)")


def _serve(args: argparse.Namespace) -> int:
    from flows.serve import serve

    serve(args.store, args.host, args.port, args.header_timeout_s, args.queue)
    return 0


def _serve_options(p: argparse.ArgumentParser) -> None:
    from lightning_modules.layout import DEFAULT_STORE

    p.add_argument("--store", default=DEFAULT_STORE, help="store with published runs")
    p.add_argument("--host", default="127.0.0.1", help="interface (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--header-timeout-s", type=float, default=5.0,
                   help="a client that has not sent its request headers by then is dropped "
                   "(default: 5)")
    p.add_argument("--queue", type=int, default=256,
                   help="requests handled at once; more wait in the listen backlog (default: 256)")


COMMANDS = {
    "prepare": (PrepConfig, _prepare, "prepare a dataset into the store"),
    "train": (TrainConfig, _train, "train a model on Ray and publish its bundle"),
    "evaluate": (EvalConfig, _evaluate, "evaluate a trained model on its test split"),
    "publish": (PublishConfig, _publish, "publish one trained model as a run (evaluated "
                "first if needed) so `imgclf serve` shows it"),
    "rollback": (RollbackConfig, _rollback, "point a champion back at the previous one (the "
                 "page serves it at once; the MLflow alias `champion` moves back too)"),
    "tune": (TuneConfig, _tune, "tune the study's levers with Ray Tune (ASHA)"),
    "study": (StudyConfig, _study, "does deeper classify better, and does each lever help? trained models, raced levers, corrected tests"),
    "pipeline": (PipelineConfig, _pipeline, "the whole DAG: prep, tune, train, evaluate, "
                 "publish, compare"),
    "cluster": (None, _cluster, "a local multi-node Ray cluster on this machine: up/down/status"),
    "serve": (None, _serve, "the prototype page and its JSON API over the published models"),
}
EXTRA_OPTIONS = {"pipeline": _pipeline_extra, "cluster": _cluster_options,
                 "serve": _serve_options}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgclf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (model, _, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if model is not None:
            add_model_options(p, model)
        if name in EXTRA_OPTIONS:
            EXTRA_OPTIONS[name](p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_path = setup_logging(args.command, args.verbose)
    try:
        return COMMANDS[args.command][1](args)
    except KeyboardInterrupt:
        if not os.environ.get(CHILD_ENV):  # the guard has said so already
            print(f"imgclf {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return report(args.command, e, args.verbose, log_path)



if __name__ == "__main__":  # the child the `imgclf` guard starts (flows/supervise.py)
    from flows.supervise import watch_guard_if_guarded

    watch_guard_if_guarded()
    sys.exit(main())
