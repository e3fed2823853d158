"""`jaxlic models`: the zoo with each configuration's size and complexity, or (`--shipped`) the
trained reference models that ship with jaxlic."""

from __future__ import annotations

import argparse
import dataclasses
import functools


def register(subparsers) -> None:
    from jaxlic.models import ARCHITECTURES

    p = subparsers.add_parser("models", help="list the model zoo: channels, lambda, parameters, kMAC/pixel")
    p.add_argument("--model", action="append", choices=list(ARCHITECTURES), help="repeatable; default all")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (scales N and M; default 1)")
    p.add_argument("--shipped", action="store_true",
                   help="list the trained models shipped with jaxlic (use them as --model NAME:QUALITY)")
    p.set_defaults(func=_models)


def _shipped() -> int:
    from jaxlic.pretrained import manifest, spec_of

    entries = manifest()
    print(f"{'--model':26s} {'kind':8s} {'what':36s} {'bytes':>10s} {'Kodak bpp':>9s} {'PSNR dB':>8s}")
    for e in entries:
        what = e.get("scenario") or f"{e['arch']} w{e['width']:g}{' integer' if e['integer'] else ''}"
        kodak = e.get("kodak")  # sandwiches: their figures are per JPEG quality, in docs/pretrained.md
        figures = f"{kodak['bpp']:9.4f} {kodak['psnr']:8.3f}" if kodak else f"{'-':>9s} {'-':>8s}"
        print(f"{spec_of(e):26s} {e['kind']:8s} {what:36s} {e['bytes']:10,d} {figures}")
    print(f"{len(entries)} shipped package(s), {sum(e['bytes'] for e in entries):,d} bytes; docs/pretrained.md has "
          "their RD curves against JPEG, WebP and AVIF")
    return 0


def _models(args: argparse.Namespace) -> int:
    if args.shipped:
        return _shipped()
    from jaxlic.models import ARCHITECTURES, model_config
    from jaxlic.models.complexity import model_complexity

    complexity = functools.cache(model_complexity)  # qualities share channel counts
    print(f"{'model':22s} {'q':>2s} {'N':>4s} {'M':>4s} {'lambda':>7s} {'params':>10s} "
          f"{'enc kMAC/px':>11s} {'dec kMAC/px':>11s} context")
    for name in args.model or ARCHITECTURES:
        for quality in range(1, 9):
            c = model_config(name, quality, args.width)
            info = complexity(dataclasses.replace(c, quality=1, lmbda=0.0))
            print(f"{name:22s} {quality:2d} {c.N:4d} {c.M:4d} {c.lmbda:7.4f} {info['params']:10,d} "
                  f"{info['encoder_macs'] / 1e3:11.1f} {info['decoder_macs'] / 1e3:11.1f} "
                  f"{'yes' if info['context_model'] else 'no'}")
    print("kMAC/pixel: multiply-accumulates of the networks per input pixel (entropy coding excluded); "
          "docs/architectures.md says what each side counts.")
    return 0
