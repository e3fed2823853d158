"""`jaxlic quantize`: a float model package -> an integer-mode package (int8 + integer GDN)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_quantize_options(p: argparse.ArgumentParser, qat_steps: int, lr: float, crop: int) -> None:
    """The options `quantize` and `watermark` share: model, output, data, QAT recipe."""
    p.add_argument("--model", type=Path, required=True, help="float model package (.jxlm)")
    p.add_argument("--out", type=Path, required=True, help="integer-mode model package to write (.jxlm)")
    p.add_argument("--data", type=Path, action="append", default=[],
                   help="training image folder for calibration and QAT (repeatable); default: built-in images")
    p.add_argument("--qat-steps", type=int, default=qat_steps,
                   help=f"QAT fine-tuning steps (default {qat_steps}; 0: post-training quantization)")
    p.add_argument("--lr", type=float, default=lr, help=f"QAT learning rate (default {lr})")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=crop)
    p.add_argument("--calibration-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, help="QAT run directory (checkpoints, resumable); default: OUT.qat/")
    p.add_argument("--graph", type=Path, help="also write the integer graph alone (.npz) for compilers")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="integerize a model package: calibration, optional QAT, integer decoder graph")
    add_quantize_options(p, qat_steps=0, lr=5e-5, crop=256)
    p.set_defaults(func=quantize)


def quantize(args: argparse.Namespace, extra_terms=(), from_integer: bool = False) -> int:
    """Calibrate, optionally QAT-fine-tune (with `extra_terms`), write the integer package.
    `from_integer` lets an integer-mode package start the fine-tune from its float parameters."""
    from jaxlic.codec import load
    from jaxlic.errors import ConfigError
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate
    from jaxlic.quant.qat import calibration_batches, qat_task
    from jaxlic.train.loop import TrainConfig, Trainer

    package = load(args.model)
    if package.integer is not None and from_integer:
        package = dataclasses.replace(package, integer=None)
    elif package.integer is not None:
        raise ConfigError(f"{args.model} is already an integer-mode package; quantize its float parent")
    if args.qat_steps < 0 or args.calibration_batches < 1:
        raise ConfigError("--qat-steps must be >= 0 and --calibration-batches >= 1")
    folders = tuple(str(d) for d in args.data)
    batches = calibration_batches(folders, args.calibration_batches, args.batch_size, args.crop, args.seed + 1)
    calibration = calibrate(package.config, package.params, batches)
    if args.qat_steps:
        config = TrainConfig(data=folders, steps=args.qat_steps, batch_size=args.batch_size, crop=args.crop,
                             learning_rate=args.lr, seed=args.seed, checkpoint_every=max(args.qat_steps // 4, 1))
        run_dir = args.run_dir or args.out.with_name(args.out.name + ".qat")
        integer = Trainer(config, qat_task(package, calibration, extra_terms=extra_terms), run_dir).run()
    else:
        integer = integerize(package.config, package.params, calibration)
    integer.save(args.out)
    graph = integer.integer
    if args.graph:
        graph.save(args.graph)
    on_vta = sum(op.placement == "vta" for op in graph.ops)
    bounds = ", ".join(f"{k} {v['max_relative_error']:.1e}" for k, v in graph.meta["igdn"].items())
    print(f"wrote {args.out} ({'QAT ' + str(args.qat_steps) + ' steps' if args.qat_steps else 'post-training'}): "
          f"{len(graph.ops)} integer ops, {on_vta} for VTA, {len(graph.ops) - on_vta} for the host; "
          f"integer GDN max relative error: {bounds}; fingerprint {integer.fingerprint.hex()}")
    return 0
