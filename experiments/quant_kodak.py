"""Kodak evaluation of the quantization study: float, float control, PTQ and QAT integer models.

    python experiments/quant_kodak.py --runs runs/quant --kodak ../shared/data/kodak \
        --out runs/quant/kodak.json [--jobs 4] [--numpy-images 2]

For every run directory OUT/<gdn>-q<quality>/ made by quant_train.py it codes the 24 Kodak
images with real bitstreams (bpp from bytes, PSNR on 8-bit output) through:
- float: the float model (float/model.jxlm);
- control: the float model fine-tuned with the QAT recipe but a float decoder;
- ptq: the float model integerized without training (ptq.jxlm);
- qat: the QAT-fine-tuned integer model (qat/model.jxlm);
- qaw: the same QAT with the watermark term (qaw/model.jxlm, experiments/watermark.py embed).
Integer models decode with the JAX integer path; on the first --numpy-images images the NumPy
reference decodes the same bitstream and must give the same bits. Prints per-point results and
Bjontegaard deltas (pchip) per GDN kind; writes everything to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

VARIANTS = {"float": "float/model.jxlm", "control": "control/model.jxlm", "ptq": "ptq.jxlm", "qat": "qat/model.jxlm",
            "qaw": "qaw/model.jxlm"}
# (test kind, test variant, anchor kind, anchor variant); "*" = the same GDN kind as the row.
COMPARISONS = (("*", "qaw", "*", "qat"), ("*", "qat", "*", "control"), ("*", "qat", "*", "float"),
               ("*", "ptq", "*", "float"),
               ("*", "control", "*", "float"), ("simplified", "control", "gdn", "control"),
               ("simplified", "qat", "gdn", "control"), ("simplified", "qat", "gdn", "qat"))


def evaluate_package(path: str, kodak: str, numpy_images: int) -> dict:
    """bpp/PSNR on Kodak (means and per image) and the NumPy-reference check of one package."""
    import numpy as np

    from jaxlic.codec import compress, decompress, load
    from jaxlic.eval.evaluate import evaluate_model
    from jaxlic.images import read_images

    package = load(path)
    images = read_images(kodak)
    result = evaluate_model(package, images)
    record = {"path": path, "bpp": result.bpp, "psnr": result.psnr, "ms_ssim": result.ms_ssim,
              "decode_time": result.mean("decode_time"), "integer": package.integer is not None,
              "per_image": [{"name": r.name, "bpp": r.bpp, "psnr": r.psnr} for r in result.images]}
    if package.integer is not None:
        checks = []
        for _, image in images[:numpy_images]:
            data = compress(package, image)
            checks.append(bool(np.array_equal(decompress(package, data, "numpy"), decompress(package, data, "jax"))))
        record["numpy_equals_jax"] = checks
    return record


def bd_table(points: dict) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of every comparison whose curves have 4+ points."""
    from jaxlic.eval.bdrate import bd_psnr, bd_rate

    table = {}
    for kind in points:
        for test_kind, test, anchor_kind, anchor in COMPARISONS:
            if "*" not in (test_kind, anchor_kind) and kind != test_kind:
                continue  # a cross-kind row is computed once
            test_kind, anchor_kind = (kind if k == "*" else k for k in (test_kind, anchor_kind))
            t, a = points.get(test_kind, {}).get(test, []), points.get(anchor_kind, {}).get(anchor, [])
            if len(t) >= 4 and len(a) >= 4:
                curves = ([p["bpp"] for p in a], [p["psnr"] for p in a], [p["bpp"] for p in t], [p["psnr"] for p in t])
                table[f"{test_kind} {test} vs {anchor_kind} {anchor}"] = {
                    "bd_rate_percent": bd_rate(*curves), "bd_psnr_db": bd_psnr(*curves)}
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--kodak", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--numpy-images", type=int, default=2)
    parser.add_argument("--cpu", action="store_true", help="JAX on the CPU (integer convolutions need it on GPUs)")
    args = parser.parse_args()
    if args.cpu:
        os.environ["JAX_PLATFORMS"] = "cpu"
    jobs = []
    for run in sorted(p for p in args.runs.iterdir() if p.is_dir() and "-q" in p.name):
        gdn, quality = run.name.rsplit("-q", 1)
        for variant, rel in VARIANTS.items():
            if (run / rel).exists():
                jobs.append((gdn, int(quality), variant, str(run / rel)))
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(evaluate_package, path, str(args.kodak), args.numpy_images) for *_, path in jobs]
        records = [f.result() for f in futures]
    points: dict = {}
    for (gdn, quality, variant, _), record in zip(jobs, records):
        record.update(gdn=gdn, quality=quality, variant=variant)
        points.setdefault(gdn, {}).setdefault(variant, []).append(record)
        check = record.get("numpy_equals_jax")
        print(f"{gdn:10s} q{quality} {variant:8s} {record['bpp']:.4f} bpp {record['psnr']:.3f} dB"
              + (f"  numpy==jax {check}" if check is not None else ""), flush=True)
    for gdn, variants in points.items():
        for variant in variants.values():
            variant.sort(key=lambda r: r["quality"])
        for quality_points in zip(*(variants[v] for v in ("qat", "control") if v in variants)):
            if len(quality_points) == 2:
                q, c = quality_points
                print(f"{gdn:10s} q{q['quality']} qat - control: {q['psnr'] - c['psnr']:+.3f} dB, "
                      f"{100 * (q['bpp'] / c['bpp'] - 1):+.2f} % bpp")
    table = bd_table(points)
    for name, row in table.items():
        print(f"{name:40s} BD-rate {row['bd_rate_percent']:+.2f} %  BD-PSNR {row['bd_psnr_db']:+.3f} dB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"points": points, "bd": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
