"""Rate and time of a context-model package (elic2022, lalic) on real images: payload of the
coded streams vs the model's own estimate (-log2 of its forward pass likelihoods, rounding mode),
mean estimated and real bpp, exact round trips, and CPU encode/decode time per image (the first
image includes the per-shape compiles; reported apart). Integer context networks (ELIC) are also
checked to decode the same latents on the NumPy backend.

    python experiments/context_rate.py --model runs/ctx/elic_w025q3/model.jxlm --images ../shared/data/kodak
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxlic.codec import Bitstream, compress, decode_latents, decompress, load
from jaxlic.codec.api import _to_model_input
from jaxlic.images import read_image


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--count", type=int, default=None, help="the first COUNT images (default: all)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    package = load(args.model)
    integer = getattr(package.model, "integer_context", True)  # LALIC's run in float: "jax" only
    multiple = package.model.downsampling
    rows = []
    for path in sorted(args.images.glob("*.png"))[: args.count]:
        pixels = read_image(path)
        t0 = time.perf_counter()
        data = compress(package, pixels)
        t1 = time.perf_counter()
        image = decompress(package, data)
        t2 = time.perf_counter()
        numpy_latents = decode_latents(package, data, "numpy") if integer else None
        t3 = time.perf_counter()
        latents = decode_latents(package, data)
        if integer:
            assert np.array_equal(latents.y_symbols, numpy_latents.y_symbols)
            assert np.array_equal(latents.means, numpy_latents.means)
        y = np.asarray(package.transforms.analysis(_to_model_input(pixels, multiple)))
        exact = bool(np.array_equal(latents.y_symbols, np.round(y.astype(np.float64) - latents.means)))
        same_image = bool(np.array_equal(image, decompress(package, data)))
        out = package.model.apply({"params": package.params}, jnp.asarray(_to_model_input(pixels, multiple)), "round")
        estimate = {k: float(-jnp.log2(v).sum()) / 8 for k, v in out["likelihoods"].items()}
        streams = Bitstream.from_bytes(data).streams
        pixels_count = pixels.shape[0] * pixels.shape[1]
        mse = np.mean((image.astype(np.float64) - pixels) ** 2)
        row = {"image": path.stem, "bytes": len(data), "payload": sum(map(len, streams)),
               "z_bytes": len(streams[0]), "y_bytes": len(streams[1]),
               "estimate_z": estimate["z"], "estimate_y": estimate["y"],
               "overhead_pct": 100 * (sum(map(len, streams)) / sum(estimate.values()) - 1),
               "y_overhead_pct": 100 * (len(streams[1]) / estimate["y"] - 1),
               "estimate_bpp": 8 * sum(estimate.values()) / pixels_count,
               "payload_bpp": 8 * sum(map(len, streams)) / pixels_count,
               "bpp": 8 * len(data) / pixels_count, "psnr": 10 * np.log10(255**2 / mse),
               "symbols_exact": exact, "decode_repeats_exactly": same_image,
               "encode_s": t1 - t0, "decode_s": t2 - t1, "decode_latents_numpy_s": t3 - t2 if integer else None}
        rows.append(row)
        print(json.dumps(row))
    later = rows[1:] or rows
    summary = {"images": len(rows), "arch": package.config.arch, "width": package.config.width,
               "N": package.config.N, "M": package.config.M,
               "estimate_bpp": float(np.mean([r["estimate_bpp"] for r in rows])),
               "payload_bpp": float(np.mean([r["payload_bpp"] for r in rows])),
               "bpp": float(np.mean([r["bpp"] for r in rows])),
               "psnr": float(np.mean([r["psnr"] for r in rows])),
               "exact_round_trips": sum(r["symbols_exact"] and r["decode_repeats_exactly"] for r in rows),
               "overhead_pct": 100 * (sum(r["payload"] for r in rows)
                                      / sum(r["estimate_y"] + r["estimate_z"] for r in rows) - 1),
               "worst_overhead_pct": max(r["overhead_pct"] for r in rows),
               "encode_s_after_first": float(np.mean([r["encode_s"] for r in later])),
               "decode_s_after_first": float(np.mean([r["decode_s"] for r in later])),
               "decode_latents_numpy_s":
                   float(np.mean([r["decode_latents_numpy_s"] for r in later])) if integer else None,
               "first_encode_s": rows[0]["encode_s"], "first_decode_s": rows[0]["decode_s"]}
    print(json.dumps(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
