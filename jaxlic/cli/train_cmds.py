"""`jaxlic train | eval | demo`: training runs, Kodak-style evaluation, the end-to-end demo."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from jaxlic.models import ARCHITECTURES
    from jaxlic.train.step import DECAYS

    p = subparsers.add_parser("train", help="train a zoo model into a package (resumes if --out has a run)")
    p.add_argument("--model", default=None, choices=list(ARCHITECTURES), help="default: bmshj2018-factorized")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--width", type=float, default=None, help="scales N and M together (default 1.0)")
    p.add_argument("--gdn", default=None, choices=["gdn", "simplified"], help="default: gdn")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this package's parameters and architecture (e.g. a fine-tune to another quality)")
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"])
    p.add_argument("--lambda", dest="lmbda", type=float, default=None, help="default: the zoo's lambda")
    p.add_argument("--data", type=Path, action="append", default=[], help="image folder (repeatable); default: built-in images")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8,
                   help="global batch, split over every device of every host (each host loads its share)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--decay", default="cosine", choices=DECAYS, help="after warm-up: cosine to 5%% of --lr, or constant")
    p.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics.jsonl, model.jxlm)")
    p.add_argument("--distributed", action="store_true",
                   help="join a multi-host run found by JAX's cluster detection (SLURM, Open MPI, ...); "
                        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID join one without it")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("eval", help="bpp (real bytes), PSNR, MS-SSIM and times of a package on a folder")
    p.add_argument("--model", type=Path, required=True, help="model package (.jxlm)")
    p.add_argument("--data", type=Path, required=True, help="folder of evaluation images (e.g. Kodak)")
    p.add_argument("--out", type=Path, help="results JSON (CompressAI format, with per-image results)")
    p.add_argument("--name", default=None, help="curve name in the results")
    p.set_defaults(func=_eval)

    p = subparsers.add_parser("demo", help="train a small model, compare with JPEG, plot (the README's main job)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.set_defaults(func=_demo)


def _train_model(args: argparse.Namespace):
    """(model config, initial params or None): from the zoo, or from --init's package."""
    import dataclasses

    from jaxlic.errors import ConfigError
    from jaxlic.models import model_config

    if args.init is None:
        model = model_config(args.model or "bmshj2018-factorized", args.quality,
                             1.0 if args.width is None else args.width, args.gdn or "gdn")
        params = None
    else:
        from jaxlic.codec import load

        package = load(args.init)
        base = package.config
        given = {"--model": (args.model, base.arch), "--width": (args.width, base.width), "--gdn": (args.gdn, base.gdn)}
        clashes = [f"{flag} {mine} (the package has {theirs})" for flag, (mine, theirs) in given.items()
                   if mine is not None and mine != theirs]
        if clashes:
            raise ConfigError(f"--init {args.init} fixes the architecture; drop " + ", ".join(clashes))
        zoo_lambda = model_config(base.arch, args.quality).lmbda
        model, params = dataclasses.replace(base, quality=args.quality, lmbda=zoo_lambda), package.params
    if args.lmbda is not None:
        model = dataclasses.replace(model, lmbda=args.lmbda)
    return model, params


def _train(args: argparse.Namespace) -> int:
    from jaxlic.train.loop import TrainConfig, Trainer
    from jaxlic.train.parallel import initialize_distributed, is_primary
    from jaxlic.train.task import codec_task

    initialize_distributed(auto_detect=args.distributed)  # before anything runs on a device

    config = TrainConfig(
        data=tuple(str(d) for d in args.data), steps=args.steps, batch_size=args.batch_size,
        crop=args.crop, learning_rate=args.lr, warmup=args.warmup, decay=args.decay,
        clip_norm=args.clip_norm, seed=args.seed, checkpoint_every=args.checkpoint_every,
    )
    model, initial = _train_model(args)
    Trainer(config, codec_task(model, args.metric, initial_params=initial), args.out).run()
    if is_primary():
        print(f"wrote {args.out / 'model.jxlm'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from tqdm import tqdm

    from jaxlic.codec import load
    from jaxlic.eval.evaluate import evaluate_model
    from jaxlic.eval.results import make_record, save_results
    from jaxlic.images import read_images

    package = load(args.model)
    images = read_images(args.data)
    with tqdm(total=len(images), desc="eval", unit="img") as bar:
        result = evaluate_model(package, images, on_image=lambda _: bar.update())
    record = make_record(args.name or package.config.arch, json.dumps(json.loads(package.config.to_json())), [result])
    record["per_image"] = [asdict(r) for r in result.images]
    if args.out:
        save_results(args.out, record)
    print(f"{len(images)} images: {result.bpp:.4f} bpp, {result.psnr:.3f} dB PSNR, MS-SSIM {result.ms_ssim:.4f}, "
          f"encode {result.mean('encode_time'):.3f} s, decode {result.mean('decode_time'):.3f} s")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from jaxlic.demo import run_demo

    run_demo(args.out, args.steps)
    return 0
