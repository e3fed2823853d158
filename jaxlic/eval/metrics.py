"""PSNR and MS-SSIM as the field reports them (CompressAI's evaluation, pytorch-msssim's MS-SSIM).

MS-SSIM (Wang, Simoncelli, Bovik 2003): 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363,
0.1333); an 11-tap Gaussian window (sigma 1.5) applied separably with no padding ("valid");
K1 = 0.01, K2 = 0.03; 2x2 average pooling between scales, with one zero sample padded on both
sides of an odd dimension (as PyTorch's ``avg_pool2d(padding=size % 2)`` does); negative
contrast-structure terms clamped to 0; computed per channel, then averaged over channels.
Both sides of each image must exceed 160 pixels (the window after 4 halvings).

One implementation serves NumPy (float64, for evaluation) and JAX (float32, a differentiable
training loss); only the window filter differs (scipy for NumPy, a depthwise convolution in JAX).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from jaxlic.errors import ImageError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MIN_MS_SSIM_SIDE = (WINDOW_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """Normalized 1-D Gaussian taps centred on the middle sample."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    taps = np.exp(-(coords**2) / (2 * sigma**2))
    return taps / taps.sum()


def _check_pair(a: Any, b: Any) -> None:
    if a.shape != b.shape:
        raise ImageError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> float:
    """PSNR in dB of two same-shape images (8-bit by default); inf when they are equal."""
    a, b = np.asarray(a), np.asarray(b)
    _check_pair(a, b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(max_val**2 / mse))


def _filter_valid(xp: ModuleType, x: Any, taps: Any) -> Any:
    """Separable 'valid' correlation over H and W of NHWC `x` with 1-D `taps`, channel by channel."""
    size = taps.shape[0]
    if xp is np:  # 'valid' = filter with any border mode, then crop the border
        from scipy.ndimage import correlate1d

        rows = correlate1d(x, taps, axis=1, mode="constant")[:, size // 2 : x.shape[1] - size // 2]
        return correlate1d(rows, taps, axis=2, mode="constant")[:, :, size // 2 : x.shape[2] - size // 2]
    from jax import lax

    channels = x.shape[3]
    kernel_h = xp.tile(taps.reshape(size, 1, 1, 1), (1, 1, 1, channels))  # HWIO, depthwise
    kernel_w = kernel_h.reshape(1, size, 1, channels)
    for kernel in (kernel_h, kernel_w):
        x = lax.conv_general_dilated(
            x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels
        )
    return x


def _avg_pool2(xp: ModuleType, x: Any) -> Any:
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
        x = xp.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))
    n, h, w, c = x.shape
    return x[:, : h - h % 2, : w - w % 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _ssim_terms(xp: ModuleType, x: Any, y: Any, taps: Any, max_val: float) -> tuple[Any, Any]:
    """Per-image, per-channel mean SSIM and contrast-structure terms, shape (N, C) each."""
    c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
    channels = x.shape[3]
    filtered = _filter_valid(xp, xp.concatenate([x, y, x * x, y * y, x * y], axis=3), taps)
    mu_x, mu_y, xx, yy, xy = (filtered[..., i * channels : (i + 1) * channels] for i in range(5))
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(axis=(1, 2)), cs_map.mean(axis=(1, 2))


def _ms_ssim_nhwc(xp: ModuleType, x: Any, y: Any, max_val: float, dtype: Any) -> Any:
    """MS-SSIM of each image of two NHWC batches, shape (N,)."""
    _check_pair(x, y)
    if x.ndim != 4:
        raise ImageError(f"expected NHWC images, got shape {x.shape}")
    if min(x.shape[1:3]) < MIN_MS_SSIM_SIDE:
        raise ImageError(f"MS-SSIM needs both sides >= {MIN_MS_SSIM_SIDE} pixels (5 scales), got {x.shape[1:3]}")
    taps = xp.asarray(gaussian_window(), dtype=dtype)
    x, y = xp.asarray(x, dtype=dtype), xp.asarray(y, dtype=dtype)
    factors = []
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        ssim, cs = _ssim_terms(xp, x, y, taps, max_val)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            factors.append(xp.maximum(cs, 0) ** weight)
            x, y = _avg_pool2(xp, x), _avg_pool2(xp, y)
        else:
            factors.append(xp.maximum(ssim, 0) ** weight)
    per_channel = factors[0]
    for factor in factors[1:]:
        per_channel = per_channel * factor
    return per_channel.mean(axis=1)


def _as_nhwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return image[None, :, :, None]
    if image.ndim == 3:
        return image[None]
    return image


def ms_ssim(a: np.ndarray, b: np.ndarray, max_val: float = 255.0) -> float:
    """MS-SSIM (float64 NumPy) of two HxW, HxWxC images or NHWC batches (mean over the batch)."""
    a, b = np.asarray(a), np.asarray(b)
    _check_pair(a, b)
    return float(_ms_ssim_nhwc(np, _as_nhwc(a), _as_nhwc(b), max_val, np.float64).mean())


def ms_ssim_jax(x: Any, y: Any, max_val: float = 1.0) -> Any:
    """MS-SSIM of two NHWC float batches in JAX, averaged over the batch; differentiable and jittable.

    As a training loss use ``1 - ms_ssim_jax(x_hat, x)``.
    """
    import jax.numpy as jnp

    return _ms_ssim_nhwc(jnp, x, y, max_val, jnp.result_type(float)).mean()
