"""The main job, end to end: train a small model, code real images, compare with JPEG, plot; then
quantize it, compile it for VTA (the `sim` board) into a deployment bundle and decode the
evaluation images through the bundle, checking they equal the integer package's own decode.

Uses the shared data (`train/` folders and `kodak/`) when it is there: $JAXLIC_SHARED_DATA, by
default ../shared/data beside the repository (whatever the working directory); else
scikit-image's bundled photos (four to train on, two held out to evaluate), so it runs on any
machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxlic.eval import codecs
from jaxlic.eval.evaluate import evaluate_model
from jaxlic.eval.plots import plot_rd
from jaxlic.eval.reference_curves import reference_curve
from jaxlic.eval.results import make_record, save_results
from jaxlic.images import default_images, read_images
from jaxlic.models import model_config
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.task import codec_task

REPOSITORY = Path(__file__).resolve().parents[1]
HELD_OUT = ("hubble_deep_field", "motorcycle")
DEMO_MODEL = "bmshj2018-factorized"
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


def run_demo(out: Path, steps: int, kodak_images: int = 6, progress: bool = True) -> dict:
    """Train, evaluate against JPEG, write results and an RD plot to `out`; return the summary."""
    folders, images, where = demo_data(kodak_images)
    config = TrainConfig(steps=steps, batch_size=8, crop=128, learning_rate=2e-3, warmup=50,
                         checkpoint_every=max(steps // 4, 1), data=folders)
    model = model_config(DEMO_MODEL, quality=4, width=0.5)
    print(f"training {model.arch} (width {model.width}) for {steps} steps on "
          f"{folders[0] if folders else 'the built-in images'}; evaluating on {where}")
    package = Trainer(config, codec_task(model), out / "run", progress=progress).run()

    learned = evaluate_model(package, images)
    jpeg = codecs.sweep("jpeg", images, JPEG_QUALITIES, progress=progress)
    learned_record = make_record(f"jaxlic {model.arch}", f"width {model.width}, {steps} steps", [learned])
    jpeg_record = make_record("JPEG (Pillow)", "4:2:0", jpeg, JPEG_QUALITIES)
    save_results(out / "results.json", [learned_record, jpeg_record])
    references = [reference_curve("JPEG"), reference_curve("bmshj2018-factorized")] if folders else []
    plot_rd([learned_record, jpeg_record], out / "rd.png", references=references, title=where)

    jpeg_bpp, jpeg_psnr = [e.bpp for e in jpeg], [e.psnr for e in jpeg]
    jpeg_at_rate = float(np.interp(learned.bpp, jpeg_bpp, jpeg_psnr))
    summary = {"images": where, "bpp": learned.bpp, "psnr": learned.psnr, "ms_ssim": learned.ms_ssim,
               "jpeg_psnr_at_same_bpp": jpeg_at_rate, "gain_db": learned.psnr - jpeg_at_rate,
               "encode_s": learned.mean("encode_time"), "decode_s": learned.mean("decode_time")}
    print(f"\njaxlic : {learned.bpp:.3f} bpp, {learned.psnr:.2f} dB PSNR, MS-SSIM {learned.ms_ssim:.4f} "
          f"(encode {summary['encode_s']:.2f} s, decode {summary['decode_s']:.2f} s per image)")
    print(f"JPEG   : {jpeg_at_rate:.2f} dB PSNR at the same bpp (interpolated) -> "
          f"{summary['gain_db']:+.2f} dB for jaxlic")
    print(f"wrote {out / 'results.json'}, {out / 'rd.png'}, {out / 'run' / 'model.jxlm'}")
    summary["deploy"] = deploy_demo(package, folders, images, out)
    return summary


def deploy_demo(package, folders: tuple[str, ...], images: list[tuple[str, np.ndarray]], out: Path) -> dict:
    """Quantize (post-training), build a `sim` bundle per image size, decode every evaluation
    image through it and compare with the integer package's decode; returns the counts."""
    from collections import defaultdict

    from compile.deploy import build_bundle
    from compile.runtime import BundleDecoder
    from jaxlic.codec.api import compress, decompress
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate
    from jaxlic.quant.qat import calibration_batches

    calibration = calibrate(package.config, package.params, calibration_batches(folders, crop=128))
    integer_path = out / "model-int8.jxlm"
    integerize(package.config, package.params, calibration).save(integer_path)
    integer = type(package).load(integer_path)
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
