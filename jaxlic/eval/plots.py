"""Rate-distortion plots (bpp against PSNR and optionally MS-SSIM) as PNG, with matplotlib's Agg."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from jaxlic.errors import DataError
from jaxlic.eval.results import Record, curve
from jaxlic.images import PathLike, atomic_path

_AXIS_LABELS = {"psnr-rgb": "PSNR-RGB (dB)", "ms-ssim-rgb": "MS-SSIM-RGB (dB)"}


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the dB scale CompressAI plots: -10 log10(1 - value)."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)


def plot_rd(
    records: Sequence[Record],
    out: PathLike,
    metrics: Sequence[str] = ("psnr-rgb",),
    references: Sequence[Record] = (),
    title: str = "Kodak",
) -> None:
    """Write an RD plot to `out` (PNG): one panel per metric, solid lines for records, dashed for references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records and not references:
        raise DataError("nothing to plot: give at least one results record or reference curve")
    for metric in metrics:
        if metric not in _AXIS_LABELS:
            raise DataError(f"cannot plot metric {metric!r}; choose from {', '.join(_AXIS_LABELS)}")
    figure, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics), 4.8), squeeze=False)
    try:
        for axis, metric in zip(axes[0], metrics):
            for style, suffix, group in (("-", "", records), ("--", " (reference)", references)):
                for record in group:
                    if metric not in record["results"]:
                        warnings.warn(f"{record['name']} has no {metric} results; left out of that panel", stacklevel=2)
                        continue
                    bpp, values = curve(record, metric)
                    if metric == "ms-ssim-rgb":
                        values = [ms_ssim_db(v) for v in values]
                    axis.plot(bpp, values, style, marker="o", markersize=3, label=record["name"] + suffix)
            axis.set_xlabel("bits per pixel")
            axis.set_ylabel(_AXIS_LABELS[metric])
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize="small")
        figure.tight_layout()
        with atomic_path(out) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(figure)
