"""The `jaxlic` command line: one sub-module per command group, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxlic.errors import JaxlicError

# Command groups, imported lazily so `jaxlic --help` stays fast.
COMMAND_MODULES = (
    "jaxlic.cli.codec_cmds",
    "jaxlic.cli.distill_cmds",
    "jaxlic.cli.eval_cmds",
    "jaxlic.cli.quant_cmds",
    "jaxlic.cli.sandwich_cmds",
    "jaxlic.cli.secure_cmds",
    "jaxlic.cli.train_cmds",
    "jaxlic.cli.watermark_cmds",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(prog="jaxlic", description="Learned image compression in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one command; typed errors become a one-line message and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except JaxlicError as exc:
        print(f"jaxlic: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxlic: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
