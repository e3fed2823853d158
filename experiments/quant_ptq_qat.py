"""Post-training quantization and QAT of one trained float model, measured on Kodak.

    python experiments/quant_ptq_qat.py --model runs/fac05/model.jxlm --data ../shared/data/train \
        --kodak ../shared/data/kodak --out runs/ptq-qat/fac05 [--qat-steps 100] [--images 24]

Calibrates as `jaxlic quantize` does (4 batches of 8 training crops of 256), then prints and
writes to OUT/result.json:
- per inverse-GDN layer of both PTQ packages, the exporter's static bound and the measured worst
  relative error of the integer normalizer N(P) over the calibration batches (against the float
  normalizer of the layer's own integer input), and the worst error of x * N(P) in output LSBs;
- bpp (real bitstreams) and PSNR on the Kodak images of the float model, the PTQ package
  (OUT/ptq.jxlm, weights rounded by GPTQ as `jaxlic quantize` does), the PTQ package with every
  weight rounded to nearest (OUT/ptq-nearest.jxlm) and, with --qat-steps, the QAT package
  (Trainer run OUT/qat/, resumable).
Calibration and QAT use --data only; Kodak is only evaluated. `--images 0` skips Kodak.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



def kodak(package, images) -> dict:
    from jaxlic.eval.evaluate import evaluate_model

    result = evaluate_model(package, images)
    return {"bpp": result.bpp, "psnr": result.psnr}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained float package, or NAME:QUALITY of a shipped model")
    parser.add_argument("--data", type=Path, action="append", required=True, help="training folder (repeatable)")
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=24, help="first N Kodak images (0: none)")
    parser.add_argument("--qat-steps", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from jaxlic.pretrained import load_model
    from jaxlic.images import read_images
    from jaxlic.quant.gdn_error import gdn_errors
    from jaxlic.quant.pipeline import quantize
    from jaxlic.quant.qat import calibration_batches
    from jaxlic.train.loop import TrainConfig

    args.out.mkdir(parents=True, exist_ok=True)
    folders = tuple(map(str, args.data))
    base = load_model(args.model)
    batches = calibration_batches(folders, 4, 8, 256, 1)  # `jaxlic quantize`'s defaults (seed 0 + 1)
    nearest = quantize(base, batches, weight_rounding="nearest")
    nearest.save(args.out / "ptq-nearest.jxlm")
    ptq = quantize(base, batches)  # what `jaxlic quantize` writes
    ptq.save(args.out / "ptq.jxlm")
    record: dict = {"model": str(args.model), "gdn": gdn_errors(ptq, batches), "gdn_nearest": gdn_errors(nearest, batches)}
    for key, package in (("gdn_nearest", nearest), ("gdn", ptq)):
        for name, row in record[key].items():
            row["bound"] = package.integer.meta["igdn"][name]["max_relative_error"]
            print(f"{'nearest' if key == 'gdn_nearest' else 'GPTQ'} {name}: static bound {row['bound']:.2e}, measured N(P) "
                  f"{row['normalizer']:.2e} (99.9%: {row['normalizer_p999']:.2e}), x * N(P) {row['output_lsb']:.3f} LSB",
                  flush=True)
    packages = {"float": base, "ptq-nearest": nearest, "ptq": ptq}
    if args.qat_steps:
        config = TrainConfig(data=folders, steps=args.qat_steps, batch_size=args.batch_size, crop=args.crop,
                             learning_rate=args.lr, checkpoint_every=max(args.qat_steps // 4, 1))
        packages["qat"] = quantize(base, batches, qat=config, run_dir=args.out / "qat")
    if args.images:
        images = read_images(args.kodak)[:args.images]
        record["kodak"] = {variant: kodak(package, images) for variant, package in packages.items()}
        reference = record["kodak"]["float"]
        for variant, row in record["kodak"].items():
            print(f"{variant:11s} {row['bpp']:.4f} bpp {row['psnr']:.3f} dB  vs float {row['psnr'] - reference['psnr']:+.3f} dB "
                  f"{100 * (row['bpp'] / reference['bpp'] - 1):+.2f}% bpp", flush=True)
    (args.out / "result.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
