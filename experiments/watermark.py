"""The watermarking study: QAW runs, per-user copies, tracing and robustness (issue 'Security').

    # 1. QAW next to the quantization study's QAT runs (same float model, calibration, recipe):
    python experiments/watermark.py embed --runs runs/quant --data ../shared/data/train
    # 2. per-user copies: short QAW fine-tunes of the q3 owner copy, one per user id
    python experiments/watermark.py users --runs runs/quant --data ../shared/data/train
    # 3. trace every copy and the unmarked QAT model; attack the q3 copy and measure BER + PSNR
    python experiments/watermark.py attack --runs runs/quant --kodak ../shared/data/kodak \
        --out runs/quant/watermark.json
    # RD cost (QAW vs QAT on all 24 Kodak images): experiments/quant_kodak.py ("qaw" variant)

The owner key is created once at RUNS/owner.wmkey (0600; it stays out of the repository).
Runs resume where they stopped. Attacks change the integer package an attacker holds:
- noise: Gaussian noise of sigma = s x the layer's weight std on every decoder convolution's
  int8 weights, rounded and clipped;
- prune: the smallest |w| fraction of each decoder convolution's weights set to 0;
- requantize: weights rounded to a coarser grid (2^b: 8 - b significant bits), then clipped;
- fine-tune: N steps of plain QAT (no watermark term) of the copy's float parameters on data the
  owner did not use (scikit-image's photos), exported again.
The attacker's loss is the PSNR change on the first --images Kodak images (real bitstreams).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from timed_runs import train_run

GDN = "gdn"
QUALITIES = (1, 2, 3, 4)
TRACE_QUALITY = 3
USER_IDS = {f"user{i:02d}": 1000 + 37 * i for i in range(1, 11)}
OWNER_COPY_USER = 1


def _key(runs: Path):
    from jaxlic.secure.watermark import WatermarkKey

    path = runs / "owner.wmkey"
    if not path.exists():
        WatermarkKey.generate().save(path)
    return WatermarkKey.load(path)


def _train(args, run_dir: Path, task, steps: int, lr: float, data: tuple[str, ...]):
    return train_run(run_dir, task, data=data, steps=steps, lr=lr, seed=args.seed, log_every=25)[0]


def _inputs(run: Path):
    from jaxlic.codec import load
    from jaxlic.quant.lowering import Calibration

    return load(run / "float" / "model.jxlm"), Calibration.from_json((run / "calibration.json").read_text())


def embed(args) -> None:
    """QAW with the QAT recipe of the quantization study (300 steps, lr 1e-4) at each quality."""
    from jaxlic.quant.qat import qat_task
    from jaxlic.secure.watermark import WatermarkTerm

    key = _key(args.runs)
    for quality in QUALITIES:
        run = args.runs / f"{GDN}-q{quality}"
        base, calibration = _inputs(run)
        term = WatermarkTerm(key, OWNER_COPY_USER, args.strength)
        _train(args, run / "qaw", qat_task(base, calibration, extra_terms=[term]), 300, 1e-4, args.data)


def users(args) -> None:
    """Per-user copies: --user-steps of QAW from the owner copy's parameters, per user id."""
    from jaxlic.codec import load
    from jaxlic.quant.qat import qat_task
    from jaxlic.secure.watermark import WatermarkTerm

    key = _key(args.runs)
    run = args.runs / f"{GDN}-q{TRACE_QUALITY}"
    _, calibration = _inputs(run)
    owner_copy = load(run / "qaw" / "model.jxlm")
    for name, uid in USER_IDS.items():
        task = qat_task(owner_copy.params, calibration, config=owner_copy.config,
                        extra_terms=[WatermarkTerm(key, uid, args.strength)])
        _train(args, run / "users" / name, task, args.user_steps, args.user_lr, args.data)


def _with_weights(package, change):
    """A copy of an integer package whose decoder convolution weights went through `change`."""
    from jaxlic.secure.watermark import integer_weights

    graph = package.integer
    constants = dict(graph.constants)
    layers = integer_weights(package)
    for op in graph.ops:
        if op.name in layers:
            w = constants[op.consts["weight"]].astype(np.float64)
            constants[op.consts["weight"]] = np.clip(np.round(change(w)), -127, 127).astype(np.int8)
    return dataclasses.replace(package, integer=dataclasses.replace(graph, constants=constants))


def _psnr(package, images) -> tuple[float, float]:
    from jaxlic.codec import compress, decompress
    from jaxlic.eval.metrics import psnr

    bpp, quality = [], []
    for image in images:
        data = compress(package, image)
        bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
        quality.append(psnr(image, decompress(package, data)))
    return float(np.mean(bpp)), float(np.mean(quality))


