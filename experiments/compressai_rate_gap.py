"""Where the recipe comparison's rate gap (jaxlic vs CompressAI trained the same way) comes from.

    python experiments/compressai_rate_gap.py --recipe runs/recipe15 --quality 3 [--kodak DIR]

Needs a finished `experiments/train_recipe.py` run (jaxlic's OUT/jaxlic/qQ/model.jxlm and the
peer's OUT/compressai/qQ/state.npz) and the peer environment. On every Kodak image it measures,
for each of these codecs, the real bytes, the model's own estimate -sum(log2 likelihood) / 8 at
the symbols it codes, and PSNR of the real decode:

- `jaxlic`: jaxlic's trained model, quantiles solved exactly (what the recipe table measured);
- `compressai`: CompressAI's trained model through CompressAI (`peers/compressai_peer.py run`:
  `compress` bytes, likelihoods of its eval-mode forward, i.e. symbols round(y - median));
- `compressai weights, kept quantiles`: the same weights imported into jaxlic with CompressAI's
  aux-loss quantiles (medians and table ranges) kept: should code like CompressAI;
- `compressai weights, exact quantiles`: the same weights with jaxlic's exact quantiles.

So the gap splits into coding overhead (real bytes over the estimate), the quantiles (kept vs
exact, same weights) and the trained transforms and prior (the estimates of the two models).
Also reports how far CompressAI's learned quantiles are from the exact ones. Writes OUT/rate_gap.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jaxlic  # noqa: F401  (sets XLA flags before jax starts)
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

ARCH = "bmshj2018-factorized"


def jaxlic_rows(package, images) -> list[dict]:
    """Per image: real bytes (whole bitstream and payload), the estimate at the coded symbols, PSNR."""
    from jaxlic.codec import Bitstream, compress, decompress
    from jaxlic.codec.api import _to_model_input
    from jaxlic.eval.metrics import psnr

    rows = []
    for name, pixels in images:
        data = compress(package, pixels)
        payload = sum(len(s) for s in Bitstream.from_bytes(data).streams)
        x = jnp.asarray(_to_model_input(pixels, package.model.downsampling))
        out = package.model.apply({"params": package.params}, x, "round")
        estimate = sum(float(-jnp.log2(v).sum()) for v in out["likelihoods"].values()) / 8
        rows.append({"image": name, "pixels": pixels.shape[0] * pixels.shape[1], "bytes": len(data),
                     "payload_bytes": payload, "estimate_bytes": estimate,
                     "psnr": psnr(pixels, decompress(package, data))})
    return rows


def compressai_rows(state: Path, paths: list[Path], images, out: Path) -> list[dict]:
    """The peer's real compress bytes, eval-mode likelihood estimate and decode PSNR per image."""
    from jaxlic.eval.metrics import psnr
    from peer_utils import run_peer

    result = out / "compressai_run.npz"
    if not result.is_file():
        run_peer(["run", "--arch", ARCH, "--state", state, "--images", *paths, "--out", result], timeout=3600)
    rows = []
    with np.load(result) as data:
        for i, (name, pixels) in enumerate(images):
            x_hat = np.round(np.clip(data[f"{i}/decompress/x_hat_crop"][0].transpose(1, 2, 0), 0, 1) * 255)
            estimate = float(-np.log2(data[f"{i}/forward/likelihoods/y"]).sum()) / 8
            nbytes = int(data[f"{i}/nbytes_total"])
            rows.append({"image": name, "pixels": pixels.shape[0] * pixels.shape[1], "bytes": nbytes,
                         "payload_bytes": nbytes, "estimate_bytes": estimate,
                         "escapes": int(data[f"{i}/escapes/y"]), "psnr": psnr(pixels, x_hat.astype(np.uint8))})
    return rows


def summarize(rows: list[dict]) -> dict:
    pixels = sum(r["pixels"] for r in rows)
    out = {"bpp": 8 * sum(r["bytes"] for r in rows) / pixels,
           "payload_bpp": 8 * sum(r["payload_bytes"] for r in rows) / pixels,
           "estimate_bpp": 8 * sum(r["estimate_bytes"] for r in rows) / pixels,
           "psnr": float(np.mean([r["psnr"] for r in rows]))}
    out["payload_over_estimate_percent"] = 100 * (out["payload_bpp"] / out["estimate_bpp"] - 1)
    if "escapes" in rows[0]:
        out["escapes"] = sum(r["escapes"] for r in rows)
    return out


def quantile_stats(kept: np.ndarray, exact: np.ndarray) -> dict:
    """CompressAI's learned (C, 1, 3) quantiles against the exact ones."""
    from jaxlic.entropy.factorized import table_ranges

    _, kb, ka = table_ranges(kept.astype(np.float64))
    _, eb, ea = table_ranges(exact.astype(np.float64))
    shift = kept[:, 0, 1] - exact[:, 0, 1]
    return {"median_shift_mean_abs": float(np.abs(shift).mean()), "median_shift_max_abs": float(np.abs(shift).max()),
            "median_shift_fraction_over_0.1": float(np.mean(np.abs(shift) > 0.1)),
            "table_symbols_kept": int((kb + ka + 1).sum()), "table_symbols_exact": int((eb + ea + 1).sum()),
            "lower_tail_gap_mean": float(np.mean(kept[:, 0, 0] - exact[:, 0, 0])),
            "upper_tail_gap_mean": float(np.mean(kept[:, 0, 2] - exact[:, 0, 2]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True, help="an experiments/train_recipe.py --out folder")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--kodak", type=Path, default=REPO / ".." / "shared" / "data" / "kodak")
    args = parser.parse_args()
    from jaxlic.codec import build_tables, load
    from jaxlic.images import list_images, read_image
    from jaxlic.io.compressai import from_state_dict, read_state_dict

    paths = list_images(args.kodak)
    images = [(p.stem, read_image(p)) for p in paths]
    state = args.recipe / "compressai" / f"q{args.quality}" / "state.npz"
    kept = from_state_dict(read_state_dict(state), ARCH, args.quality)
    exact = build_tables(kept.config, kept.params, quantiles="solve")
    codecs = {
        "jaxlic": jaxlic_rows(load(args.recipe / "jaxlic" / f"q{args.quality}" / "model.jxlm"), images),
        "compressai": compressai_rows(state, paths, images, args.recipe / "compressai" / f"q{args.quality}"),
        "compressai weights, kept quantiles": jaxlic_rows(kept, images),
        "compressai weights, exact quantiles": jaxlic_rows(exact, images),
    }
    summary = {name: summarize(rows) for name, rows in codecs.items()}
    report = {"quality": args.quality, "images": len(images), "summary": summary,
              "quantiles": quantile_stats(np.asarray(kept.params["entropy_bottleneck"]["quantiles"]),
                                          np.asarray(exact.params["entropy_bottleneck"]["quantiles"])),
              "rows": codecs}
    print(f"{'codec':38s} {'bpp':>7s} {'payload':>7s} {'estimate':>8s} {'over est.':>9s} {'PSNR':>6s}")
    for name, s in summary.items():
        print(f"{name:38s} {s['bpp']:7.4f} {s['payload_bpp']:7.4f} {s['estimate_bpp']:8.4f} "
              f"{s['payload_over_estimate_percent']:+8.2f}% {s['psnr']:6.2f}")
    print(json.dumps(report["quantiles"], indent=1))
    (args.recipe / "rate_gap.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.recipe / 'rate_gap.json'}")


if __name__ == "__main__":
    main()
