"""`jaxlic quantize`: a float model package -> an integer-mode package (int8 + integer GDN)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.cli import model_spec

from jaxlic.cli.train_cmds import add_train_options, train_config_from_args

QAT_FLAGS = {"steps": "--qat-steps"}


def add_quantize_options(p: argparse.ArgumentParser, **defaults) -> None:
    """The options `quantize` and `watermark` share: model, output, calibration and the QAT run's
    `TrainConfig` flags (its steps as --qat-steps), with `defaults` for those flags."""
    p.add_argument("--model", type=model_spec, required=True, help="float model package (.jxlm) or NAME:QUALITY of a shipped model")
    p.add_argument("--out", type=Path, required=True, help="integer-mode model package to write (.jxlm)")
    steps_help = f"QAT fine-tuning steps (default {defaults['steps']}; 0: post-training quantization)"
    add_train_options(p, QAT_FLAGS, {"steps": steps_help, "data": "training image folder for calibration and QAT "
                                                                    "(repeatable); default: built-in images"},
                      **defaults)
    p.add_argument("--calibration-batches", type=int, default=4)
    p.add_argument("--run-dir", type=Path, help="QAT run directory (checkpoints, resumable); default: OUT.qat/")
    p.add_argument("--graph", type=Path, help="also write the integer graph alone (.npz) for compilers")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="integerize a model package: calibration, optional QAT, integer decoder graph")
    add_quantize_options(p, steps=0, learning_rate=5e-5, crop=256, checkpoint_every=100)
    p.add_argument("--weight-rounding", choices=("gptq", "nearest"), default="gptq",
                   help="post-training: round the synthesis weights by GPTQ on the calibration batches "
                        "(default) or each to its nearest grid point")
    p.set_defaults(func=_quantize)


def quantize_recipe(args: argparse.Namespace):
    """(calibration batches, the QAT `TrainConfig` or None for post-training, run directory) of
    the options `add_quantize_options` adds."""
    from jaxlic.errors import ConfigError
    from jaxlic.train.compose import qat_batches

    if args.steps < 0 or args.calibration_batches < 1:
        raise ConfigError("--qat-steps must be >= 0 and --calibration-batches >= 1")
    train = train_config_from_args(args, steps=max(args.steps, 1))  # post-training: only its data, batch, crop, seed
    run_dir = args.run_dir or args.out.with_name(args.out.name + ".qat")
    return qat_batches(train, args.calibration_batches), train if args.steps else None, run_dir


def write_integer(package, args: argparse.Namespace, batches) -> None:
    """Write the package to --out (and its graph to --graph) and say what it is, with its
    integer GDN's error measured on the calibration `batches`."""
    from jaxlic.quant.gdn_error import describe_errors, gdn_errors
    from jaxlic.quant.pipeline import describe

    package.save(args.out)
    if args.graph:
        package.integer.save(args.graph)
    print(f"wrote {args.out} ({f'QAT {args.steps} steps' if args.steps else 'post-training'}): {describe(package)}")
    if package.integer.meta["igdn"]:
        print(f"integer GDN vs float GDN on the calibration batches: {describe_errors(gdn_errors(package, batches))}")


def _quantize(args: argparse.Namespace) -> int:
    from jaxlic.pretrained import load_model
    from jaxlic.quant.pipeline import quantize

    package = load_model(args.model)
    batches, qat, run_dir = quantize_recipe(args)
    write_integer(quantize(package, batches, qat, run_dir, weight_rounding=args.weight_rounding, progress=True), args, batches)
    return 0
