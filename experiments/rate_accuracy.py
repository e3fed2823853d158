"""Real bytes vs the model's estimated bits on Kodak (the codec core's rate acceptance).

    .venv/bin/python experiments/rate_accuracy.py --model runs/demo/run/model.jxlm [--kodak DIR]
        [--scale-levels 256]   # hyperprior models: rebuild the Gaussian tables with that many scales

For each image: payload bytes of the real bitstream (streams only), the fixed header bytes, and
the model's estimate -sum(log2 likelihoods)/8 from a forward pass with rounding on the same
padded input; prints per-image and total relative differences.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jaxlic  # noqa: F401  (sets XLA flags before jax starts)
import jax.numpy as jnp

from jaxlic.codec import Bitstream, build_tables, compress, load
from jaxlic.codec.api import _to_model_input
from jaxlic.images import list_images, read_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--out", type=Path, default=Path("out/experiments/rate_accuracy.json"))
    parser.add_argument("--scale-levels", type=int, help="rebuild the scale table with this many scales")
    args = parser.parse_args()
    package = load(args.model)
    if args.scale_levels:
        package = build_tables(package.config, package.params, quantiles="keep", scale_levels=args.scale_levels)
    rows = []
    for path in list_images(args.kodak):
        pixels = read_image(path)
        data = compress(package, pixels)
        payload = sum(len(s) for s in Bitstream.from_bytes(data).streams)
        x = jnp.asarray(_to_model_input(pixels, package.model.downsampling))
        out = package.model.apply({"params": package.params}, x, "round")
        estimate = sum(float(-jnp.log2(v).sum()) for v in out["likelihoods"].values()) / 8
        rows.append({"image": path.name, "payload_bytes": payload, "header_bytes": len(data) - payload,
                     "estimated_bytes": estimate, "relative": payload / estimate - 1})
        print(f"{path.name}: {payload} B payload (+{len(data) - payload} B header), "
              f"estimate {estimate:.1f} B, {100 * rows[-1]['relative']:+.3f}%")
    total_payload = sum(r["payload_bytes"] for r in rows)
    total_estimate = sum(r["estimated_bytes"] for r in rows)
    worst = max(abs(r["relative"]) for r in rows)
    summary = {"model": str(args.model), "scale_levels": args.scale_levels, "images": len(rows), "total_relative": total_payload / total_estimate - 1,
               "worst_image_relative": worst, "header_bytes": sorted({r["header_bytes"] for r in rows}), "rows": rows}
    print(f"total: {total_payload} B vs {total_estimate:.1f} B estimated ({100 * summary['total_relative']:+.3f}%), "
          f"worst image {100 * worst:.3f}%, header {summary['header_bytes']} B")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
