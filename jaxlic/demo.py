"""The main job, end to end: code real images with the shipped reference models and compare them
with JPEG at equal rate; fine-tune one for a few steps to show training; then compile the shipped
integer model for VTA (the `sim` board) into a deployment bundle and decode the evaluation images
through it, checking they equal the integer package's own decode. `from_scratch` trains a small
model instead of using the shipped ones (and quantizes it after training).

Uses the shared data (`train/` folders and `kodak/`) when it is there: $JAXLIC_SHARED_DATA, by
default ../shared/data beside the repository (whatever the working directory); else
scikit-image's bundled photos (four to train on, two held out to evaluate), so it runs on any
machine.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxlic.eval import codecs
from jaxlic.eval.bdrate import bd_rate
from jaxlic.eval.evaluate import evaluate_model
from jaxlic.eval.plots import plot_rd
from jaxlic.eval.reference_curves import reference_curve
from jaxlic.eval.results import make_record, save_results
from jaxlic.images import default_images, read_images
from jaxlic.models import model_config
from jaxlic.pretrained import load_pretrained, manifest
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.task import codec_task

REPOSITORY = Path(__file__).resolve().parents[1]
HELD_OUT = ("hubble_deep_field", "motorcycle")
DEMO_MODEL = "bmshj2018-factorized"
REFERENCE_MODEL = "ref-hyperprior"
REFERENCE_INTEGER = "ref-hyperprior-int"
JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def demo_data(kodak_images: int) -> tuple[tuple[str, ...], list[tuple[str, np.ndarray]], str]:
    """(training folders, evaluation images, description): shared data if present, else built-in."""
    shared = Path(os.environ.get("JAXLIC_SHARED_DATA", REPOSITORY.parent / "shared" / "data"))
    train, kodak = shared / "train", shared / "kodak"
    if train.is_dir() and kodak.is_dir():
        evaluation = read_images(kodak, kodak_images)
        return (str(train),), evaluation, f"Kodak ({len(evaluation)} images)"
    evaluation = [(n, a) for n, a in default_images() if n in HELD_OUT]
    return (), evaluation, "scikit-image held-out photos"


def run_demo(out: Path, steps: int, kodak_images: int = 6, progress: bool = True,
             from_scratch: bool = False) -> dict:
    """Compare the shipped models (or, `from_scratch`, a model trained for `steps`) with JPEG,
    fine-tune for `steps`, write results and an RD plot to `out`, deploy; return the summary."""
    folders, images, where = demo_data(kodak_images)
    print(f"evaluating on {where}; training data: {folders[0] if folders else 'the built-in images'}")
    jpeg = codecs.sweep("jpeg", images, JPEG_QUALITIES, progress=progress)
    jpeg_record = make_record("JPEG (Pillow)", "4:2:0", jpeg, JPEG_QUALITIES)
    if from_scratch:
        learned, integer_path = _trained_from_scratch(out, steps, folders, images, progress)
        extra = {}
    else:
        learned, integer_path, extra = _shipped_and_fine_tuned(out, steps, folders, images, progress)
    records = [make_record(name, description, evaluations) for name, description, evaluations in learned]
    save_results(out / "results.json", [*records, jpeg_record])
    references = [reference_curve("JPEG"), reference_curve("bmshj2018-factorized")] if folders else []
    plot_rd([*records, jpeg_record], out / "rd.png", references=references, title=where)

    jpeg_bpp, jpeg_psnr = [e.bpp for e in jpeg], [e.psnr for e in jpeg]
    print(f"\n{'':28s} {'bpp':>6s} {'PSNR dB':>8s} {'JPEG dB at that bpp':>20s} {'gain dB':>8s}")
    points = []
    for name, _, evaluations in learned:
        for e in evaluations:
            at_rate = float(np.interp(e.bpp, jpeg_bpp, jpeg_psnr))
            points.append({"model": name, "bpp": e.bpp, "psnr": e.psnr, "ms_ssim": e.ms_ssim,
                           "jpeg_psnr_at_same_bpp": at_rate, "gain_db": e.psnr - at_rate,
                           "encode_s": e.mean("encode_time"), "decode_s": e.mean("decode_time")})
            print(f"{name:28s} {e.bpp:6.3f} {e.psnr:8.2f} {at_rate:20.2f} {e.psnr - at_rate:+8.2f}")
    curve = learned[0][2]
    summary = {"images": where, "points": points, **extra}
    if len(curve) > 1:
        summary["bd_rate_vs_jpeg"] = bd_rate(jpeg_bpp, jpeg_psnr, [e.bpp for e in curve], [e.psnr for e in curve])
        print(f"BD-rate of {learned[0][0]} vs JPEG: {summary['bd_rate_vs_jpeg']:+.1f}% "
              "(negative: fewer bytes for the same PSNR)")
    print(f"wrote {out / 'results.json'}, {out / 'rd.png'}")
    summary["deploy"] = deploy_demo(integer_path, images, out)
    return summary


def _shipped_and_fine_tuned(out: Path, steps: int, folders: tuple[str, ...], images, progress: bool):
    """The shipped reference curve, one fine-tune of its top quality to the next lambda, and the
    shipped integer model written to `out` for deployment."""
    qualities = sorted(e["quality"] for e in manifest() if e["name"] == REFERENCE_MODEL)
    packages = [load_pretrained(REFERENCE_MODEL, q) for q in qualities]
    shipped = [evaluate_model(p, images) for p in _progress(packages, "shipped models", progress)]
    top = packages[-1]
    target = dataclasses.replace(top.config, quality=top.config.quality + 1,
                                 lmbda=model_config(top.config.arch, top.config.quality + 1).lmbda)
    print(f"fine-tuning {REFERENCE_MODEL}:{qualities[-1]} for {steps} steps to lambda {target.lmbda} "
          f"(quality {target.quality})")
    config = TrainConfig(steps=steps, batch_size=8, crop=128, learning_rate=1e-4, warmup=0,
                         checkpoint_every=max(steps, 1), data=folders)
    tuned = Trainer(config, codec_task(target, initial_params=top.params), out / "fine-tune", progress=progress).run()
    fine_tuned = evaluate_model(tuned, images)
    integer_path = out / "model-int8.jxlm"
    load_pretrained(REFERENCE_INTEGER, qualities[len(qualities) // 2]).save(integer_path)
    learned = [(f"jaxlic {REFERENCE_MODEL}", f"shipped, qualities {qualities}", shipped),
               (f"{REFERENCE_MODEL} fine-tuned", f"quality {target.quality}, {steps} steps", [fine_tuned])]
    return learned, integer_path, {"fine_tune_steps": steps}


def _trained_from_scratch(out: Path, steps: int, folders: tuple[str, ...], images, progress: bool):
    """A small model trained for `steps`, and its post-training integer package in `out`."""
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate
    from jaxlic.quant.qat import calibration_batches

    config = TrainConfig(steps=steps, batch_size=8, crop=128, learning_rate=2e-3, warmup=50,
                         checkpoint_every=max(steps // 4, 1), data=folders)
    model = model_config(DEMO_MODEL, quality=4, width=0.5)
    print(f"training {model.arch} (width {model.width}) from scratch for {steps} steps")
    package = Trainer(config, codec_task(model), out / "run", progress=progress).run()
    calibration = calibrate(package.config, package.params, calibration_batches(folders, crop=128))
    integer_path = out / "model-int8.jxlm"
    integerize(package.config, package.params, calibration).save(integer_path)
    learned = [(f"jaxlic {model.arch}", f"width {model.width}, {steps} steps", [evaluate_model(package, images)])]
    return learned, integer_path


def _progress(items, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="model", disable=not enabled)


def deploy_demo(integer_path: Path, images: list[tuple[str, np.ndarray]], out: Path) -> dict:
    """Build a `sim` bundle of the integer package per image size, decode every evaluation image
    through it and compare with the integer package's own decode; returns the counts."""
    from collections import defaultdict

    from compile.deploy import build_bundle
    from compile.runtime import BundleDecoder
    from jaxlic.codec import load
    from jaxlic.codec.api import compress, decompress

    integer = load(integer_path)
    by_size = defaultdict(list)
    for name, image in images:
        by_size[(image.shape[1], image.shape[0])].append((name, image))
    identical, total = 0, 0
    for (width, height), group in by_size.items():
        bundle = out / f"decoder-{width}x{height}.jxvb"
        report = build_bundle(integer_path, "sim", (width, height), bundle, progress=False)
        decoder = BundleDecoder(bundle)
        print(f"built {bundle} in {report['compile_s']:.1f} s: {report['vta_layers']} layers on VTA "
              f"({report['vta_mac_share']:.1%} of the decoder MACs)")
        for name, image in group:
            data = compress(integer, image)
            same = np.array_equal(decoder.decode(data), decompress(integer, data))
            identical, total = identical + same, total + 1
            print(f"  {name}: {len(data)} bytes, VTA-simulator bundle decode "
                  f"{'==' if same else '!='} integer package decode")
    print(f"deployment: {identical}/{total} images decode identically through the VTA bundles")
    return {"identical": identical, "images": total, "integer_package": str(integer_path)}


__all__ = ["run_demo"]
