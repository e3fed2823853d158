"""The `jaxlic` command line: one sub-module per command group, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from jaxlic.errors import JaxlicError, PathError

# Command groups, imported lazily so `jaxlic --help` stays fast.
COMMAND_MODULES = (
    "jaxlic.cli.asym_cmds",
    "jaxlic.cli.codec_cmds",
    "jaxlic.cli.demo_cmds",
    "jaxlic.cli.distill_cmds",
    "jaxlic.cli.eval_cmds",
    "jaxlic.cli.models_cmds",
    "jaxlic.cli.quant_cmds",
    "jaxlic.cli.sandwich_cmds",
    "jaxlic.cli.secure_cmds",
    "jaxlic.cli.train_cmds",
    "jaxlic.cli.watermark_cmds",
)


def _is_key(path: Path) -> bool:
    """Whether a file starts like a private key (PEM) or a watermark key: files no command but
    `keygen --force` may replace."""
    from jaxlic.secure.watermark import KEY_FORMAT

    try:
        with path.open("rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return b"PRIVATE KEY-----" in head or f'"format": "{KEY_FORMAT}"'.encode() in head


class ShippedModel(str):
    """A `--model NAME:QUALITY` naming a model shipped with jaxlic (no file to check)."""


def model_spec(text: str) -> Path | ShippedModel:
    """argparse type of a model option: a package path, or NAME:QUALITY of a shipped model when no
    such file exists (`jaxlic models --shipped` lists them)."""
    from jaxlic.pretrained import SPEC

    return ShippedModel(text) if SPEC.match(text) and not Path(text).exists() else Path(text)


def check_paths(inputs: Iterable[Path], outputs: Iterable[Path], force: bool = False) -> None:
    """PathError unless every input is a readable file and every output can be written without
    replacing an input, a private key, a folder, or (without `force`) any existing file. Shipped
    models (NAME:QUALITY) are inputs without a file and need no check."""
    inputs = [Path(p) for p in inputs if not isinstance(p, ShippedModel)]
    for path in inputs:
        if not path.is_file():
            raise PathError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
    for path in map(Path, outputs):
        if path.is_dir():
            raise PathError(f"{path} is a folder; name a file to write")
        if path.exists():
            if any(path.samefile(source) for source in inputs):
                raise PathError(f"{path} is also an input; refusing to overwrite it")
            if _is_key(path):
                raise PathError(f"{path} holds a private key; refusing to overwrite it")
            if not force:
                raise PathError(f"{path} already exists; use --force to replace it")
        parent = next(p for p in path.absolute().parents if p.exists())
        if not parent.is_dir():
            raise PathError(f"{path}: {parent} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PathError(f"{path}: {parent} is not writable")


def add_force_option(parser: argparse.ArgumentParser) -> None:
    """--force: replace existing outputs (never inputs or private keys)."""
    parser.add_argument("--force", action="store_true", help="replace existing outputs (never inputs or keys)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(prog="jaxlic", description="Learned image compression in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one command; typed errors (and I/O errors) become a one-line message
    and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except JaxlicError as exc:
        print(f"jaxlic: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that vanished or turned unwritable after the checks
        print(f"jaxlic: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxlic: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
