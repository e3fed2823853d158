"""A trained sandwich against its plain-codec baseline on built-in photos it was not trained on.

    python experiments/sandwich_heldout.py --model runs/sandwich/half-res/sandwich.jxls --photos astronaut coffee

Held-out set: scikit-image's photos (`jaxlic.images.default_images`), never in ../shared/data/train;
16-bit ones for high-bit-depth come from `synthesize_high_bit_depth`. Real Pillow JPEG bytes
(the sandwich's metadata comment included), PSNR on the original's bit depth. Prints, per sandwich
quality, its bpp and PSNR and the gain over the plain codec at equal bpp (plain codec at qualities
5..95 step 5, 40..100 for high-bit-depth, interpolated linearly in bpp), then BD-rate/BD-PSNR;
writes the same as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxlic.eval.results import make_record
from jaxlic.images import default_images
from jaxlic.sandwich.evaluate import baseline_sweep, gains, sandwich_sweep
from jaxlic.sandwich.model import load_package, to_uint16
from jaxlic.sandwich.scenarios import synthesize_high_bit_depth

BASELINE_QUALITIES = {True: (40, 50, 60, 70, 80, 85, 90, 95, 98, 100), False: tuple(range(5, 100, 5))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="sandwich package (.jxls)")
    parser.add_argument("--photos", nargs="+", default=["astronaut", "coffee"], help="built-in photo names")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the points and summary")
    args = parser.parse_args()

    package = load_package(args.model)
    scenario = package.sandwich.scenario
    photos = dict(default_images())
    images = []
    for name in args.photos:
        image = photos[name]
        if scenario.high_bit_depth:
            image = to_uint16(np.asarray(synthesize_high_bit_depth(jnp.asarray(image[None], jnp.float32) / 255.0))[0])
        images.append((name, image))

    qualities, plain_q = scenario.eval_qualities, BASELINE_QUALITIES[scenario.high_bit_depth]
    sandwich = make_record(f"sandwich {scenario.name}", package.config.to_json(),
                           sandwich_sweep(package, images, qualities), qualities)
    plain = make_record(f"plain ({scenario.name})", scenario.summary, baseline_sweep(scenario, images, plain_q), plain_q)
    summary = gains(sandwich, plain)
    print(f"{scenario.name} on {', '.join(args.photos)} (held out), gain at equal bpp:")
    for point in summary["points"]:
        print(f"  bpp {point['bpp']:.3f}  PSNR {point['psnr']:.2f} dB  plain {point['anchor_psnr']:.2f} dB  "
              f"gain {point['gain_db']:+.3f} dB")
    summary["worst_gain_db"] = min((p["gain_db"] for p in summary["points"]), default=None)
    print(f"mean {summary['mean_gain_db']} dB, worst {summary['worst_gain_db']} dB, "
          f"BD-PSNR {summary['bd_psnr_db']} dB, BD-rate {summary['bd_rate_percent']} %")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"photos": args.photos, "model": str(args.model), **summary}, indent=2))


if __name__ == "__main__":
    main()
