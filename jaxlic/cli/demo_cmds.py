"""`jaxlic demo`: the README's main job (`jaxlic.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

FINE_TUNE_STEPS, FROM_SCRATCH_STEPS = 200, 600


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="shipped models vs JPEG, a short fine-tune, a VTA bundle (the README's "
                                           "main job)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train a small model from scratch instead of using the shipped ones")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default {FINE_TUNE_STEPS} for the fine-tune, {FROM_SCRATCH_STEPS} "
                        "from scratch)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from jaxlic.demo import run_demo

    default = FROM_SCRATCH_STEPS if args.from_scratch else FINE_TUNE_STEPS
    run_demo(args.out, default if args.steps is None else args.steps, from_scratch=args.from_scratch)
    return 0
