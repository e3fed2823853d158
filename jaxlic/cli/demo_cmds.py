"""`jaxlic demo`: the README's main job (`jaxlic.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train a small model, compare with JPEG, plot (the README's main job)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from jaxlic.demo import run_demo

    run_demo(args.out, args.steps)
    return 0
