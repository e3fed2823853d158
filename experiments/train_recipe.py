"""The CPU training recipe, evaluated on Kodak, against Pillow JPEG and against CompressAI trained
the same way.

    python experiments/train_recipe.py --data ../shared/data/train --kodak ../shared/data/kodak \
        --out runs/recipe [--only jaxlic|compressai|report]
    # the same recipe, longer, jaxlic only (report without a CompressAI curve):
    python experiments/train_recipe.py ... --out runs/recipe-long --steps 7000 --lambda-steps 1500 --only jaxlic
    python experiments/train_recipe.py ... --out runs/recipe-long --steps 7000 --lambda-steps 1500 --only report

The recipe (bmshj2018-factorized at width 0.5, i.e. N=64, M=96; batch 8 of 128x128 crops;
Adam with global-norm clipping at 1.0; rate + lambda * 255^2 * MSE with CompressAI's lambdas):
1. the base model at --base-quality: --steps steps, peak lr --lr after --warmup linear warm-up
   steps, cosine decay to 5% of the peak;
2. every other quality: a fine-tune of the base to its lambda, --lambda-steps steps from
   --lambda-lr (no warm-up, cosine decay).

Both libraries run that recipe on the identical batches: jaxlic's deterministic pipeline
(batch i from (seed, i)) is written once to OUT/batches.npy (uint8) and CompressAI's peer
(`peers/compressai_peer.py train`) reads it. Each side then codes every Kodak image to real bytes;
PSNR and MS-SSIM are measured by jaxlic.eval.metrics on both sides' 8-bit reconstructions.

Writes OUT/jaxlic/q<Q>/ (Trainer run directories with model.jxlm), OUT/compressai/q<Q>/ (the
peer's state.npz, metrics.jsonl, eval.npz), OUT/results.json (CompressAI-format records:
jaxlic, CompressAI, JPEG), OUT/rd.png and OUT/summary.json (train times, BD-rates). Finished
pieces are kept, so re-running continues where it stopped. Never train on Kodak.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from timed_runs import train_run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

ARCH = "bmshj2018-factorized"
JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)


def recipe_steps(args: argparse.Namespace, quality: int) -> tuple[int, float, int]:
    """(steps, peak learning rate, warm-up steps) of one quality's run."""
    if quality == args.base_quality:
        return args.steps, args.lr, args.warmup
    return args.lambda_steps, args.lambda_lr, 0


def ordered_qualities(args: argparse.Namespace) -> list[int]:
    """The base quality first (the others start from it)."""
    return [args.base_quality] + [q for q in args.qualities if q != args.base_quality]


# ----------------------------------------------------------------------------- jaxlic


def train_jaxlic(args: argparse.Namespace, seconds: dict[str, float]) -> dict[str, float]:
    """Train every quality with jaxlic's Trainer; seconds of training per quality (kept from
    `seconds` for runs that were already finished)."""
    from jaxlic.codec import load
    from jaxlic.models import model_config
    from jaxlic.train.task import codec_task

    seconds = dict(seconds)
    base = None  # the base model's package, which the fine-tunes start from
    for quality in ordered_qualities(args):
        run_dir, name = args.out / "jaxlic" / f"q{quality}", f"q{quality}"
        if (run_dir / "model.jxlm").is_file() and name in seconds:
            package = load(run_dir / "model.jxlm")
        else:
            steps, lr, warmup = recipe_steps(args, quality)
            task = codec_task(model_config(ARCH, quality, args.width), initial_params=None if base is None else base.params)
            package, seconds[name] = train_run(run_dir, task, data=tuple(map(str, args.data)), steps=steps, lr=lr,
                                               warmup=warmup, batch_size=args.batch_size, crop=args.crop,
                                               seed=args.seed, progress=True)
        if quality == args.base_quality:
            base = package
    return seconds


def eval_jaxlic(args: argparse.Namespace, images) -> list:
    from jaxlic.codec import load
    from jaxlic.eval.evaluate import evaluate_model

    return [evaluate_model(load(args.out / "jaxlic" / f"q{q}" / "model.jxlm"), images) for q in args.qualities]


