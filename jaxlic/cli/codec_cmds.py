"""`jaxlic compress | decompress | info`: the codec from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from jaxlic.cli import add_force_option, check_paths, model_spec
from jaxlic.images import MAX_PIXELS

BITSTREAM_SUFFIX = ".jxlc"


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="encode images (files or a folder) into bitstreams")
    p.add_argument("input", type=Path, help="an image file or a folder of images")
    p.add_argument("output", type=Path, help="bitstream file, or folder when the input is a folder")
    p.add_argument("--model", required=True, type=model_spec, help="model package (.jxlm) or NAME:QUALITY of a shipped model")
    _add_codec_options(p)
    p.set_defaults(func=_compress)

    p = subparsers.add_parser("decompress", help="decode bitstreams into PNG images")
    p.add_argument("input", type=Path, help="a bitstream or a folder of bitstreams")
    p.add_argument("output", type=Path, help="image file, or folder when the input is a folder")
    p.add_argument("--model", required=True, type=model_spec, help="model package that encoded them")
    _add_codec_options(p)
    p.set_defaults(func=_decompress)

    p = subparsers.add_parser("info", help="what a bitstream or model package holds")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_info)


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
    check_paths([args.model, *inputs], [out for _, out in pairs], args.force)
    return pairs


def _compress(args: argparse.Namespace) -> int:
    from jaxlic.codec import Bitstream, compress
    from jaxlic.pretrained import load_model
    from jaxlic.images import atomic_path, list_images

    inputs = list_images(args.input) if args.input.is_dir() else [args.input]
    pairs = _pairs(args, inputs, BITSTREAM_SUFFIX)
    package = load_model(args.model)
    total_bytes = total_pixels = 0
    for source, target in tqdm(pairs, desc="compress", unit="img", disable=len(inputs) < 2):
        data = compress(package, source, args.max_pixels)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        header = Bitstream.from_bytes(data)
        total_bytes += len(data)
        total_pixels += header.height * header.width
    print(f"{len(inputs)} image(s), {total_bytes} bytes, {8 * total_bytes / total_pixels:.4f} bpp")
    return 0


def _decompress(args: argparse.Namespace) -> int:
    from jaxlic.codec import decompress
    from jaxlic.pretrained import load_model
    from jaxlic.errors import DataError
    from jaxlic.images import write_image

    inputs = sorted(args.input.rglob(f"*{BITSTREAM_SUFFIX}")) if args.input.is_dir() else [args.input]
    if not inputs:
        raise DataError(f"{args.input}: no {BITSTREAM_SUFFIX} bitstreams in this folder or its sub-folders")
    pairs = _pairs(args, inputs, ".png")
    package = load_model(args.model)
    for source, target in tqdm(pairs, desc="decompress", unit="img", disable=len(inputs) < 2):
        write_image(target, decompress(package, source.read_bytes(), max_pixels=args.max_pixels))
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
