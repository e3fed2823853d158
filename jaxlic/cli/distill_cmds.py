"""`jaxlic distill | prune`: smaller models from a trained package, by distillation or pruning."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.cli import model_spec

from jaxlic.cli.train_cmds import add_train_options, train_config_from_args


def add_distill_options(p: argparse.ArgumentParser) -> None:
    """The distillation weights and the teacher's channel-ranking crops (distill and train)."""
    p.add_argument("--latent-weight", type=float, default=1.0, help="weight of latent matching (0: off)")
    p.add_argument("--output-weight", type=float, default=1.0, help="weight of reconstruction matching (0: off)")
    p.add_argument("--calibration", type=int, default=16, help="training crops that rank the teacher's latent channels")


def _add_run_options(p: argparse.ArgumentParser, steps: int, lr: float) -> None:
    add_train_options(p, steps=steps, learning_rate=lr)
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"])
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics.jsonl, model.jxlm)")


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="train a narrower student of a teacher package (RD + distillation)")
    p.add_argument("--teacher", type=model_spec, required=True, help="teacher model package (.jxlm) or NAME:QUALITY of a shipped model")
    p.add_argument("--width", type=float, required=True, help="student zoo width (N and M scale together)")
    add_distill_options(p)
    _add_run_options(p, steps=1000, lr=1e-3)
    p.set_defaults(func=_distill)

    p = subparsers.add_parser("prune", help="fine-tune a package while pruning it on a schedule; export it shrunk")
    p.add_argument("--model", type=model_spec, required=True, help="model package (.jxlm) to prune, or NAME:QUALITY of a shipped model")
    p.add_argument("--kind", default="channel", choices=["channel", "magnitude"])
    p.add_argument("--schedule", required=True,
                   help="STEP:FRACTION,... cumulative fraction pruned after each step, e.g. 100:0.25,300:0.5")
    _add_run_options(p, steps=500, lr=1e-4)
    p.set_defaults(func=_prune)


def _describe(label: str, package) -> str:
    from jaxlic.models.complexity import macs_per_pixel, param_count

    c = package.config
    return (f"{label}: {c.arch} N={c.N} M={c.M}{' hidden=' + str(list(c.hidden)) if c.hidden else ''}, "
            f"{macs_per_pixel(c) / 1e3:.1f} kMAC/pixel, {param_count(package.params) / 1e6:.3f} M parameters")


def _distill(args: argparse.Namespace) -> int:
    from jaxlic.pretrained import load_model
    from jaxlic.train.distill import distill_task, teacher_crops
    from jaxlic.train.loop import Trainer

    teacher = load_model(args.teacher)
    config = train_config_from_args(args)
    calibration = teacher_crops(teacher, config.data, config.crop, args.calibration, config.seed)
    task = distill_task(teacher, args.width, calibration, args.latent_weight, args.output_weight, args.metric)
    student = Trainer(config, task, args.out).run()
    print(_describe("teacher", teacher))
    print(_describe("student", student))
    print(f"wrote {args.out / 'model.jxlm'}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from jaxlic.pretrained import load_model
    from jaxlic.quant.prune import PruneSchedule, prune_task
    from jaxlic.train.compose import check_schedule
    from jaxlic.train.loop import Trainer

    package = load_model(args.model)
    schedule = PruneSchedule.parse(args.kind, args.schedule)
    check_schedule(schedule, args.steps)
    pruned = Trainer(train_config_from_args(args), prune_task(package, schedule, args.metric), args.out).run()
    print(_describe("original", package))
    print(_describe("pruned", pruned))
    print(f"wrote {args.out / 'model.jxlm'}")
    return 0
