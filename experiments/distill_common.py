"""Shared by the distillation and pruning experiments: Kodak evaluation with a per-run cache,
complexity columns, the first-order RD comparison, and markdown tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxlic.codec import ModelPackage
from jaxlic.eval.evaluate import Evaluation, evaluate_model
from jaxlic.models.complexity import macs_per_pixel, param_count

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN = SHARED / "train"
KODAK = SHARED / "kodak"


def evaluate_package(package: ModelPackage, images: list[tuple[str, np.ndarray]], cache: Path) -> dict:
    """bpp (real bytes), PSNR and MS-SSIM means over `images`, cached in `cache` per fingerprint."""
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved["fingerprint"] == package.fingerprint.hex() and saved["images"] == len(images):
            return saved
    result: Evaluation = evaluate_model(package, images)
    mse = np.mean([255.0**2 * 10 ** (-r.psnr / 10) for r in result.images])  # mean MSE on the 0..255 scale
    summary = {"fingerprint": package.fingerprint.hex(), "images": len(images), "bpp": result.bpp,
               "psnr": result.psnr, "ms_ssim": result.ms_ssim, "mse": float(mse)}
    cache.write_text(json.dumps(summary, indent=1))
    return summary


def complexity(package: ModelPackage) -> dict:
    """MACs per pixel (all transforms, and the decoder's g_s + h_s) and parameter count."""
    return {"kmacs": macs_per_pixel(package.config) / 1e3,
            "decoder_kmacs": macs_per_pixel(package.config, ("g_s", "h_s")) / 1e3,
            "params": param_count(package.params)}


def rd_loss(result: dict, lmbda: float) -> float:
    """The objective every model here was trained for, on Kodak: bpp + lambda * MSE(0..255).

    Between two models trained at the same lambda, a difference in it is, to first order (both
    near the RD curve where its slope is -lambda), the rate difference at equal distortion in bpp.
    """
    return result["bpp"] + lmbda * result["mse"]


def training_seconds(run_dir: Path) -> float:
    """Wall time between the first and last logged step of a run (compile time excluded)."""
    times = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").open()]
    return times[-1] - times[0]


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table; `columns` are (header, key, format spec)."""
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format(row[k], spec) if row.get(k) is not None else "" for _, k, spec in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
