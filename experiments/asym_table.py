"""AsymLLIC substitution table: decoder kMAC/pixel and parameters vs Kodak RD, stage by stage.

Starts from a trained package (default the shipped ref-hyperprior:3), replaces one g_s block per
stage by a lighter one (jaxlic/train/asym.py: each stage initialized from the previous, trained
for RD + distillation from it, encoder frozen), then trains the same final light g_s from a
fresh init on the same frozen encoder, RD only, for the stages' total steps (the baseline). With
--encoder-check it also reruns stage 1 with the encoder trained at 0.1x the learning rate (and
latent distillation), the measurement behind the frozen default. Trains on ../shared/data/train;
Kodak is evaluation only (real bytes). Writes `table.md` and `table.json` to --out.

    nice -n 10 .venv/bin/python experiments/asym_table.py --out runs/asym
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_common import KODAK, TRAIN, evaluate_package, markdown_table, rd_loss, training_seconds  # noqa: E402
from jaxlic.images import read_images  # noqa: E402
from jaxlic.pretrained import load_model  # noqa: E402
from jaxlic.train.asym import Substitution, decoder_complexity, run_scratch, run_stages  # noqa: E402
from jaxlic.train.loop import TrainConfig  # noqa: E402

STAGES = ("2=res", "3=deconv3", "1=res", "2=res:24")
COLUMNS = [("model", "name", "s"), ("g_s blocks", "blocks", "s"), ("g_s channels", "channels", "s"),
           ("dec kMAC/px", "decoder_kmacs", ".2f"), ("dec params", "decoder_params", ",d"), ("steps", "steps", "d"),
           ("bpp", "bpp", ".4f"), ("PSNR dB", "psnr", ".2f"), ("RD loss", "rd_loss", ".4f"),
           ("train s", "seconds", ".0f")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", default="ref-hyperprior:3")
    p.add_argument("--out", type=Path, default=Path("runs/asym"))
    p.add_argument("--data", type=Path, default=TRAIN)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--stage", action="append", default=None, help=f"BLOCK=KIND[:CHANNELS]; default {' '.join(STAGES)}")
    p.add_argument("--steps", type=int, default=400, help="steps per stage")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-check", action="store_true", help="also stage 1 with the encoder at 0.1x lr")
    return p.parse_args()


def row(name: str, package, steps: int, result: dict, seconds: float | None) -> dict:
    c = decoder_complexity(package)
    return {"name": name, "blocks": " ".join(c["blocks"]), "channels": "/".join(map(str, c["g_s_channels"])),
            "decoder_kmacs": c["decoder_kmacs"], "decoder_params": c["decoder_params"], "steps": steps,
            "bpp": result["bpp"], "psnr": result["psnr"], "rd_loss": rd_loss(result, package.config.lmbda),
            "seconds": seconds}


def main() -> int:
    args = parse_args()
    subs = [Substitution.parse(s) for s in (args.stage or STAGES)]
    start = load_model(args.init)
    train = TrainConfig(data=(str(args.data),), steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                        learning_rate=args.lr, seed=args.seed, checkpoint_every=100, log_every=10)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    staged = run_stages(start, subs, train, args.out / "staged")
    scratch = run_scratch(start, subs, train, args.out / "scratch")
    finetuned = None
    if args.encoder_check:
        finetuned = run_stages(start, subs[:1], train, args.out / "encoder_0.1", latent_weight=1.0,
                               encoder_lr_scale=0.1)[0]
    images = read_images(args.kodak, progress=True)
    rows = [row(f"start ({args.init})", start, 0, evaluate_package(start, images, args.out / "eval_start.json"), None)]
    for k, (sub, package) in enumerate(zip(subs, staged), 1):
        run = args.out / "staged" / f"stage{k}"
        rows.append(row(f"stage {k}: {sub}", package, k * args.steps,
                        evaluate_package(package, images, run / "kodak.json"), training_seconds(run)))
    rows.append(row("final g_s from scratch", scratch, len(subs) * args.steps,
                    evaluate_package(scratch, images, args.out / "scratch" / "kodak.json"),
                    training_seconds(args.out / "scratch")))
    if finetuned is not None:
        run = args.out / "encoder_0.1" / "stage1"
        rows.append(row(f"stage 1: {subs[0]}, encoder at 0.1x lr", finetuned, args.steps,
                        evaluate_package(finetuned, images, run / "kodak.json"), training_seconds(run)))
    table = markdown_table(rows, COLUMNS)
    (args.out / "table.md").write_text(table)
    (args.out / "table.json").write_text(json.dumps({"rows": rows, "stages": [str(s) for s in subs],
                                                     "train": vars(train) | {"data": list(train.data)},
                                                     "wall_seconds": time.time() - began}, indent=1))
    print(table)
    print(f"wrote {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
