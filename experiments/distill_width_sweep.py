"""Width sweep: a teacher, students distilled from it, and the same students trained from scratch.

Trains on ../shared/data/train only and evaluates every model on Kodak (real bitstreams). Each
student width is trained twice with the same data, seed, steps and schedule: once for RD alone
(scratch) and once for RD + distillation. Writes `sweep.md`, `sweep.json`, `results.json`
(CompressAI-format curves over width) and `rd.png` to --out. Runs resume: a finished run
is only re-finalized and its Kodak evaluation is cached.

    python experiments/distill_width_sweep.py --out runs/distill_sweep
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_common import (  # noqa: E402
    KODAK, TRAIN, complexity, evaluate_package, markdown_table, rd_loss, training_seconds,
)
from jaxlic.eval.plots import plot_rd  # noqa: E402
from jaxlic.images import read_images  # noqa: E402
from jaxlic.eval.results import save_results, validate_results  # noqa: E402
from jaxlic.models import model_config  # noqa: E402
from jaxlic.train.distill import calibration_crops, distill_task, student_config  # noqa: E402
from jaxlic.train.loop import TrainConfig, Trainer  # noqa: E402
from jaxlic.train.task import codec_task  # noqa: E402

COLUMNS = [("model", "name", "s"), ("width", "width", "g"), ("N", "N", "d"), ("M", "M", "d"),
           ("kMAC/px", "kmacs", ".1f"), ("dec kMAC/px", "decoder_kmacs", ".1f"), ("params", "params", ",d"),
           ("steps", "steps", "d"), ("train s", "train_s", ".0f"), ("bpp", "bpp", ".4f"), ("PSNR dB", "psnr", ".2f"),
           ("MS-SSIM", "ms_ssim", ".4f"), ("RD loss", "rd_loss", ".4f"), ("dRD vs scratch", "vs_scratch", "+.4f"),
           ("dRD vs teacher", "vs_teacher", "+.4f")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/distill_sweep"))
    p.add_argument("--data", type=Path, default=TRAIN)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--arch", default="bmshj2018-factorized")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--teacher-width", type=float, default=0.5)
    p.add_argument("--teacher-steps", type=int, default=2000)
    p.add_argument("--widths", type=float, nargs="+", default=[0.375, 0.25, 0.125])
    p.add_argument("--steps", type=int, default=500, help="student steps (the same with and without distillation)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--latent-weight", type=float, default=1.0)
    p.add_argument("--output-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def train(config: TrainConfig, task, run_dir: Path):
    print(f"== {run_dir.name}", flush=True)
    return Trainer(config, task, run_dir).run()


def main() -> None:
    args = parse_args()
    data = (str(args.data.resolve()),)
    common = dict(data=data, batch_size=args.batch_size, crop=args.crop, learning_rate=args.lr,
                  warmup=args.warmup, seed=args.seed)
    teacher_train = TrainConfig(steps=args.teacher_steps, checkpoint_every=250, **common)
    student_train = TrainConfig(steps=args.steps, checkpoint_every=max(args.steps // 2, 1), **common)

    teacher = train(teacher_train, codec_task(model_config(args.arch, args.quality, args.teacher_width)),
                    args.out / "teacher")
    calibration = calibration_crops(data, args.crop, 16, args.seed)
    runs = [("teacher", args.teacher_width, args.teacher_steps, teacher, args.out / "teacher")]
    for width in args.widths:
        for kind in ("scratch", "distilled"):
            run_dir = args.out / f"{kind}_w{width:g}"
            task = (codec_task(student_config(teacher.config, width)) if kind == "scratch" else
                    distill_task(teacher, width, calibration, args.latent_weight, args.output_weight))
            runs.append((kind, width, args.steps, train(student_train, task, run_dir), run_dir))

    images = read_images(args.kodak)  # evaluation only, never trained on
    lmbda = teacher.config.lmbda
    rows = []
    for kind, width, steps, package, run_dir in runs:
        print(f"== Kodak: {run_dir.name}", flush=True)
        result = evaluate_package(package, images, run_dir / "kodak.json")
        rows.append({"name": kind, "width": width, "N": package.config.N, "M": package.config.M, "steps": steps,
                     "train_s": training_seconds(run_dir), **complexity(package), **result,
                     "rd_loss": rd_loss(result, lmbda)})
    teacher_loss = rows[0]["rd_loss"]
    scratch = {r["width"]: r["rd_loss"] for r in rows if r["name"] == "scratch"}
    for row in rows[1:]:
        row["vs_teacher"] = row["rd_loss"] - teacher_loss
        if row["name"] == "distilled":
            row["vs_scratch"] = row["rd_loss"] - scratch[row["width"]]

    records = [_record(f"{kind}", [r for r in rows if r["name"] == kind], args) for kind in ("teacher", "distilled", "scratch")]
    save_results(args.out / "results.json", records)
    plot_rd(records, args.out / "rd.png", metrics=("psnr-rgb", "ms-ssim-rgb"),
            title=f"Kodak, {args.arch} q{args.quality}: width sweep")
    (args.out / "sweep.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                     "lambda": lmbda, "rows": rows}, indent=1))
    table = markdown_table(rows, COLUMNS)
    (args.out / "sweep.md").write_text(table)
    print(table)


def _record(name: str, rows: list[dict], args: argparse.Namespace) -> dict:
    """A CompressAI-format record with one point per width (means only)."""
    widths = ", ".join(f"{r['width']:g}" for r in rows)
    results = {"bpp": [r["bpp"] for r in rows], "psnr-rgb": [r["psnr"] for r in rows],
               "ms-ssim-rgb": [r["ms_ssim"] for r in rows]}
    label = f"{name} (width {widths})"
    return validate_results({"name": label, "description": f"{args.arch} q{args.quality}, widths {widths}",
                             "results": results}, label)


if __name__ == "__main__":
    main()
