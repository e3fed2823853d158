"""Does a floor on the inverse GDN's beta make the integer GDN's normalizer N(P) accurate?

    python experiments/gdn_beta_floor.py --model runs/i16/fac05-7k/model.jxlm --data ../shared/data/train \
        --out runs/floor [--clamp 0 0.01 0.03 0.1 0.3] [--finetune 1e-6 0.1 0.3] [--steps 1000] [--images 6]

Trained models leave some inverse-GDN channels' beta at its floor of 1e-6; there the int8 pool
(squares to 7 bits, int8 gamma) rounds small inputs away and N(P) is up to 0.99 off
(docs/quantization.md). Two ways to put beta higher, each then quantized as `jaxlic quantize`
calibrates (weights rounded to nearest, so the GDN is not hidden by GPTQ) and measured by
`jaxlic.quant.gdn_error` on the calibration batches and on the first --images Kodak images:
- `--clamp F`: the trained synthesis betas raised to at least F, no training;
- `--finetune F`: --steps of fine-tuning (lr --lr, cosine, crops of 128, batch 8, the model's
  lambda) with the synthesis inverse GDNs' beta bounded below by F, then clamped to F (so the
  package holds the bounded values). `--finetune 1e-6` is the control: the same fine-tune with
  the zoo's bound.
Writes OUT/result.json. Kodak is only evaluated.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path


def with_beta_floor(package, floor: float):
    """The package with every synthesis (inverse) GDN's effective beta raised to at least `floor`."""
    import jax.numpy as jnp

    from jaxlic.nn.gdn import GDN, effective, reparametrize

    params = {name: dict(p) for name, p in package.params.items()}
    for name, p in params.items():
        if name.startswith("g_s_") and "beta" in p:
            p["beta"] = reparametrize(jnp.maximum(effective(p["beta"], GDN.beta_min), floor))
    return dataclasses.replace(package, params=params)


@contextlib.contextmanager
def synthesis_beta_bound(floor: float):
    """Models built inside get inverse GDNs whose beta is bounded below by `floor` (the zoo's
    layer factory replaced for the duration; analysis GDNs keep the zoo's bound)."""
    from jaxlic.models import layers
    from jaxlic.nn.gdn import GDN

    zoo = layers.gdn
    layers.gdn = lambda kind, inverse=False: GDN(inverse=inverse, simplified=kind == "simplified",
                                                 beta_min=floor if inverse else GDN.beta_min)
    try:
        yield
    finally:
        layers.gdn = zoo


def measure(package, batches, images) -> dict:
    """Float and nearest-rounded PTQ bpp/PSNR on `images`, and the PTQ package's GDN errors."""
    from jaxlic.eval.evaluate import evaluate_model
    from jaxlic.quant.gdn_error import gdn_errors
    from jaxlic.quant.pipeline import quantize

    ptq = quantize(package, batches, weight_rounding="nearest")
    float_, integer = evaluate_model(package, images), evaluate_model(ptq, images)
    return {"float": {"bpp": float_.bpp, "psnr": float_.psnr}, "ptq": {"bpp": integer.bpp, "psnr": integer.psnr},
            "ptq_loss_db": integer.psnr - float_.psnr, "gdn": gdn_errors(ptq, batches)}


def report(label: str, row: dict) -> None:
    """One line: float and PTQ figures, then each inverse GDN's worst errors."""
    layers = ", ".join(f"{name} N {e['normalizer']:.2e} (99.9%: {e['normalizer_p999']:.2e}) {e['output_lsb']:.2f} LSB"
                       for name, e in row["gdn"].items())
    print(f"{label}: float {row['float']['bpp']:.4f} bpp {row['float']['psnr']:.3f} dB, PTQ {row['ptq']['psnr']:.3f} dB "
          f"({row['ptq_loss_db']:+.3f}) | {layers}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained float package")
    parser.add_argument("--data", type=Path, required=True, help="training folder (calibration, fine-tunes)")
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--clamp", type=float, nargs="*", default=[])
    parser.add_argument("--finetune", type=float, nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()

    from jaxlic.cli import main as jaxlic_main
    from jaxlic.codec.package import ModelPackage
    from jaxlic.images import read_images
    from jaxlic.pretrained import load_model
    from jaxlic.quant.qat import calibration_batches

    args.out.mkdir(parents=True, exist_ok=True)
    base = load_model(args.model)
    batches = calibration_batches((str(args.data),), 4, 8, 256, 1)  # `jaxlic quantize`'s defaults
    images = read_images(args.kodak)[:args.images]
    result: dict = {"model": str(args.model), "images": args.images, "clamp": {}, "finetune": {}}
    for floor in args.clamp:
        result["clamp"][str(floor)] = row = measure(with_beta_floor(base, floor), batches, images)
        report(f"clamp {floor:g}", row)
    for floor in args.finetune:
        run = args.out / f"finetune-{floor:g}"
        with synthesis_beta_bound(floor):
            code = jaxlic_main(["train", "--init", str(args.model), "--quality", str(base.config.quality),
                                "--data", str(args.data), "--steps", str(args.steps), "--batch-size", "8",
                                "--crop", "128", "--lr", str(args.lr), "--warmup", "20", "--decay", "cosine",
                                "--clip-norm", "1.0", "--out", str(run)])
        if code:
            return code
        tuned = with_beta_floor(ModelPackage.load(run / "model.jxlm"), floor)
        result["finetune"][str(floor)] = row = measure(tuned, batches, images)
        report(f"fine-tune {args.steps} steps, floor {floor:g}", row)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
