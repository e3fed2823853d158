"""Measure sandwiches with the real codec: RD points (bpp from real bytes), gains over the plain
codec at equal bpp, BD-rate, and how closely the proxy follows the real codec.

PSNR and MS-SSIM are on the original's scale: 8-bit for uint8 images, 16-bit (peak 65535) for the
uint16 images of the high-bit-depth scenario; reconstructions are rounded to that depth first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls
from tqdm.auto import tqdm

from jaxlic.errors import DataError
from jaxlic.eval.bdrate import bd_psnr, bd_rate
from jaxlic.eval.evaluate import Evaluation, NamedImage, evaluate
from jaxlic.eval.metrics import psnr
from jaxlic.eval.results import Record, curve
from jaxlic.sandwich.model import SandwichPackage, to_uint8, to_uint16
from jaxlic.sandwich.scenarios import Scenario, baseline_decode, baseline_encode


def sandwich_sweep(package: SandwichPackage, images: Sequence[NamedImage], qualities: Sequence[int],
                   progress: bool = True) -> list[Evaluation]:
    """The sandwich through the real codec at each quality."""
    def decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
        out = package.decode(data)
        return to_uint16(out) if images[0][1].dtype == np.uint16 else to_uint8(out)

    with tqdm(total=len(images) * len(qualities), desc=f"sandwich {package.config.scenario}", disable=not progress) as bar:
        return [evaluate(lambda x, q=q: package.encode(x, q), decode, images, lambda _: bar.update())
                for q in qualities]


def baseline_sweep(scenario: Scenario, images: Sequence[NamedImage], qualities: Sequence[int],
                   progress: bool = True) -> list[Evaluation]:
    """The plain codec with its natural inverse at each quality."""
    with tqdm(total=len(images) * len(qualities), desc=f"plain {scenario.name}", disable=not progress) as bar:
        return [evaluate(lambda x, q=q: baseline_encode(scenario, x, q),
                         lambda d, size: baseline_decode(scenario, d, size), images, lambda _: bar.update())
                for q in qualities]


def gains(test: Record, anchor: Record) -> dict:
    """PSNR gain of `test` over `anchor` at each test point's bpp (anchor interpolated linearly in
    bpp; points outside the anchor's bpp range are left out), BD-rate and BD-PSNR (pchip)."""
    test_bpp, test_psnr = curve(test, "psnr-rgb")
    anchor_bpp, anchor_psnr = curve(anchor, "psnr-rgb")
    order = np.argsort(anchor_bpp)
    a_bpp, a_psnr = np.asarray(anchor_bpp)[order], np.asarray(anchor_psnr)[order]
    points = [{"bpp": b, "psnr": p, "anchor_psnr": float(np.interp(b, a_bpp, a_psnr)),
               "gain_db": p - float(np.interp(b, a_bpp, a_psnr))}
              for b, p in zip(test_bpp, test_psnr) if a_bpp[0] <= b <= a_bpp[-1]]
    summary: dict = {"points": points,
                     "mean_gain_db": float(np.mean([p["gain_db"] for p in points])) if points else None,
                     "max_gain_db": float(max(p["gain_db"] for p in points)) if points else None}
    for key, fn in (("bd_rate_percent", bd_rate), ("bd_psnr_db", bd_psnr)):
        try:
            summary[key] = fn(anchor_bpp, anchor_psnr, test_bpp, test_psnr)
        except DataError as exc:
            summary[key] = None
            summary[f"{key}_error"] = str(exc)
    return summary


def proxy_fidelity(package: SandwichPackage, images: Sequence[NamedImage], qualities: Sequence[int]) -> list[dict]:
    """Per quality: mean PSNR (8-bit) between the proxy's decoded code image and the real codec's,
    over the model's own code images of `images`."""
    codec, codec_params = package.sandwich.codec, package.params["codec"]
    rows = []
    for q in qualities:
        values = []
        for _, image in images:
            code = package.code_image(image, q)
            real, _ = codec.decode(codec.encode(codec_params, code, q))
            values.append(psnr(real, package.proxy(code, q)[0]))
        rows.append({"quality": q, "psnr_proxy_vs_real_db": float(np.mean(values)), "min_db": float(np.min(values))})
    return rows


def rate_samples(package: SandwichPackage, images: Sequence[NamedImage], qualities: Sequence[int]) -> dict:
    """Rate features from the proxy and real payload/file bits of the model's code images."""
    codec, codec_params = package.sandwich.codec, package.params["codec"]
    features, payload, total, quality = [], [], [], []
    for q in qualities:
        for _, image in images:
            code = package.code_image(image, q)
            data = codec.encode(codec_params, code, q)
            features.append(package.proxy(code, q)[1])
            payload.append(codec.payload_bits(data))
            total.append(8 * len(data))
            quality.append(q)
    return {"features": np.array(features, np.float64), "payload": np.array(payload, np.float64),
            "total": np.array(total, np.float64), "quality": np.array(quality)}


def _errors(predicted: np.ndarray, test: dict) -> dict:
    header = test["total"] - test["payload"]
    error = np.abs(predicted - test["payload"]) / test["payload"]
    return {"mean_abs_rel_error_payload": float(error.mean()), "max_abs_rel_error_payload": float(error.max()),
            "mean_abs_rel_error_file": float(np.mean(np.abs(predicted + header - test["total"]) / test["total"]))}


def rate_proxy_error(fit: dict, test: dict) -> dict:
    """Weights fitted (NNLS) on `fit` samples predict `test` payloads: relative errors for all rate
    features (what training uses), for the log-magnitude feature alone with one weight for every
    quality, and with one weight per quality (the sandwich papers' w * sum log(1 + |q|) refit on
    batches of one quality)."""
    out = {}
    for label, columns in (("all_features", slice(None)), ("log_magnitude_only", slice(0, 1))):
        weights, _ = nnls(fit["features"][:, columns], fit["payload"])
        out[label] = {"weights": weights.tolist(), **_errors(test["features"][:, columns] @ weights, test)}
    predicted = np.zeros(len(test["payload"]))
    for q in np.unique(test["quality"]):
        w, _ = nnls(fit["features"][fit["quality"] == q, :1], fit["payload"][fit["quality"] == q])
        predicted[test["quality"] == q] = test["features"][test["quality"] == q, :1] @ w
    out["log_magnitude_per_quality"] = _errors(predicted, test)
    return out
