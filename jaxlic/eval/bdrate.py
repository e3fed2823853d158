"""Bjontegaard delta rate and delta PSNR between two rate-distortion curves.

Two interpolations of each curve (log-rate against quality, or quality against log-rate):

- ``"cubic"``: a least-squares cubic polynomial, as in Bjontegaard's VCEG-M33 (2001).
- ``"pchip"`` (default): piecewise cubic Hermite interpolation through the points, as in the
  JVET/VCEG common-test-condition spreadsheets (VCEG-AL22); it never overshoots between points,
  so curves whose cubic fit would wiggle (like JPEG's) stay sane.

BD-rate is the mean horizontal gap in log-rate over the overlapping quality range, reported as a
percentage of the anchor's rate (negative: the test curve needs fewer bits); BD-PSNR is the mean
vertical gap in quality over the overlapping log-rate range (positive: the test curve is better).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.interpolate import PchipInterpolator

from jaxlic.errors import DataError

Method = Literal["pchip", "cubic"]
METHODS: tuple[Method, ...] = ("pchip", "cubic")
MIN_POINTS = 4


def _validated(rate: Sequence[float], quality: Sequence[float], label: str) -> tuple[np.ndarray, np.ndarray]:
    rate_arr, quality_arr = np.asarray(rate, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    if rate_arr.ndim != 1 or rate_arr.shape != quality_arr.shape:
        raise DataError(f"{label} curve: rate and quality must be 1-D of equal length, got {rate_arr.shape} and {quality_arr.shape}")
    if len(rate_arr) < MIN_POINTS:
        raise DataError(f"{label} curve has {len(rate_arr)} points; Bjontegaard metrics need at least {MIN_POINTS}")
    if not (np.isfinite(rate_arr).all() and np.isfinite(quality_arr).all()) or (rate_arr <= 0).any():
        raise DataError(f"{label} curve: rates must be finite and > 0, qualities finite")
    return np.log(rate_arr), quality_arr


def _mean_over(x: np.ndarray, y: np.ndarray, low: float, high: float, method: Method, label: str) -> float:
    """Mean of the interpolated y(x) over [low, high]."""
    if method == "cubic":
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float((np.polyval(antiderivative, high) - np.polyval(antiderivative, low)) / (high - low))
    if method == "pchip":
        order = np.argsort(x)
        if np.any(np.diff(x[order]) <= 0):
            raise DataError(f"{label} curve has repeated values on the axis it is interpolated along; pchip needs distinct points")
        return float(PchipInterpolator(x[order], y[order]).integrate(low, high) / (high - low))
    raise DataError(f"unknown Bjontegaard method {method!r}; use one of {', '.join(METHODS)}")


def _overlap(a: np.ndarray, b: np.ndarray, axis: str) -> tuple[float, float]:
    low, high = max(a.min(), b.min()), min(a.max(), b.max())
    if low >= high:
        raise DataError(f"the two curves do not overlap in {axis} ({a.min():.4g}..{a.max():.4g} vs {b.min():.4g}..{b.max():.4g})")
    return float(low), float(high)


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    method: Method = "pchip",
) -> float:
    """Bjontegaard delta rate of test vs anchor in percent (negative: test saves bits)."""
    anchor_log, anchor_q = _validated(anchor_rate, anchor_quality, "anchor")
    test_log, test_q = _validated(test_rate, test_quality, "test")
    gap = _mean_gap((anchor_q, anchor_log), (test_q, test_log), "quality", method)
    return float((np.exp(gap) - 1.0) * 100.0)


def bd_psnr(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    method: Method = "pchip",
) -> float:
    """Bjontegaard delta quality (dB for PSNR) of test vs anchor (positive: test is better)."""
    anchor_log, anchor_q = _validated(anchor_rate, anchor_quality, "anchor")
    test_log, test_q = _validated(test_rate, test_quality, "test")
    return _mean_gap((anchor_log, anchor_q), (test_log, test_q), "log-rate", method)


def _mean_gap(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], axis: str,
              method: Method) -> float:
    """Mean of test's y minus mean of anchor's y, both as functions of x over their common x range."""
    low, high = _overlap(anchor[0], test[0], axis)
    return _mean_over(*test, low, high, method, "test") - _mean_over(*anchor, low, high, method, "anchor")