def attack(args) -> None:
    """Trace table, then the robustness table of the q3 owner copy."""
    from jaxlic.codec import load
    from jaxlic.images import list_images, read_image
    from jaxlic.quant.qat import qat_task
    from jaxlic.secure.watermark import extract, trace

    key = _key(args.runs)
    run = args.runs / f"{GDN}-q{TRACE_QUALITY}"
    report: dict = {"key": key.fingerprint, "trace": [], "robustness": [], "embed": []}
    for quality in QUALITIES:
        e = extract(load(args.runs / f"{GDN}-q{quality}" / "qaw" / "model.jxlm"), key)
        report["embed"].append({"quality": quality, "ber": e.bit_error_rate(OWNER_COPY_USER), **e.summary()})
        print(f"q{quality} owner copy: BER {e.bit_error_rate(OWNER_COPY_USER):.4f}, owner errors {e.owner_errors}, "
              f"p-value {e.p_value:.2e}", flush=True)
    suspects = {name: run / "users" / name / "model.jxlm" for name in USER_IDS}
    suspects |= {"unmarked (QAT)": run / "qat" / "model.jxlm", "unmarked (PTQ)": run / "ptq.jxlm"}
    for name, path in suspects.items():
        result = trace(load(path), key, USER_IDS)
        report["trace"].append({"copy": name, "traced_to": result.user, "owner": result.extraction.is_owner,
                                "user_distance": result.distances.get(name)})
        print(f"trace {name:16s} -> {result.user}  (owner errors {result.extraction.owner_errors}, "
              f"own-id distance {result.distances.get(name)}, threshold {result.threshold})", flush=True)

    images = [read_image(p) for p in list_images(args.kodak)[: args.images]]
    copy = load(run / "qaw" / "model.jxlm")
    base_bpp, base_psnr = _psnr(copy, images)
    rng = np.random.default_rng(args.seed)
    attacks = [("none", 0, lambda w: w)]
    attacks += [("noise", s, lambda w, s=s: w + rng.normal(0.0, s * w.std(), w.shape)) for s in (0.1, 0.3, 0.5, 1.0)]
    attacks += [("prune", f, lambda w, f=f: np.where(np.abs(w) < np.quantile(np.abs(w), f), 0.0, w))
                for f in (0.1, 0.3, 0.5)]
    attacks += [("requantize", b, lambda w, b=b: np.round(w / 2**b) * 2**b) for b in (1, 2, 3)]
    rows = [(name, strength, _with_weights(copy, change)) for name, strength, change in attacks]
    for steps in args.finetune_steps:
        _, calibration = _inputs(run)
        task = qat_task(copy.params, calibration, config=copy.config)
        rows.append(("fine-tune", steps, _train(args, run / "attack" / f"finetune{steps}", task, steps, 1e-4, ())))
    for name, strength, package in rows:
        e = extract(package, key)
        bpp, quality = _psnr(package, images)
        row = {"attack": name, "strength": strength, "ber": e.bit_error_rate(OWNER_COPY_USER),
               "owner_errors": e.owner_errors, "detected": e.is_owner, "bpp": bpp, "psnr": quality,
               "psnr_loss_db": base_psnr - quality}
        report["robustness"].append(row)
        print(f"{name:10s} {strength!s:>5s}: BER {row['ber']:.3f}, owner errors {e.owner_errors:2d} "
              f"({'detected' if e.is_owner else 'MISSED'}), {bpp:.4f} bpp, PSNR loss {row['psnr_loss_db']:+.3f} dB",
              flush=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["embed", "users", "attack"])
    parser.add_argument("--runs", type=Path, required=True, help="the quantization study's run folder")
    parser.add_argument("--data", type=str, action="append", default=[], help="training folder (repeatable)")
    parser.add_argument("--kodak", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--strength", type=float, default=1.0, help="weight of the watermark loss")
    parser.add_argument("--user-steps", type=int, default=100)
    parser.add_argument("--user-lr", type=float, default=3e-4)
    parser.add_argument("--finetune-steps", type=int, nargs="*", default=[100, 300])
    parser.add_argument("--images", type=int, default=4, help="Kodak images for the attacker's PSNR")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.data = tuple(args.data)
    if args.phase == "attack" and (args.kodak is None or args.out is None):
        parser.error("attack needs --kodak and --out")
    {"embed": embed, "users": users, "attack": attack}[args.phase](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
