"""`jaxlic compress | decompress | info`: the codec from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from jaxlic.cli import add_force_option, check_paths, model_spec
from jaxlic.images import MAX_PIXELS

BITSTREAM_SUFFIX = ".jxlc"
LADDER_FLAGS = {"budget_kmac": "--budget-kmac", "mean_budget": "--mean-budget", "budget_fps": "--budget-fps",
                "board": "--board", "lmbda": "--lambda", "bpp": "--bpp"}


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="encode images (files or a folder) into bitstreams")
    p.add_argument("input", type=Path, help="an image file or a folder of images")
    p.add_argument("output", type=Path, help="bitstream file, or folder when the input is a folder")
    _add_model_options(p, "model package (.jxlm) or NAME:QUALITY of a shipped model")
    ladder = p.add_argument_group("complexity-aware encoding (with --ladder; jaxlic.codec.ladder)")
    ladder.add_argument("--budget-kmac", type=float, metavar="K", help="decoder kMAC/pixel per image")
    ladder.add_argument("--mean-budget", action="store_true",
                        help="--budget-kmac bounds the pixel-weighted mean over the images instead of each image")
    ladder.add_argument("--budget-fps", type=float, metavar="FPS", help="decode rate per image on --board (VTA layers' cycle model)")
    ladder.add_argument("--board", help="VTA config name (vta_configs/) or JSON path for --budget-fps")
    target = ladder.add_mutually_exclusive_group()
    target.add_argument("--lambda", dest="lmbda", type=float, metavar="L",
                        help="per image the least bpp + lambda * MSE (0..255 pixels; the zoo's lambdas, e.g. 0.0067)")
    target.add_argument("--bpp", type=float, help="target mean bpp of the images: the highest mean PSNR that meets it")
    _add_codec_options(p)
    p.set_defaults(func=_compress)

    p = subparsers.add_parser("decompress", help="decode bitstreams into PNG images")
    p.add_argument("input", type=Path, help="a bitstream or a folder of bitstreams")
    p.add_argument("output", type=Path, help="image file, or folder when the input is a folder")
    _add_model_options(p, "model package that encoded them")
    _add_codec_options(p)
    p.set_defaults(func=_decompress)

    p = subparsers.add_parser("info", help="what a bitstream or model package holds")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_info)


def _add_model_options(parser, help_model: str) -> None:
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--model", type=model_spec, help=help_model)
    models.add_argument("--ladder", nargs="+", type=model_spec, metavar="PKG",
                        help="several packages: compress picks one per image, decompress the one that made each stream")


def _add_codec_options(parser) -> None:
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"refuse larger images (default {MAX_PIXELS:,}; memory grows with pixels)")
    add_force_option(parser)


def _pairs(args, inputs: list[Path], suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) files, checked to be safe to write before any work starts."""
    source, target = args.input, args.output
    if source.is_dir():
        pairs = [(f, target / f.relative_to(source).with_suffix(suffix)) for f in inputs]
    else:
        pairs = [(source, target)]
    check_paths([*(args.ladder or [args.model]), *inputs], [out for _, out in pairs], args.force)
    return pairs


