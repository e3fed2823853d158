"""Pillow's 8-bit bicubic resize and RGB -> L conversion, reproduced exactly in JAX.

The half-res and gray baselines use Pillow (`Image.resize(..., BICUBIC)`, `convert("L")`); an
untrained sandwich must compute the same pixels, so these follow Pillow's integer arithmetic
(libImaging Resample.c and Convert.c): per output sample, the bicubic kernel (a = -0.5, widened
by the scale factor when reducing) over the input samples inside its support, clipped at the
borders and renormalized, as fixed-point weights with 22 fractional bits; a horizontal and a
vertical pass (in Pillow's order, `vertical_first`), each summed in int32 as Pillow does, rounded
half up and clipped to 8 bits; luma as (19595 R + 38470 G + 7471 B + 2^15) >> 16. Values are on the 0..255 scale.
A resize's gradient is that of the unrounded float resize (straight-through), so gradients pass
to whatever feeds it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import PIL

PRECISION_BITS = 22  # Pillow's fixed-point fraction for 8-bit resampling: 32 - 8 - 2
PILLOW_MAJOR = int(PIL.__version__.split(".")[0])
LUMA_FIXED = (19595, 38470, 7471)  # Pillow's L = R*299/1000 + G*587/1000 + B*114/1000, in 1/2^16


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel, a = -0.5 (support 2)."""
    a, x = -0.5, np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) int32 matrix of Pillow's fixed-point bicubic weights (units of 2^-22)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    weights = np.zeros((out_size, in_size), np.int32)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero
        last = min(int(center + support + 0.5), in_size)
        taps = _bicubic((np.arange(first, last) - center + 0.5) / filter_scale)
        if taps.sum() != 0.0:
            taps = taps / taps.sum()
        weights[out, first:last] = np.trunc(taps * (1 << PRECISION_BITS) + np.where(taps < 0, -0.5, 0.5))
    return weights


def _resample_pass(spec: str, weights: np.ndarray, x: jax.Array) -> jax.Array:
    """One Pillow pass: the exact int32 sum, rounded half up and clipped to 8 bits, in the forward
    value; the gradient of the float sum (straight-through) in the backward pass."""
    exact = jnp.einsum(spec, jnp.asarray(weights), jnp.round(x).astype(jnp.int32),
                       preferred_element_type=jnp.int32)
    rounded = jnp.clip((exact + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS, 0, 255).astype(x.dtype)
    smooth = jnp.einsum(spec, jnp.asarray(weights / (1 << PRECISION_BITS), x.dtype), x)
    return smooth + jax.lax.stop_gradient(rounded - smooth)


def vertical_first(in_size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Whether Pillow runs the vertical pass first: from Pillow 13, when the height shrinks by more
    than twice as many rows as the width loses columns; before 13, never."""
    shrink_h, shrink_w = in_size[0] - out_size[0], in_size[1] - out_size[1]
    return PILLOW_MAJOR >= 13 and shrink_h > 0 and shrink_h > 2 * shrink_w


def resize_bicubic(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Pillow's 8-bit bicubic resize of (N, H, W, C) images (0..255, integer-valued) to `size` (h, w)."""
    h, w = x.shape[1:3]
    passes = [("ow,nhwc->nhoc", w, size[1]), ("oh,nhwc->nowc", h, size[0])]
    for spec, n_in, n_out in reversed(passes) if vertical_first((h, w), size) else passes:
        if n_in != n_out:
            x = _resample_pass(spec, bicubic_weights(n_in, n_out), x)
    return x


def luma(x: jax.Array) -> jax.Array:
    """Pillow's convert("L") of (N, H, W, 3) images (0..255, integer-valued): (N, H, W, 1)."""
    weighted = x @ jnp.asarray(LUMA_FIXED, x.dtype)[:, None]
    return jnp.floor((weighted + 2.0 ** 15) / 2.0 ** 16)

