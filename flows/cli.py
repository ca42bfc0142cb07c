"""`imgclf`: the command line over the flow stages. `imgclf SUBCOMMAND --help` lists options."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pydantic import ValidationError

from flows.cli_options import add_model_options, model_from_args, one_line
from flows.config import PrepConfig
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


COMMANDS = {
    "prepare": (PrepConfig, _prepare, "prepare a dataset into the store"),
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
