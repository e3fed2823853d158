"""Equal-budget training of context models against mbt2018-mean at similar decoder MACs.

Each architecture runs the same recipe in its own process (so several can run side by side) and
is charged the CPU time its process uses (user + system over all its threads, compile included):

    python experiments/equal_budget.py train --arch mbt2018-mean --width 0.65 --steps S --lambda-steps F \
        --data ../shared/data/train --kodak ../shared/data/kodak --out runs/budget/mbt2018-mean
    python experiments/equal_budget.py train --arch elic2022 --width 0.15 ...
    python experiments/equal_budget.py train --arch lalic --width 0.22 ...
    python experiments/equal_budget.py report --out runs/budget mbt2018-mean elic2022 lalic

The recipe (train_recipe.py's, per architecture): the quality-3 base from scratch, --steps steps
(batch 8 of 128x128 crops, peak lr --lr after --warmup steps, cosine decay), then qualities 1, 2
and 4 as --lambda-steps fine-tunes of the base. Steps are chosen per architecture so that the
CPU time comes out equal (measure the CPU seconds per step with a short run first). Each `train`
then codes the Kodak images (the first --images) to real bytes and writes OUT/results.json (CompressAI format) and
OUT/budget.json (steps, CPU and wall seconds per quality, decoder kMAC/pixel, parameters).
`report` prints the table and each curve's BD-rate and BD-PSNR against the anchor (the first
run named) and writes OUT/summary.json and OUT/rd.png. Never train on Kodak.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from timed_runs import cpu_seconds, train_run

BASE_QUALITY, FINE_TUNES = 3, (1, 2, 4)


def train(args: argparse.Namespace) -> None:
    """Train the base and its fine-tunes, then evaluate every quality on Kodak."""
    from jaxlic.codec import load
    from jaxlic.eval.evaluate import evaluate_model
    from jaxlic.eval.results import make_record, save_results
    from jaxlic.images import read_images
    from jaxlic.models import model_config
    from jaxlic.models.complexity import model_complexity
    from jaxlic.train.task import codec_task

    budget_path = args.out / "budget.json"
    budget = json.loads(budget_path.read_text()) if budget_path.is_file() else {"runs": {}}
    packages, base = {}, None
    for quality in (BASE_QUALITY, *FINE_TUNES):
        run_dir, name = args.out / f"q{quality}", f"q{quality}"
        if (run_dir / "model.jxlm").is_file() and name in budget["runs"]:
            package = load(run_dir / "model.jxlm")
        else:
            steps, lr, warmup = (args.steps, args.lr, args.warmup) if base is None else (args.lambda_steps, args.lambda_lr, 0)
            task = codec_task(model_config(args.arch, quality, args.width),
                              initial_params=None if base is None else base.params)
            cpu_start = cpu_seconds()
            package, wall = train_run(run_dir, task, data=tuple(map(str, args.data)), steps=steps, lr=lr,
                                      warmup=warmup, seed=args.seed, progress=args.progress)
            budget["runs"][name] = {"steps": steps, "lr": lr, "cpu_s": cpu_seconds() - cpu_start, "wall_s": wall}
            budget_path.write_text(json.dumps(budget, indent=2))  # a resumed run keeps the finished qualities' CPU
        packages[quality] = package
        base = packages[BASE_QUALITY]
    config = base.config
    complexity = model_complexity(config)
    images = read_images(args.kodak, args.images)
    budget |= {"arch": args.arch, "width": args.width, "N": config.N, "M": config.M, "params": complexity["params"],
               "dec_kmac_per_pixel": complexity["decoder_macs"] / 1e3, "kodak_images": len(images),
               "cpu_s": sum(run["cpu_s"] for run in budget["runs"].values())}
    budget_path.write_text(json.dumps(budget, indent=2))
    start = time.perf_counter()
    evaluations = [evaluate_model(packages[q], images) for q in sorted(packages)]
    label = f"{args.arch} w{args.width:g} ({budget['cpu_s'] / 60:.0f} CPU-min)"
    save_results(args.out / "results.json", make_record(label, "equal-budget recipe", evaluations, sorted(packages)))
    print(f"{label}: evaluated {len(images)} images x {len(packages)} qualities in {time.perf_counter() - start:.0f} s")


def bd_figures(anchor, test) -> dict:
    """BD-rate and BD-PSNR of `test` against `anchor`, None where the curves do not overlap."""
    from jaxlic.errors import DataError
    from jaxlic.eval.bdrate import bd_psnr, bd_rate

    try:
        return {"bd_rate": bd_rate(*anchor, *test), "bd_psnr": bd_psnr(*anchor, *test)}
    except DataError:
        return {"bd_rate": None, "bd_psnr": None}


def report(args: argparse.Namespace) -> None:
    """The table and BD figures against the anchor run."""
    from jaxlic.eval.plots import plot_rd
    from jaxlic.eval.results import curve, load_results

    runs = [(name, json.loads((args.out / name / "budget.json").read_text()),
             load_results(args.out / name / "results.json")[0]) for name in args.runs]
    counts = {budget.get("kodak_images") for _, budget, _ in runs}
    if len(counts) != 1:
        raise SystemExit(f"the runs were evaluated on different numbers of Kodak images: {counts}")
    anchor = curve(runs[0][2])
    summary = {}
    print(f"Kodak, {counts.pop()} images; BD against {args.runs[0]}")
    print(f"{'run':14s} {'N':>4s} {'M':>4s} {'dec kMAC/px':>11s} {'params':>11s} {'base steps':>10s} "
          f"{'CPU min':>8s} {'BD-rate':>8s} {'BD-PSNR':>8s}")
    for name, budget, record in runs:
        rate, psnr = curve(record)
        row = {"dec_kmac_per_pixel": budget["dec_kmac_per_pixel"], "params": budget["params"],
               "cpu_min": budget["cpu_s"] / 60, "steps": {q: r["steps"] for q, r in budget["runs"].items()},
               "bpp": rate, "psnr": psnr, **bd_figures(anchor, (rate, psnr))}
        summary[name] = row
        bd = "no overlap with the anchor" if row["bd_rate"] is None else f"{row['bd_rate']:+7.2f}% {row['bd_psnr']:+7.3f}"
        print(f"{name:14s} {budget['N']:4d} {budget['M']:4d} {row['dec_kmac_per_pixel']:11.1f} {row['params']:11,d} "
              f"{budget['runs']['q3']['steps']:10d} {row['cpu_min']:8.1f} {bd}  "
              f"(bpp {min(rate):.3f}..{max(rate):.3f}, PSNR {min(psnr):.2f}..{max(psnr):.2f})")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_rd([record for _, _, record in runs], args.out / "rd.png", title="Kodak, equal CPU budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train")
    run.add_argument("--arch", required=True)
    run.add_argument("--width", type=float, required=True)
    run.add_argument("--steps", type=int, required=True, help="base (quality 3) steps")
    run.add_argument("--lambda-steps", type=int, required=True, help="steps of each fine-tune")
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--warmup", type=int, default=100)
    run.add_argument("--lambda-lr", type=float, default=3e-4)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--data", type=Path, action="append", required=True)
    run.add_argument("--kodak", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--images", type=int, default=None, help="evaluate on the first IMAGES Kodak images (default all)")
    run.add_argument("--progress", action="store_true")
    summary = commands.add_parser("report")
    summary.add_argument("--out", type=Path, required=True)
    summary.add_argument("runs", nargs="+", help="run folders under --out; the first is the anchor")
    args = parser.parse_args()
    train(args) if args.command == "train" else report(args)


if __name__ == "__main__":
    main()
