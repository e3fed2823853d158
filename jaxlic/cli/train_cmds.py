"""`jaxlic train`: training runs, composed from the zoo, distillation, pruning, QAT and watermarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.cli import model_spec


TRAIN_FLAGS = {"learning_rate": "--lr"}  # TrainConfig fields whose flag is not --field-name
TRAIN_HELP = {
    "data": "training image folder (repeatable; never the evaluation set); default: built-in images",
    "batch_size": "global batch, split over every device of every host (each host loads its share)",
    "warmup": "linear warm-up steps",
    "decay": "after warm-up: cosine to 5%% of --lr, or constant",
    "clip_norm": "global gradient-norm clip",
}


def add_train_options(p: argparse.ArgumentParser, flags: dict[str, str] | None = None,
                      helps: dict[str, str] | None = None, **defaults) -> None:
    """One flag per `TrainConfig` field (--field-name, or TRAIN_FLAGS, or this command's `flags`),
    with the dataclass defaults unless `defaults` overrides them."""
    import dataclasses

    from jaxlic.train.loop import TrainConfig
    from jaxlic.train.step import DECAYS

    flags, helps = TRAIN_FLAGS | (flags or {}), TRAIN_HELP | (helps or {})
    for f in dataclasses.fields(TrainConfig):
        flag, default = flags.get(f.name, "--" + f.name.replace("_", "-")), defaults.get(f.name, f.default)
        if isinstance(default, tuple):
            p.add_argument(flag, dest=f.name, type=Path, action="append", default=[], help=helps.get(f.name))
        else:
            p.add_argument(flag, dest=f.name, type=type(default), default=default, help=helps.get(f.name),
                           choices=DECAYS if f.name == "decay" else None)


def train_config_from_args(args: argparse.Namespace, **overrides):
    """The `TrainConfig` of flags added by `add_train_options` (with `overrides`)."""
    import dataclasses

    from jaxlic.train.loop import TrainConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**values | {"data": tuple(str(d) for d in values["data"])} | overrides)


def register(subparsers) -> None:
    from jaxlic.cli.distill_cmds import add_distill_options
    from jaxlic.cli.watermark_cmds import add_watermark_options
    from jaxlic.models import ARCHITECTURES

    p = subparsers.add_parser("train", help="train a zoo model into a package (resumes if --out has a run); "
                                            "--distill, --prune, --qat and --watermark compose in one run")
    p.add_argument("--model", default=None, choices=list(ARCHITECTURES), help="default: bmshj2018-factorized")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--width", type=float, default=None,
                   help="scales N and M together (default 1.0); with --distill, the student's width")
    p.add_argument("--gdn", default=None, choices=["gdn", "simplified"], help="default: gdn")
    p.add_argument("--init", type=model_spec, default=None,
                   help="start from this package's parameters and architecture (e.g. a fine-tune to another "
                        "quality); with --distill, the teacher")
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"])
    p.add_argument("--lambda", dest="lmbda", type=float, default=None, help="default: the zoo's lambda")
    add_train_options(p)
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics.jsonl, model.jxlm)")
    p.add_argument("--distributed", action="store_true",
                   help="join a multi-host run found by JAX's cluster detection (SLURM, Open MPI, ...); "
                        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID join one without it")
    p.add_argument("--distill", action="store_true", help="distill the --init package (the teacher) into a "
                                                          "--width student in this run")
    add_distill_options(p)
    p.add_argument("--prune", default=None, metavar="KIND:STEP:FRACTION,...",
                   help="prune in this run, e.g. channel:100:0.25,300:0.5 (KIND channel or magnitude; cumulative "
                        "fractions after those steps); the package is shrunk")
    p.add_argument("--qat", action="store_true", help="fake-quantize the decoder in this run and write an "
                                                      "integer-mode package (what `jaxlic quantize` writes)")
    p.add_argument("--calibration-batches", type=int, default=4, help="batches that calibrate --qat's ranges")
    p.add_argument("--recalibrate", default=None, metavar="STEP,...",
                   help="train the decoder in float until the first STEP, then fake-quantize it with ranges re-measured "
                        "after each STEP; default when the model starts untrained (--distill, or no --init): half of "
                        "--steps and each later --prune cut; 'none': QAT from the start with the initial ranges")
    p.add_argument("--watermark", type=Path, default=None, metavar="KEY",
                   help="embed this watermark key's owner code and --user-id in this run (needs --qat)")
    add_watermark_options(p)
    p.set_defaults(func=_train)



def _train_model(args: argparse.Namespace):
    """(model config, initial params or None, teacher or None): from the zoo, from --init's
    package, or (--distill) a --width student of --init's package."""
    import dataclasses

    from jaxlic.errors import ConfigError
    from jaxlic.models import model_config

    if args.init is None:
        if args.distill:
            raise ConfigError("--distill needs the teacher package as --init")
        model = model_config(args.model or "bmshj2018-factorized", args.quality,
                             1.0 if args.width is None else args.width, args.gdn or "gdn")
        params, teacher = None, None
    else:
        from jaxlic.pretrained import load_model
        from jaxlic.train.distill import student_config

        package = load_model(args.init)
        base = package.config
        given = {"--model": (args.model, base.arch), "--gdn": (args.gdn, base.gdn)}
        given |= {} if args.distill else {"--width": (args.width, base.width)}
        clashes = [f"{flag} {mine} (the package has {theirs})" for flag, (mine, theirs) in given.items()
                   if mine is not None and mine != theirs]
        if clashes:
            raise ConfigError(f"--init {args.init} fixes the architecture; drop " + ", ".join(clashes))
        if args.distill and args.width is None:
            raise ConfigError("--distill needs the student's --width")
        if args.distill:
            model, params, teacher = student_config(base, args.width), None, package
        else:
            zoo_lambda = model_config(base.arch, args.quality).lmbda
            model, params, teacher = dataclasses.replace(base, quality=args.quality, lmbda=zoo_lambda), package.params, None
    if args.lmbda is not None:
        model = dataclasses.replace(model, lmbda=args.lmbda)
    return model, params, teacher


def _composed_task(args: argparse.Namespace, config, model, params, teacher):
    """The task of a run with --distill, --prune, --qat or --watermark (else None)."""
    if not (args.distill or args.prune or args.qat or args.watermark):
        return None
    from jaxlic.models import build_model, init_params
    from jaxlic.quant.prune import PruneSchedule
    from jaxlic.secure.watermark import WatermarkKey, WatermarkTerm
    from jaxlic.quant.lowering import calibrate
    from jaxlic.train.compose import Parts, Recalibration, check_schedule, compose_task, qat_batches
    from jaxlic.train.distill import distillation_term, teacher_crops

    untrained = params is None
    params = init_params(build_model(model), config.seed) if untrained else params
    distill = schedule = watermark = calibration = recalibrate = None
    if teacher is not None:
        crops = teacher_crops(teacher, config.data, config.crop, args.calibration, config.seed)
        distill = distillation_term(teacher, model, crops, args.latent_weight, args.output_weight)
    if args.prune:
        kind, _, steps = args.prune.partition(":")
        schedule = PruneSchedule.parse(kind, steps)
        check_schedule(schedule, config.steps)
    if args.watermark:
        key = WatermarkKey.load(args.watermark)
        key.message(args.user_id)  # a user id the key cannot carry fails before training
        watermark = WatermarkTerm(key, args.user_id, args.strength)
    if args.qat:
        batches = qat_batches(config, args.calibration_batches)
        calibration = calibrate(model, params, batches)
        steps = _recalibration(args.recalibrate, config.steps, schedule, untrained)
        recalibrate = Recalibration(steps, tuple(batches)) if steps else None
    return compose_task(model, params, Parts(distill, schedule, calibration, watermark, recalibrate), args.metric)


def _recalibration(flag: str | None, steps: int, schedule, untrained: bool) -> tuple[int, ...]:
    """The steps of --recalibrate (or its default)."""
    from jaxlic.errors import ConfigError
    from jaxlic.train.compose import recalibration_steps

    if flag is None:
        return recalibration_steps(steps, schedule) if untrained else ()
    if flag == "none":
        return ()
    try:
        chosen = tuple(int(s) for s in flag.split(","))
    except ValueError:
        raise ConfigError(f"--recalibrate takes STEP,... or 'none', got {flag!r}") from None
    if chosen[-1] >= steps:
        raise ConfigError(f"--recalibrate steps must come before --steps ({steps}) so the quantized decoder trains")
    return chosen


def _train(args: argparse.Namespace) -> int:
    from jaxlic.errors import ConfigError
    from jaxlic.train.loop import Trainer
    from jaxlic.train.parallel import initialize_distributed, is_primary
    from jaxlic.train.task import codec_task

    initialize_distributed(auto_detect=args.distributed)  # before anything runs on a device

    config = train_config_from_args(args)
    if args.recalibrate is not None and not args.qat:
        raise ConfigError("--recalibrate re-measures QAT's ranges: it needs --qat")
    model, initial, teacher = _train_model(args)
    task = _composed_task(args, config, model, initial, teacher) or codec_task(model, args.metric, initial_params=initial)
    Trainer(config, task, args.out).run()
    if is_primary():
        print(f"wrote {args.out / 'model.jxlm'}")
        if args.watermark:
            from jaxlic.cli.watermark_cmds import report
            from jaxlic.secure.watermark import WatermarkKey

            report(args.out / "model.jxlm", WatermarkKey.load(args.watermark), args.user_id)
    return 0
