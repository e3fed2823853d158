"""Train the models of the quantization study (CPU-sized; every run is a jaxlic Trainer run).

    # phase 1: float models. One base model at --base-quality, then lambda fine-tunes of it to
    # the other qualities (cheaper than training each from scratch).
    python experiments/quant_train.py float --data ../shared/data/train --out runs/quant
    # phase 2: per model: calibration, PTQ export, QAT fine-tune (integer package) and the float
    # control fine-tune (same recipe and steps, float decoder).
    python experiments/quant_train.py quant --data ../shared/data/train --out runs/quant

Writes OUT/<gdn>-q<quality>/{float,qat,control}/ (Trainer run directories with model.jxlm),
ptq.jxlm and calibration.json. Never train on Kodak. Runs resume where they stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from timed_runs import train_run


def _train(args, run_dir: Path, task, steps: int, lr: float, warmup: int = 0):
    return train_run(run_dir, task, data=tuple(map(str, args.data)), steps=steps, lr=lr, warmup=warmup,
                     batch_size=args.batch_size, crop=args.crop, seed=args.seed)[0]


def float_phase(args: argparse.Namespace) -> None:
    """Base model at --base-quality, then lambda fine-tunes to the other qualities."""
    from jaxlic.codec import load
    from jaxlic.models import model_config
    from jaxlic.train.task import codec_task

    for gdn in args.gdn:
        base_dir = args.out / f"{gdn}-q{args.base_quality}" / "float"
        base_config = model_config(args.arch, args.base_quality, args.width, gdn)
        _train(args, base_dir, codec_task(base_config), args.steps, args.lr, args.warmup)
        for quality in args.qualities:
            if quality != args.base_quality:
                config = model_config(args.arch, quality, args.width, gdn)
                start = load(base_dir / "model.jxlm").params
                _train(args, args.out / f"{gdn}-q{quality}" / "float", codec_task(config, initial_params=start),
                       args.lambda_steps, args.lambda_lr)


def quant_phase(args: argparse.Namespace) -> None:
    """Calibrate, export PTQ, fine-tune with (QAT) and without (control) fake quantization."""
    from jaxlic.codec import load
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import Calibration, calibrate
    from jaxlic.quant.qat import calibration_batches, qat_task

    for gdn in args.gdn:
        for quality in args.qualities:
            run = args.out / f"{gdn}-q{quality}"
            base = load(run / "float" / "model.jxlm")
            calibration_file = run / "calibration.json"
            if calibration_file.exists():
                calibration = Calibration.from_json(calibration_file.read_text())
            else:
                batches = calibration_batches(tuple(map(str, args.data)), seed=args.seed + 1)
                calibration = calibrate(base.config, base.params, batches)
                calibration_file.write_text(json.dumps(calibration.to_json()))
            integerize(base.config, base.params, calibration).save(run / "ptq.jxlm")
            _train(args, run / "qat", qat_task(base, calibration), args.ft_steps, args.ft_lr)
            _train(args, run / "control", qat_task(base, calibration, fake_quant=False), args.ft_steps, args.ft_lr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["float", "quant"])
    parser.add_argument("--data", type=Path, action="append", required=True, help="training folder (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="bmshj2018-hyperprior")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--gdn", nargs="+", default=["gdn", "simplified"])
    parser.add_argument("--qualities", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--base-quality", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000, help="base model steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--lambda-steps", type=int, default=500, help="steps of each lambda fine-tune")
    parser.add_argument("--lambda-lr", type=float, default=3e-4)
    parser.add_argument("--ft-steps", type=int, default=300, help="QAT and control fine-tune steps")
    parser.add_argument("--ft-lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (float_phase if args.phase == "float" else quant_phase)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
