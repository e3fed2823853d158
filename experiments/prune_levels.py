"""Pruning levels: MACs saved against RD loss on Kodak, for channel pruning inside training.

Starts from a trained package (by default the width sweep's teacher) and, for each level,
fine-tunes it on ../shared/data/train while cutting that fraction of every hidden layer's
channels in equal steps, then exports the physically smaller model. Two references at each
level and overall: the same cut with no fine-tuning (one shot), and the unpruned model
fine-tuned for the same steps (so extra training is not mistaken for a pruning effect).
Writes `prune.md`, `prune.json`, `results.json` and `rd.png` to --out.

    python experiments/prune_levels.py --model runs/distill_sweep/teacher/model.jxlm --out runs/prune_levels
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_common import (  # noqa: E402
    KODAK, TRAIN, complexity, evaluate_package, markdown_table, rd_loss, training_seconds,
)
from jaxlic.codec import build_tables, load  # noqa: E402
from jaxlic.images import read_images  # noqa: E402
from jaxlic.eval.plots import plot_rd  # noqa: E402
from jaxlic.eval.results import save_results, validate_results  # noqa: E402
from jaxlic.quant.prune import PruneSchedule, apply_masks, init_masks, prune_masks, prune_task, shrink  # noqa: E402
from jaxlic.train.loop import TrainConfig, Trainer  # noqa: E402
from jaxlic.train.task import codec_task  # noqa: E402

COLUMNS = [("model", "name", "s"), ("pruned", "fraction", ".0%"), ("hidden channels", "hidden", "s"),
           ("kMAC/px", "kmacs", ".1f"), ("MACs saved", "saved", ".1%"), ("dec kMAC/px", "decoder_kmacs", ".1f"),
           ("params", "params", ",d"), ("steps", "steps", "d"), ("bpp", "bpp", ".4f"), ("PSNR dB", "psnr", ".2f"),
           ("MS-SSIM", "ms_ssim", ".4f"), ("RD loss", "rd_loss", ".4f"), ("dRD vs fine-tuned", "vs_tuned", "+.4f")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=Path("runs/distill_sweep/teacher/model.jxlm"))
    p.add_argument("--out", type=Path, default=Path("runs/prune_levels"))
    p.add_argument("--data", type=Path, default=TRAIN)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5])
    p.add_argument("--cuts", type=int, default=3, help="pruning steps per level (equal fractions)")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps (the cuts fall in the first half)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def level_schedule(fraction: float, cuts: int, steps: int) -> PruneSchedule:
    """`cuts` equal cuts up to `fraction`, the first after step 1, the last at half the run."""
    at = [1 + i * (steps // 2 - 1) // max(cuts - 1, 1) for i in range(cuts)]
    return PruneSchedule("channel", tuple(at), tuple(fraction * (i + 1) / cuts for i in range(cuts)))


def one_shot(package, fraction: float, run_dir: Path):
    """The same cut with no fine-tuning: masks from the trained weights, shrunk, new tables."""
    params = jax.device_get(package.params)
    masks = prune_masks("channel", params, jax.device_get(init_masks("channel", params)), fraction)
    config, small = shrink(package.config, apply_masks("channel", params, masks))
    pruned = build_tables(config, small)
    run_dir.mkdir(parents=True, exist_ok=True)
    pruned.save(run_dir / "model.jxlm")
    return pruned


def main() -> None:
    args = parse_args()
    original = load(args.model)
    train = TrainConfig(data=(str(args.data.resolve()),), steps=args.steps, batch_size=args.batch_size,
                        crop=args.crop, learning_rate=args.lr, seed=args.seed,
                        checkpoint_every=max(args.steps // 2, 1))
    runs = [("original", 0.0, 0, original, None)]
    print("== fine-tuned, unpruned", flush=True)
    tuned_dir = args.out / "finetuned"
    runs.append(("fine-tuned", 0.0, args.steps, Trainer(train, codec_task(original.config, initial_params=jax.device_get(original.params)), tuned_dir).run(), tuned_dir))
    for fraction in args.levels:
        runs.append(("one-shot", fraction, 0, one_shot(original, fraction, args.out / f"oneshot_{fraction:g}"), None))
        schedule = level_schedule(fraction, args.cuts, args.steps)
        print(f"== pruned {fraction:.0%}: {schedule}", flush=True)
        run_dir = args.out / f"pruned_{fraction:g}"
        runs.append(("pruned+tuned", fraction, args.steps, Trainer(train, prune_task(original, schedule), run_dir).run(), run_dir))

    images = read_images(args.kodak)  # evaluation only, never trained on
    lmbda = original.config.lmbda
    base = complexity(original)["kmacs"]
    rows = []
    for name, fraction, steps, package, run_dir in runs:
        label = f"{name}_{fraction:g}"
        print(f"== Kodak: {label}", flush=True)
        result = evaluate_package(package, images, args.out / f"kodak_{label}.json")
        cost = complexity(package)
        rows.append({"name": name, "fraction": fraction, "hidden": str(list(package.config.hidden_channels)),
                     "steps": steps, "train_s": training_seconds(run_dir) if run_dir else None, **cost,
                     "saved": 1.0 - cost["kmacs"] / base, **result, "rd_loss": rd_loss(result, lmbda)})
    tuned = rows[1]["rd_loss"]
    for row in rows:
        row["vs_tuned"] = row["rd_loss"] - tuned

    records = []
    for name in ("original", "fine-tuned", "one-shot", "pruned+tuned"):
        group = [r for r in rows if r["name"] == name]
        label = f"{name} (pruned {', '.join(f'{r['fraction']:.0%}' for r in group)})"
        records.append(validate_results({"name": label, "description": "channel pruning levels", "results": {
            "bpp": [r["bpp"] for r in group], "psnr-rgb": [r["psnr"] for r in group],
            "ms-ssim-rgb": [r["ms_ssim"] for r in group]}}, label))
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / "results.json", records)
    plot_rd(records, args.out / "rd.png", metrics=("psnr-rgb", "ms-ssim-rgb"), title="Kodak: channel pruning levels")
    (args.out / "prune.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                     "lambda": lmbda, "rows": rows}, indent=1))
    table = markdown_table(rows, COLUMNS)
    (args.out / "prune.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