def _compress(args: argparse.Namespace) -> int:
    from jaxlic.codec import Bitstream, compress
    from jaxlic.pretrained import load_model
    from jaxlic.images import atomic_path, list_images

    inputs = list_images(args.input) if args.input.is_dir() else [args.input]
    budget = _ladder_budget(args)
    pairs = _pairs(args, inputs, BITSTREAM_SUFFIX)
    if args.ladder:
        streams = _ladder_streams(args, budget, pairs)
    else:
        package = load_model(args.model)
        streams = (compress(package, source, args.max_pixels) for source, _ in pairs)
    total_bytes = total_pixels = 0
    for (source, target), data in tqdm(zip(pairs, streams), total=len(pairs), desc="compress", unit="img",
                                       disable=len(inputs) < 2 or bool(args.ladder)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        header = Bitstream.from_bytes(data)
        total_bytes += len(data)
        total_pixels += header.height * header.width
    print(f"{len(inputs)} image(s), {total_bytes} bytes, {8 * total_bytes / total_pixels:.4f} bpp")
    return 0


def _ladder_budget(args: argparse.Namespace):
    """The --ladder options as a Budget, after checking they come with --ladder and a target."""
    from jaxlic.codec.ladder import Budget
    from jaxlic.errors import ConfigError

    given = [flag for key, flag in LADDER_FLAGS.items() if getattr(args, key) not in (None, False)]
    if not args.ladder:
        if given:
            raise ConfigError(f"{', '.join(given)}: options of --ladder; give --ladder PKG [PKG ...] instead of --model")
        return None
    if args.lmbda is None and args.bpp is None:
        raise ConfigError("--ladder needs a target: --lambda (e.g. 0.0067, quality 3's) or --bpp")
    return Budget(args.budget_kmac, args.budget_fps, args.board, args.mean_budget)


def _ladder_streams(args: argparse.Namespace, budget, pairs: list[tuple[Path, Path]]) -> list[bytes]:
    """Every image coded with every package the budget allows, then one stream per image chosen."""
    from jaxlic.codec.ladder import build_ladder, choose, code_all
    from jaxlic.pretrained import load_model

    rungs = build_ladder((str(spec), load_model(spec)) for spec in args.ladder)
    coded = code_all(rungs, [(str(source), source) for source, _ in pairs], budget, args.max_pixels)
    choice = choose(coded, rungs, budget, args.lmbda, args.bpp)
    for r, rung in enumerate(rungs):
        print(f"{rung.name}: {rung.kmac:.2f} kMAC/pixel, {int((choice.rungs == r).sum())} image(s)")
    print(f"mean decoder {choice.kmac:.2f} kMAC/pixel ({budget})")
    return [coded.data[i][r] for i, r in enumerate(choice.rungs)]


def _decompress(args: argparse.Namespace) -> int:
    from jaxlic.codec import decompress
    from jaxlic.codec.ladder import package_for
    from jaxlic.pretrained import load_model
    from jaxlic.errors import DataError
    from jaxlic.images import write_image

    inputs = sorted(args.input.rglob(f"*{BITSTREAM_SUFFIX}")) if args.input.is_dir() else [args.input]
    if not inputs:
        raise DataError(f"{args.input}: no {BITSTREAM_SUFFIX} bitstreams in this folder or its sub-folders")
    pairs = _pairs(args, inputs, ".png")
    packages = [(str(spec), load_model(spec)) for spec in args.ladder or [args.model]]
    for source, target in tqdm(pairs, desc="decompress", unit="img", disable=len(inputs) < 2):
        data = source.read_bytes()
        package = package_for(packages, data)[1] if args.ladder else packages[0][1]
        write_image(target, decompress(package, data, max_pixels=args.max_pixels))
    print(f"{len(inputs)} image(s) decoded")
    return 0


def _info(args: argparse.Namespace) -> int:
    from jaxlic.codec import Bitstream, ModelPackage
    from jaxlic.codec.bitstream import MAGIC as STREAM_MAGIC
    from jaxlic.errors import JaxlicError

    data = args.file.read_bytes()
    if data.startswith(STREAM_MAGIC):
        stream = Bitstream.from_bytes(data)
        info = {"kind": "bitstream", "model_fingerprint": stream.fingerprint.hex(),
                "height": stream.height, "width": stream.width, "bytes": len(data),
                "bpp": 8 * len(data) / (stream.height * stream.width),
                "stream_bytes": [len(s) for s in stream.streams]}
    else:
        try:
            package = ModelPackage.from_bytes(data, str(args.file))
        except JaxlicError:
            raise JaxlicError(f"{args.file} is neither a jaxlic bitstream nor a model package") from None
        info = {"kind": "model package", "fingerprint": package.fingerprint.hex(),
                "config": json.loads(package.config.to_json()), "bytes": len(data),
                "tables": {k: list(t.freqs.shape) for k, t in package.tables.items()}}
    print(json.dumps(info, indent=2))
    return 0
