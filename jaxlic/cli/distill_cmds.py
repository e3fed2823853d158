"""`jaxlic distill | prune`: smaller models from a trained package, by distillation or pruning."""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_training_args(p: argparse.ArgumentParser, steps: int, lr: float) -> None:
    p.add_argument("--data", type=Path, action="append", default=[],
                   help="training image folder (repeatable; never the evaluation set); default: built-in images")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"])
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics.jsonl, model.jxlm)")


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="train a narrower student of a teacher package (RD + distillation)")
    p.add_argument("--teacher", type=Path, required=True, help="teacher model package (.jxlm)")
    p.add_argument("--width", type=float, required=True, help="student zoo width (N and M scale together)")
    p.add_argument("--latent-weight", type=float, default=1.0, help="weight of latent matching (0: off)")
    p.add_argument("--output-weight", type=float, default=1.0, help="weight of reconstruction matching (0: off)")
    p.add_argument("--calibration", type=int, default=16, help="training crops that rank the teacher's latent channels")
    _add_training_args(p, steps=1000, lr=1e-3)
    p.set_defaults(func=_distill)

    p = subparsers.add_parser("prune", help="fine-tune a package while pruning it on a schedule; export it shrunk")
    p.add_argument("--model", type=Path, required=True, help="model package (.jxlm) to prune")
    p.add_argument("--kind", default="channel", choices=["channel", "magnitude"])
    p.add_argument("--schedule", required=True,
                   help="STEP:FRACTION,... cumulative fraction pruned after each step, e.g. 100:0.25,300:0.5")
    _add_training_args(p, steps=500, lr=1e-4)
    p.set_defaults(func=_prune)


def _train_config(args: argparse.Namespace):
    from jaxlic.train.loop import TrainConfig

    return TrainConfig(
        data=tuple(str(d) for d in args.data), steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        learning_rate=args.lr, warmup=args.warmup, seed=args.seed, checkpoint_every=args.checkpoint_every,
    )


def _describe(label: str, package) -> str:
    from jaxlic.models.complexity import macs_per_pixel, param_count

    c = package.config
    return (f"{label}: {c.arch} N={c.N} M={c.M}{' hidden=' + str(list(c.hidden)) if c.hidden else ''}, "
            f"{macs_per_pixel(c) / 1e3:.1f} kMAC/pixel, {param_count(package.params) / 1e6:.3f} M parameters")


def _distill(args: argparse.Namespace) -> int:
    from jaxlic.codec import load
    from jaxlic.train.distill import calibration_crops, distill_task
    from jaxlic.train.loop import Trainer

    teacher = load(args.teacher)
    config = _train_config(args)
    multiple = teacher.model.downsampling
    crop = max(multiple, args.crop - args.crop % multiple)
    calibration = calibration_crops(config.data, crop, args.calibration, args.seed)
    task = distill_task(teacher, args.width, calibration, args.latent_weight, args.output_weight, args.metric)
    student = Trainer(config, task, args.out).run()
    print(_describe("teacher", teacher))
    print(_describe("student", student))
    print(f"wrote {args.out / 'model.jxlm'}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from jaxlic.codec import load
    from jaxlic.errors import ConfigError
    from jaxlic.quant.prune import PruneSchedule, prune_task
    from jaxlic.train.loop import Trainer

    package = load(args.model)
    schedule = PruneSchedule.parse(args.kind, args.schedule)
    if schedule.steps[-1] >= args.steps:
        raise ConfigError(f"the last pruning step ({schedule.steps[-1]}) must come before --steps ({args.steps}) "
                          "so the pruned model is fine-tuned")
    pruned = Trainer(_train_config(args), prune_task(package, schedule, args.metric), args.out).run()
    print(_describe("original", package))
    print(_describe("pruned", pruned))
    print(f"wrote {args.out / 'model.jxlm'}")
    return 0
