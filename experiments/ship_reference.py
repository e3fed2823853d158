"""Ship trained packages as jaxlic's reference models and measure them, as shipped, on Kodak.

    python experiments/ship_reference.py --kodak ../shared/data/kodak --out runs/ship/eval \
        --float 1=runs/ship/hp0375-q1/model.jxlm 2=... --integer 1=runs/ship/int-q1.jxlm 2=... \
        --sandwich gray=runs/ship/sandwich/gray/sandwich.jxls ...

Each codec package is rounded to half precision (`jaxlic.pretrained.half_precision`, what ships),
evaluated on the Kodak images (bpp from real bytes, PSNR, MS-SSIM, decode time) and written into
jaxlic/pretrained/models/ with those figures in its manifest entry; float models as
`ref-hyperprior:Q`, their integer-mode versions as `ref-hyperprior-int:Q`, sandwiches as
`sandwich-SCENARIO` (their Kodak figures come from experiments/sandwich_kodak.py). Pillow's JPEG,
WebP and AVIF are swept on the same images; BD-rates against JPEG are printed and saved with the
curves to OUT/results.json, the RD plot to OUT/rd.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxlic.codec import load
from jaxlic.eval import codecs
from jaxlic.eval.bdrate import bd_psnr, bd_rate
from jaxlic.eval.evaluate import evaluate_model
from jaxlic.eval.plots import plot_rd
from jaxlic.eval.results import make_record, save_results
from jaxlic.images import read_images
from jaxlic.pretrained import half_precision, ship
from jaxlic.sandwich.model import load_package

FLOAT_NAME, INTEGER_NAME = "ref-hyperprior", "ref-hyperprior-int"
CODEC_QUALITIES = {"jpeg": tuple(range(5, 100, 5)), "webp": tuple(range(5, 100, 5)), "avif": tuple(range(5, 100, 10))}


def pairs(items: list[str]) -> list[tuple[str, Path]]:
    """KEY=PATH arguments."""
    return [(key, Path(path)) for key, path in (item.split("=", 1) for item in items)]


def ship_codec_models(name: str, items: list[str], images) -> list:
    """Ship each quality's package and return one Evaluation per quality (measured as shipped)."""
    evaluations = []
    for quality, path in sorted(pairs(items), key=lambda p: int(p[0])):
        package = load(path)
        result = evaluate_model(half_precision(package), images)  # the model `ship` writes
        facts = {"bpp": result.bpp, "psnr": result.psnr, "ms_ssim": result.ms_ssim, "images": len(images),
                 "decode_s": result.mean("decode_time")}
        entry = ship(package, name, int(quality), kodak=facts)
        print(f"{name}:{quality}: {entry['bytes']:,d} bytes, {result.bpp:.4f} bpp, {result.psnr:.3f} dB, "
              f"MS-SSIM {result.ms_ssim:.4f}")
        evaluations.append(result)
    return evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, required=True)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--float", nargs="*", default=[], help="QUALITY=PACKAGE")
    parser.add_argument("--integer", nargs="*", default=[], help="QUALITY=PACKAGE (integer-mode)")
    parser.add_argument("--sandwich", nargs="*", default=[], help="SCENARIO=PACKAGE")
    parser.add_argument("--codecs", nargs="*", default=list(CODEC_QUALITIES))
    args = parser.parse_args()
    images = read_images(args.kodak, args.images)
    records = []
    for name, items in ((FLOAT_NAME, args.float), (INTEGER_NAME, args.integer)):
        if items:
            records.append(make_record(name, "shipped (half precision)", ship_codec_models(name, items, images)))
    for scenario, path in pairs(args.sandwich):
        entry = ship(load_package(path), f"sandwich-{scenario}", None)
        print(f"sandwich-{scenario}: {entry['bytes']:,d} bytes")
    for codec in codecs.usable_codecs(args.codecs):
        qualities = CODEC_QUALITIES[codec]
        records.append(make_record(f"{codec.upper()} (Pillow)", "default settings", codecs.sweep(codec, images, qualities),
                                   qualities))
    if not records:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / "results.json", records)
    plot_rd(records, args.out / "rd.png", title=f"Kodak ({len(images)} images)")
    jpeg = next((r for r in records if r["name"].startswith("JPEG")), None)
    summary = {}
    for record in records:
        if jpeg is None or record is jpeg:
            continue
        a, t = jpeg["results"], record["results"]
        summary[record["name"]] = {"bd_rate_vs_jpeg": bd_rate(a["bpp"], a["psnr-rgb"], t["bpp"], t["psnr-rgb"]),
                                   "bd_psnr_vs_jpeg": bd_psnr(a["bpp"], a["psnr-rgb"], t["bpp"], t["psnr-rgb"])}
        print(f"{record['name']:24s} BD-rate vs JPEG {summary[record['name']]['bd_rate_vs_jpeg']:+.2f}%, "
              f"BD-PSNR {summary[record['name']]['bd_psnr_vs_jpeg']:+.3f} dB")
    (args.out / "bd.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
