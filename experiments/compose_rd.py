"""Composed run vs the stages one after another, at equal total steps (issue 13, item 4).

    python experiments/compose_rd.py --teacher runs/fac05/model.jxlm --data ../shared/data/train \
        --kodak ../shared/data/kodak --out runs/compose --steps 400 --images 6

Both pipelines start from the same teacher package, train a --width student with distillation,
channel-prune it by --fraction, quantize it (QAT, integer-mode package) and watermark it for
user 7, on the same data, batch and crop:
- sequential: `jaxlic distill` (half the steps, lr 1e-3) -> `jaxlic prune` (a quarter, cut after
  30% of it, lr 1e-4) -> `jaxlic watermark` (a quarter, QAT + watermark, lr 1e-4);
- composed: one `jaxlic train --init TEACHER --distill --prune --qat --watermark` run of all the
  steps (lr 1e-3, cosine), cutting at the same step as the sequential pipeline.
Two controls: distillation + pruning composed without QAT (vs distill -> prune), and pruning +
QAT + watermark composed from the sequential pipeline's distilled model (vs prune -> watermark).
Every package is coded to real bytes on the first --images Kodak images (bpp from the bytes,
PSNR of the 8-bit decode); the watermark is read back from the int8 weights. Runs resume.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from distill_common import evaluate_package, markdown_table, training_seconds

from jaxlic.cli import main as jaxlic
from jaxlic.codec import load
from jaxlic.images import read_images
from jaxlic.secure.watermark import WatermarkKey, extract

USER = 7


def run(argv: list[str], log: list[str]) -> None:
    """Run one jaxlic command (skipped when its package exists) and log it."""
    log.append("jaxlic " + " ".join(argv))
    print(log[-1], flush=True)
    out = Path(argv[argv.index("--out") + 1])
    if not (out.is_file() or (out / "model.jxlm").is_file()):
        assert jaxlic(argv) == 0, argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--kodak", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", default="0.25")
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--crop", default="96")
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key_path = args.out / "owner.wmkey"
    if not key_path.exists():
        WatermarkKey.generate().save(key_path)
    common = ["--data", args.data, "--batch-size", args.batch_size, "--crop", args.crop]
    distill, stage = args.steps // 2, args.steps // 4
    cut = int(round(0.3 * stage))
    log: list[str] = []

    seq = args.out / "sequential"
    run(["distill", "--teacher", str(args.teacher), "--width", args.width, "--steps", str(distill),
         "--lr", "1e-3", "--checkpoint-every", str(distill), *common, "--out", str(seq / "distill")], log)
    run(["prune", "--model", str(seq / "distill" / "model.jxlm"), "--kind", "channel",
         "--schedule", f"{cut}:{args.fraction}", "--steps", str(stage), "--lr", "1e-4",
         "--checkpoint-every", str(stage), *common, "--out", str(seq / "prune")], log)
    run(["watermark", "--model", str(seq / "prune" / "model.jxlm"), "--key", str(key_path), "--user-id", str(USER),
         "--qat-steps", str(args.steps - distill - stage), "--lr", "1e-4", *common,
         "--run-dir", str(seq / "watermark"), "--out", str(seq / "model.jxlm")], log)
    composed = args.out / "composed"
    run(["train", "--init", str(args.teacher), "--width", args.width, "--distill",
         "--prune", f"channel:{distill + cut}:{args.fraction}", "--qat", "--watermark", str(key_path),
         "--user-id", str(USER), "--steps", str(args.steps), "--lr", "1e-3", "--checkpoint-every", str(args.steps),
         *common, "--out", str(composed)], log)

    # Two controls, each against the sequential stages it replaces, at equal steps:
    # distillation + pruning composed, float (no QAT): vs distill -> prune;
    run(["train", "--init", str(args.teacher), "--width", args.width, "--distill",
         "--prune", f"channel:{distill + cut}:{args.fraction}", "--steps", str(distill + stage), "--lr", "1e-3",
         "--checkpoint-every", str(distill + stage), *common, "--out", str(args.out / "composed-float")], log)
    # the seed paper's workflow, pruning + QAT + watermark composed, from the distilled float model:
    # vs prune -> QAT + watermark.
    run(["train", "--init", str(seq / "distill" / "model.jxlm"), "--prune", f"channel:{cut}:{args.fraction}",
         "--qat", "--watermark", str(key_path), "--user-id", str(USER), "--steps", str(args.steps - distill),
         "--lr", "1e-4", "--checkpoint-every", str(args.steps - distill), *common,
         "--out", str(args.out / "composed-pqw")], log)

    images = read_images(args.kodak)[: args.images]
    key = WatermarkKey.load(key_path)
    rows = []
    for i, (name, package_path, runs) in enumerate((
        ("teacher (float)", args.teacher, []),
        ("sequential: distill (float)", seq / "distill" / "model.jxlm", [seq / "distill"]),
        ("sequential: + prune (float)", seq / "prune" / "model.jxlm", [seq / "distill", seq / "prune"]),
        ("sequential: + QAT + watermark (int8)", seq / "model.jxlm", [seq / "distill", seq / "prune", seq / "watermark"]),
        ("composed: distill + prune + QAT + watermark (int8)", composed / "model.jxlm", [composed]),
        ("composed: distill + prune (float)", args.out / "composed-float" / "model.jxlm", [args.out / "composed-float"]),
        ("sequential distill, then composed prune + QAT + watermark (int8)", args.out / "composed-pqw" / "model.jxlm",
         [seq / "distill", args.out / "composed-pqw"]),
    )):
        package = load(package_path)
        cache = args.out / f"eval{i}.kodak{args.images}.json"
        row = {"name": name, **evaluate_package(package, images, cache), "N": str(list(package.config.hidden) or package.config.N),
               "train_s": sum(training_seconds(r) for r in runs) if runs else None}
        if package.integer is not None:
            result = extract(package, key)
            row |= {"owner_errors": result.owner_errors, "ber": result.bit_error_rate(USER)}
        rows.append(row)
    table = markdown_table(rows, [("pipeline", "name", "s"), ("hidden channels", "N", "s"), ("bpp", "bpp", ".4f"),
                                  ("PSNR dB", "psnr", ".2f"), ("MS-SSIM", "ms_ssim", ".4f"),
                                  ("owner errors", "owner_errors", "d"), ("BER user 7", "ber", ".3f"),
                                  ("train s", "train_s", ".0f")])
    load_avg = " ".join(f"{x:.1f}" for x in os.getloadavg())
    (args.out / "compose_rd.json").write_text(json.dumps({"commands": log, "rows": rows, "load": load_avg}, indent=1))
    print("\n".join(log))
    print(table)
    print(f"load average at the end: {load_avg}")


if __name__ == "__main__":
    main()
