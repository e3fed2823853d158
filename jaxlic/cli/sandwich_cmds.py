"""`jaxlic sandwich train | encode | decode`: neural pre/post-processors around a real JPEG."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.cli import model_spec

DEFAULT_CROPS = {"gray": 64, "half-res": 128, "high-bit-depth": 128, "rgb": 64}


def register(subparsers) -> None:
    from jaxlic.sandwich.scenarios import SCENARIOS

    group = subparsers.add_parser("sandwich", help="sandwiched compression: neural pre/post-processing around JPEG")
    commands = group.add_subparsers(dest="sandwich_command", required=True, metavar="SUBCOMMAND")

    p = commands.add_parser("train", help="train pre/post networks for a scenario (resumes if --out has a run)")
    p.add_argument("--scenario", required=True, choices=list(SCENARIOS))
    p.add_argument("--data", type=Path, action="append", default=[], help="image folder (repeatable); default: built-in images")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=None, help="default: 64, or 128 for half-res and high-bit-depth")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--lambda", dest="lmbda", type=float, default=None, help="RD trade-off at quality 50")
    p.add_argument("--code-channels", type=int, choices=[1, 3], default=None, help="default: the scenario's")
    p.add_argument("--subsampling", choices=["4:2:0", "4:4:4"], default=None, help="default: the scenario's")
    p.add_argument("--qualities", type=int, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="JPEG qualities drawn per training image (default: the scenario's)")
    p.add_argument("--learn-tables", action="store_true", help="train the quantization tables too (written into the files)")
    p.add_argument("--features", type=int, nargs="+", default=None, help="U-Net channels per level (default 16 32 64)")
    p.add_argument("--pre-gain", type=float, default=None,
                   help="scale of the pre-net's residual, 0..1 (default 1): its effective learning rate; "
                        "0 keeps the plain code image (post-net only)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics.jsonl, sandwich.jxls)")
    p.set_defaults(func=_train)

    p = commands.add_parser("encode", help="write a real .jpg (the neural code image) of an image")
    p.add_argument("--model", type=model_spec, required=True, help="sandwich package (.jxls) or NAME of a shipped sandwich")
    p.add_argument("--quality", type=int, default=50, help="JPEG quality 1..100 (the rate knob)")
    p.add_argument("input", type=Path, help="image file (8 or 16 bits; 16-bit RGB PNG or TIFF for high-bit-depth)")
    p.add_argument("output", type=Path, help="the .jpg to write")
    p.set_defaults(func=_encode)

    p = commands.add_parser("decode", help="reconstruct the image from a sandwich .jpg")
    p.add_argument("--model", type=model_spec, required=True, help="sandwich package (.jxls) or NAME of a shipped sandwich")
    p.add_argument("--bits", type=int, choices=[8, 16], default=None,
                   help="output bit depth (default: 16 for high-bit-depth models, else 8); 16 writes PNG")
    p.add_argument("input", type=Path, help="a .jpg written by `jaxlic sandwich encode`")
    p.add_argument("output", type=Path, help="image file to write (PNG recommended)")
    p.set_defaults(func=_decode)


def _train(args: argparse.Namespace) -> int:
    from jaxlic.sandwich.model import sandwich_config
    from jaxlic.sandwich.task import sandwich_task
    from jaxlic.train.loop import TrainConfig, Trainer

    config = sandwich_config(
        args.scenario, lmbda=args.lmbda, code_channels=args.code_channels, subsampling=args.subsampling,
        qualities=tuple(args.qualities) if args.qualities else None, learn_tables=args.learn_tables or None,
        features=tuple(args.features) if args.features else None, pre_gain=args.pre_gain,
    )
    train = TrainConfig(
        data=tuple(str(d) for d in args.data), steps=args.steps, batch_size=args.batch_size,
        crop=args.crop or DEFAULT_CROPS[args.scenario], learning_rate=args.lr, warmup=args.warmup, seed=args.seed,
        checkpoint_every=args.checkpoint_every, log_every=20,
    )
    Trainer(train, sandwich_task(config), args.out).run()
    print(f"wrote {args.out / 'sandwich.jxls'}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from jaxlic.images import atomic_path
    from jaxlic.sandwich.io import read_input
    from jaxlic.sandwich.model import load_package

    package = load_package(args.model)
    data = package.encode(read_input(args.input, package.sandwich.scenario.high_bit_depth), args.quality)
    with atomic_path(args.output) as tmp:
        tmp.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes, a standard JPEG; post-net strength "
          f"{package.post_strength(data):.4g}, chosen on this image)")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from jaxlic.sandwich.io import write_output
    from jaxlic.sandwich.model import load_package

    package = load_package(args.model)
    try:
        data = args.input.read_bytes()
    except OSError as exc:
        from jaxlic.errors import BitstreamError

        raise BitstreamError(f"{args.input}: cannot read ({exc})") from exc
    bits = args.bits or (16 if package.sandwich.scenario.high_bit_depth else 8)
    write_output(args.output, package.decode(data), bits)
    print(f"wrote {args.output} ({bits}-bit)")
    return 0
