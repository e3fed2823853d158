"""Evaluation commands: eval (a model package), bench-codecs, bdrate, plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.cli import model_spec

from jaxlic.eval.bdrate import METHODS, bd_psnr, bd_rate
from jaxlic.eval.codecs import DEFAULT_QUALITIES, sweep, usable_codecs
from jaxlic.eval.evaluate import NamedImage
from jaxlic.eval.plots import plot_rd
from jaxlic.eval.reference_curves import reference_curve, reference_names
from jaxlic.eval.results import Record, curve, load_results, make_record, save_results
from jaxlic.errors import ConfigError
from jaxlic.images import default_images, read_images

REFERENCE_PREFIX = "ref:"


def _load_images(folder: str | None) -> list[NamedImage]:
    if folder is None:
        return default_images()
    return read_images(folder, progress=True)


def _bench_codecs(args: argparse.Namespace) -> int:
    codecs = usable_codecs(args.codec or ["jpeg"])
    if not codecs:
        raise ConfigError("none of the requested codecs is available in this Pillow build")
    images = _load_images(args.data)
    source = args.data or "scikit-image default images"
    records = []
    for codec in codecs:
        evaluations = sweep(codec, images, args.quality)
        records.append(make_record(codec.upper(), f"{codec} via Pillow on {source} ({len(images)} images)", evaluations, args.quality))
        for quality, evaluation in zip(args.quality, evaluations):
            print(f"{codec} q={quality:3d}  bpp={evaluation.bpp:.4f}  PSNR={evaluation.psnr:.3f} dB  MS-SSIM={evaluation.ms_ssim:.4f}")
    save_results(args.out, records[0] if len(records) == 1 else records)
    print(f"wrote {args.out}")
    if args.plot:
        plot_rd(records, args.plot, metrics=("psnr-rgb", "ms-ssim-rgb"))
        print(f"wrote {args.plot}")
    return 0


def _records(specs: list[str]) -> list[Record]:
    """Records from results files, or reference curves named as ref:NAME."""
    records = []
    for spec in specs:
        if spec.startswith(REFERENCE_PREFIX):
            records.append(reference_curve(spec[len(REFERENCE_PREFIX) :]))
        else:
            records.extend(load_results(spec))
    return records


def _bdrate(args: argparse.Namespace) -> int:
    anchor, *tests = _records(args.curves)
    if not tests:
        raise ConfigError("give a test curve after the anchor (a second record or file)")
    anchor_curve = curve(anchor, args.metric)
    print(f"anchor: {anchor['name']}  metric: {args.metric}  method: {args.method}")
    for test in tests:
        test_curve = curve(test, args.metric)
        rate = bd_rate(*anchor_curve, *test_curve, method=args.method)
        delta = bd_psnr(*anchor_curve, *test_curve, method=args.method)
        print(f"{test['name']}: BD-rate {rate:+.2f}%  BD-{args.metric} {delta:+.4f}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    records = _records([spec for spec in args.curves if not spec.startswith(REFERENCE_PREFIX)])
    references = _records([spec for spec in args.curves if spec.startswith(REFERENCE_PREFIX)])
    plot_rd(records, args.out, metrics=args.metric or ["psnr-rgb"], references=references, title=args.title)
    print(f"wrote {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from tqdm import tqdm

    from jaxlic.pretrained import load_model
    from jaxlic.eval.evaluate import evaluate_model

    package = load_model(args.model)
    images = _load_images(args.data)
    with tqdm(total=len(images), desc="eval", unit="img") as bar:
        result = evaluate_model(package, images, on_image=lambda _: bar.update())
    record = make_record(args.name or package.config.arch, json.dumps(json.loads(package.config.to_json())), [result])
    record["per_image"] = [asdict(r) for r in result.images]
    if args.out:
        save_results(args.out, record)
    print(f"{len(images)} images: {result.bpp:.4f} bpp, {result.psnr:.3f} dB PSNR, MS-SSIM {result.ms_ssim:.4f}, "
          f"encode {result.mean('encode_time'):.3f} s, decode {result.mean('decode_time'):.3f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add eval, bench-codecs, bdrate and plot to the jaxlic command line."""
    curves_help = f"results JSON files (CompressAI format) or reference curves as {REFERENCE_PREFIX}NAME ({', '.join(reference_names())})"

    p = subparsers.add_parser("eval", help="bpp (real bytes), PSNR, MS-SSIM and times of a package on a folder")
    p.add_argument("--model", type=model_spec, required=True, help="model package (.jxlm) or NAME:QUALITY of a shipped model")
    p.add_argument("--data", type=Path, required=True, help="folder of evaluation images (e.g. Kodak)")
    p.add_argument("--out", type=Path, help="results JSON (CompressAI format, with per-image results)")
    p.add_argument("--name", default=None, help="curve name in the results")
    p.set_defaults(func=_eval)

    bench = subparsers.add_parser("bench-codecs", help="RD sweep of JPEG/WebP/AVIF (Pillow) on a folder of images")
    bench.add_argument("--data", help="folder of images (default: the built-in scikit-image photographs)")
    bench.add_argument("--codec", action="append", choices=["jpeg", "webp", "avif"], help="repeatable; default jpeg")
    bench.add_argument("--quality", type=int, nargs="+", default=list(DEFAULT_QUALITIES), help="default 5 10 ... 95")
    bench.add_argument("--out", type=Path, required=True, help="results JSON to write")
    bench.add_argument("--plot", type=Path, help="also write an RD plot (PNG)")
    bench.set_defaults(func=_bench_codecs)

    bdrate = subparsers.add_parser("bdrate", help="Bjontegaard delta rate/PSNR of each curve against the first")
    bdrate.add_argument("curves", nargs="+", help=f"anchor first; {curves_help}")
    bdrate.add_argument("--metric", default="psnr-rgb", choices=["psnr-rgb", "ms-ssim-rgb"])
    bdrate.add_argument("--method", default="pchip", choices=list(METHODS))
    bdrate.set_defaults(func=_bdrate)

    plot = subparsers.add_parser("plot", help="RD plot (PNG) of results files and reference curves (dashed)")
    plot.add_argument("curves", nargs="+", help=curves_help)
    plot.add_argument("--out", type=Path, required=True, help="PNG to write")
    plot.add_argument("--metric", action="append", choices=["psnr-rgb", "ms-ssim-rgb"], help="panel(s); default psnr-rgb")
    plot.add_argument("--title", default="Kodak")
    plot.set_defaults(func=_plot)
