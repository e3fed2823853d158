"""Reproduce CompressAI's published JPEG curve on Kodak with Pillow (quality 5..95).

Usage: python experiments/jpeg_kodak_vs_compressai.py [--kodak ../shared/data/kodak] [--out DIR]
Writes DIR/jpeg_kodak.json (CompressAI format) and DIR/jpeg_kodak_rd.png, and prints, per
quality, our bpp/PSNR next to the published ones with the differences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxlic.eval.codecs import DEFAULT_QUALITIES, sweep
from jaxlic.eval.plots import plot_rd
from jaxlic.eval.reference_curves import reference_curve
from jaxlic.eval.results import Record, make_record, save_results
from jaxlic.images import list_images, read_image

ROOT = Path(__file__).resolve().parents[1]


def measure(kodak: Path, progress: bool = True) -> Record:
    """Sweep Pillow JPEG over the Kodak folder at qualities 5..95; a CompressAI-format record."""
    images = [(path.name, read_image(path)) for path in list_images(kodak)]
    evaluations = sweep("jpeg", images, DEFAULT_QUALITIES, progress=progress)
    return make_record("JPEG (jaxlic, Pillow)", f"Pillow JPEG on {len(images)} Kodak images", evaluations, DEFAULT_QUALITIES)


def comparison_rows(measured: Record) -> list[tuple[int, float, float, float, float]]:
    """(quality, bpp, published bpp, PSNR, published PSNR) per quality."""
    published = reference_curve("JPEG")["results"]
    ours = measured["results"]
    return [
        (int(q), b, pb, p, pp)
        for q, b, pb, p, pp in zip(ours["quality"], ours["bpp"], published["bpp"], ours["psnr-rgb"], published["psnr-rgb"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=ROOT / ".." / "shared" / "data" / "kodak")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "experiments")
    args = parser.parse_args()
    measured = measure(args.kodak)
    save_results(args.out / "jpeg_kodak.json", measured)
    plot_rd([measured], args.out / "jpeg_kodak_rd.png", references=[reference_curve("JPEG")])
    print("quality   bpp  published   diff |   PSNR  published   diff")
    for q, b, pb, p, pp in comparison_rows(measured):
        print(f"{q:7d} {b:6.3f} {pb:9.3f} {b - pb:+7.4f} | {p:6.2f} {pp:9.2f} {p - pp:+6.3f}")
    print(f"wrote {args.out / 'jpeg_kodak.json'} and {args.out / 'jpeg_kodak_rd.png'}")


if __name__ == "__main__":
    main()