# ----------------------------------------------------------------------------- CompressAI


def write_batches(args: argparse.Namespace) -> Path:
    """jaxlic's training batches 0..max(steps) as one uint8 array, for the peer."""
    from jaxlic.train.data import Batches, ImageSet

    path = args.out / "batches.npy"
    count = max(recipe_steps(args, q)[0] for q in args.qualities)
    if path.is_file() and np.load(path, mmap_mode="r").shape[0] >= count:
        return path
    batches = Batches(ImageSet.from_folders(*args.data), args.batch_size, args.crop, args.seed)
    out = np.lib.format.open_memmap(path.with_suffix(".partial.npy"), mode="w+", dtype=np.uint8,
                                    shape=(count, args.batch_size, args.crop, args.crop, 3))
    for i in range(count):
        out[i] = np.rint(batches.batch(i) * 255.0).astype(np.uint8)
    out.flush()
    del out
    path.with_suffix(".partial.npy").replace(path)
    return path


def train_compressai(args: argparse.Namespace, kodak: list[Path]) -> dict[str, float]:
    """Run the same recipe through the peer; seconds of training per quality."""
    from jaxlic.models import model_config
    from peer_utils import run_peer_json

    batches = write_batches(args)
    seconds = {}
    for quality in ordered_qualities(args):
        steps, lr, warmup = recipe_steps(args, quality)
        config = model_config(ARCH, quality, args.width)
        run_dir = args.out / "compressai" / f"q{quality}"
        if not (run_dir / "train.json").is_file():
            command = ["train", "--batches", batches, "--steps", steps, "--N", config.N, "--M", config.M,
                       "--lmbda", config.lmbda, "--lr", lr, "--warmup", warmup, "--seed", args.seed,
                       "--threads", args.threads, "--out", run_dir, "--eval-images", *kodak]
            if quality != args.base_quality:
                command += ["--init-state", args.out / "compressai" / f"q{args.base_quality}" / "state.npz"]
            run_peer_json(command, timeout=6 * 3600, show_progress=True)
        seconds[f"q{quality}"] = json.loads((run_dir / "train.json").read_text())["train_s"]
        print(f"compressai q{quality}: {steps} steps in {seconds[f'q{quality}']:.0f} s", flush=True)
    return seconds


def eval_compressai(args: argparse.Namespace, images) -> list:
    """Evaluations from the peer's real bytes and 8-bit reconstructions."""
    from jaxlic.eval.evaluate import Evaluation, measure

    evaluations = []
    for quality in args.qualities:
        results = []
        with np.load(args.out / "compressai" / f"q{quality}" / "eval.npz") as data:
            for i, (name, image) in enumerate(images):
                if Path(str(data[f"{i}/name"])).stem != name:
                    raise RuntimeError(f"CompressAI's eval of q{quality} is not of {args.kodak}; delete it and re-run")
                encode_s, decode_s = data[f"{i}/times"]
                results.append(measure(name, image, int(data[f"{i}/nbytes"]), data[f"{i}/x_hat"],
                                       float(encode_s), float(decode_s)))
        evaluations.append(Evaluation(tuple(results)))
    return evaluations


# ----------------------------------------------------------------------------- report


