"""`jaxlic asym`: AsymLLIC's staged decoder substitution (jaxlic/train/asym.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.cli import model_spec
from jaxlic.cli.train_cmds import add_train_options, train_config_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("asym", help="replace g_s blocks one stage at a time by lighter ones, each stage "
                                           "distilled from the previous (encoder kept); or --scratch, the baseline")
    p.add_argument("--init", type=model_spec, required=True,
                   help="package (.jxlm) or NAME:QUALITY of a shipped bmshj2018/mbt2018 model to start from")
    p.add_argument("--stage", action="append", required=True, metavar="BLOCK=KIND[:CHANNELS]",
                   help="one stage, in order (repeat): g_s block 0-2 -> igdn, sgdn, relu or res (3x3 + residual "
                        "1x1 unit), block 3 -> deconv5 or deconv3; CHANNELS narrows blocks 0-2, e.g. 2=res:24")
    p.add_argument("--encoder-lr-scale", type=float, default=0.0,
                   help="learning rate of everything outside g_s as a fraction of --lr (0: frozen, the default)")
    p.add_argument("--output-weight", type=float, default=1.0, help="weight of matching the previous stage's image")
    p.add_argument("--latent-weight", type=float, default=0.0,
                   help="weight of matching the previous stage's latents (only matters with --encoder-lr-scale > 0)")
    p.add_argument("--scratch", action="store_true",
                   help="the baseline: train the final light g_s from a fresh init for --steps x stages, RD only")
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"])
    add_train_options(p, steps=400, learning_rate=3e-4, helps={"steps": "steps per stage"})
    p.add_argument("--out", type=Path, required=True,
                   help="run directory: stage1..K/ (each a run with its model.jxlm) and the last stage's model.jxlm")
    p.set_defaults(func=_asym)


def _asym(args: argparse.Namespace) -> int:
    from jaxlic.pretrained import load_model
    from jaxlic.train.asym import Substitution, decoder_complexity, run_scratch, run_stages

    subs = [Substitution.parse(s) for s in args.stage]
    package = load_model(args.init)
    config = train_config_from_args(args)
    if args.scratch:
        packages = [run_scratch(package, subs, config, args.out, args.encoder_lr_scale, args.metric)]
    else:
        packages = run_stages(package, subs, config, args.out, args.output_weight, args.latent_weight,
                              args.encoder_lr_scale, args.metric)
    for label, p in [("start", package), *zip(["final"] if args.scratch else args.stage, packages)]:
        c = decoder_complexity(p)
        print(f"{label}: g_s {' '.join(c['blocks'])} channels {c['g_s_channels']}, decoder "
              f"{c['decoder_kmacs']:.2f} kMAC/pixel, {c['decoder_params']:,} parameters")
    print(f"wrote {args.out / 'model.jxlm'}")
    return 0