def report(args: argparse.Namespace, train_seconds: dict) -> dict:
    from jaxlic.errors import DataError
    from jaxlic.eval import codecs
    from jaxlic.eval.bdrate import bd_psnr, bd_rate
    from jaxlic.eval.plots import plot_rd
    from jaxlic.eval.reference_curves import reference_curve
    from jaxlic.eval.results import curve, make_record, save_results
    from jaxlic.images import read_images

    images = read_images(args.kodak)
    description = (f"width {args.width}; base q{args.base_quality} {args.steps} steps, "
                   f"fine-tunes {args.lambda_steps} steps; batch {args.batch_size}x{args.crop}^2")
    ours = make_record(f"jaxlic {ARCH}", description, eval_jaxlic(args, images), args.qualities)
    trained_peer = all((args.out / "compressai" / f"q{q}" / "eval.npz").is_file() for q in args.qualities)
    peer = make_record(f"CompressAI {ARCH}", description, eval_compressai(args, images), args.qualities) if trained_peer else None
    jpeg = make_record("JPEG (Pillow)", "4:2:0", codecs.sweep("jpeg", images, JPEG_QUALITIES), JPEG_QUALITIES)
    records = [r for r in (ours, peer, jpeg) if r is not None]
    save_results(args.out / "results.json", records)
    plot_rd(records, args.out / "rd.png", metrics=("psnr-rgb", "ms-ssim-rgb"),
            references=[reference_curve("bmshj2018-factorized")], title=f"Kodak ({len(images)} images)")

    def bd(test, anchor) -> dict:
        try:
            return {"bd_rate_percent": bd_rate(*curve(anchor), *curve(test)),
                    "bd_psnr_db": bd_psnr(*curve(anchor), *curve(test))}
        except DataError as err:  # e.g. curves that do not overlap
            return {"error": str(err)}

    summary = {
        "recipe": vars(args) | {"data": list(map(str, args.data)), "kodak": str(args.kodak), "out": str(args.out)},
        "train_seconds": train_seconds,
        "jaxlic": ours["results"], "jaxlic_vs_jpeg": bd(ours, jpeg),
    }
    if peer is not None:
        summary |= {"compressai": peer["results"], "compressai_vs_jpeg": bd(peer, jpeg),
                    "jaxlic_vs_compressai": bd(ours, peer)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\n{'curve':34s} {'quality':>7s} {'bpp':>7s} {'PSNR':>6s} {'MS-SSIM':>7s}")
    for record in records[:-1]:
        results = record["results"]
        for i, q in enumerate(args.qualities):
            print(f"{record['name']:34s} {q:7d} {results['bpp'][i]:7.4f} {results['psnr-rgb'][i]:6.2f} "
                  f"{results['ms-ssim-rgb'][i]:7.4f}")
    for key in ("jaxlic_vs_jpeg", "compressai_vs_jpeg", "jaxlic_vs_compressai")[:1 if peer is None else 3]:
        value = summary[key]
        print(f"{key:22s} " + (value["error"] if "error" in value else
                               f"BD-rate {value['bd_rate_percent']:+7.2f} %  BD-PSNR {value['bd_psnr_db']:+.3f} dB"))
    print(f"wrote {args.out / 'results.json'}, {args.out / 'rd.png'}, {args.out / 'summary.json'}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", required=True, help="training folder (repeatable)")
    parser.add_argument("--kodak", type=Path, required=True, help="evaluation images (never trained on)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", choices=["jaxlic", "compressai", "report"], default=None)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--qualities", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--base-quality", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000, help="base model steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--lambda-steps", type=int, default=800, help="steps of each lambda fine-tune")
    parser.add_argument("--lambda-lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the peer")
    args = parser.parse_args()
    if args.base_quality not in args.qualities:
        parser.error("--base-quality must be one of --qualities")
    args.out.mkdir(parents=True, exist_ok=True)
    import jaxlic  # noqa: F401  (sets XLA's CPU flags before jax starts)
    from jaxlic.images import list_images

    seconds_file = args.out / "train_seconds.json"
    seconds = json.loads(seconds_file.read_text()) if seconds_file.is_file() else {}
    if args.only in (None, "jaxlic"):
        seconds["jaxlic"] = train_jaxlic(args, seconds.get("jaxlic", {}))
        seconds_file.write_text(json.dumps(seconds, indent=1))
    if args.only in (None, "compressai"):
        seconds["compressai"] = train_compressai(args, [str(p) for p in list_images(args.kodak)])
        seconds_file.write_text(json.dumps(seconds, indent=1))
    if args.only in (None, "report"):
        report(args, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
