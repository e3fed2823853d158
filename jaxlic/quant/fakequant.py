"""Straight-through estimators and power-of-two scale rules shared by QAT and the exporter.

Fake quantization computes in float32 on integer-valued tensors: rounding and flooring pass the
gradient through unchanged (straight-through), clamping passes it only inside the range. The
exporter evaluates the same functions once and casts the results to integers, so what QAT trains
is what the integer graph computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

WEIGHT_MAX = 127  # symmetric int8 weights
ACT_MAX = 127  # symmetric int8 activations, so |x| and -x stay int8
POOL_MAX = 32767  # the GDN pool is kept as int16
MAX_EXPONENT = 24


def round_ste(x: jax.Array) -> jax.Array:
    """round(x) forward (half to even), identity gradient."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def floor_ste(x: jax.Array) -> jax.Array:
    """floor(x) forward, identity gradient."""
    return x + jax.lax.stop_gradient(jnp.floor(x) - x)


def exp2i(exponent) -> jax.Array:
    """2^e, exactly, for integer-valued e (XLA's exp2 is off by ulps for many integers)."""
    exponent = jnp.asarray(exponent)
    return jnp.ldexp(jnp.ones(exponent.shape, jnp.float32), exponent.astype(jnp.int32))


def pow2_exponent(max_abs, limit: float, low: int = -MAX_EXPONENT, high: int = MAX_EXPONENT):
    """Largest e in [low, high] with max_abs * 2^e <= limit (high where max_abs is 0).

    Works on NumPy arrays (calibration) and on traced JAX arrays (weights during QAT); the
    result is integer-valued and carries no gradient.
    """
    if isinstance(max_abs, jax.Array):
        xp, max_abs, pow2 = jnp, jax.lax.stop_gradient(max_abs), exp2i
    else:
        xp, max_abs, pow2 = np, np.asarray(max_abs, np.float64), np.exp2
    safe = xp.where(max_abs > 0, max_abs, 1.0)
    exponent = xp.floor(xp.log2(limit / safe))
    # log2 may round across an integer: settle on the largest exponent that keeps the bound.
    exponent = xp.where(safe * pow2(exponent + 1) <= limit, exponent + 1, exponent)
    exponent = xp.where(safe * pow2(exponent) > limit, exponent - 1, exponent)
    return xp.clip(xp.where(max_abs > 0, exponent, high), low, high)


def quantize_weight(weight: jax.Array, input_exponents, extra: jax.Array | None = None,
                    high=MAX_EXPONENT) -> tuple[jax.Array, jax.Array]:
    """Per-output-channel power-of-two int8 quantization of an HWIO (or IO) weight.

    The input tensor's per-channel exponents are folded in first (w * 2^-e_in), so the
    accumulator of output channel c has the single exponent f[c]. `extra` (one value per output
    channel, e.g. the bias) must also fit int32 at that exponent. Returns (integer-valued weight,
    f) with f <= `high` (per channel), so that requantization shifts stay in range.
    """
    scaled = weight * exp2i(-jnp.asarray(input_exponents, jnp.float32))[:, None]
    reduce_axes = tuple(range(weight.ndim - 1))
    exponent = pow2_exponent(jnp.max(jnp.abs(scaled), axis=reduce_axes), WEIGHT_MAX, high=MAX_EXPONENT)
    if extra is not None:
        exponent = jnp.minimum(exponent, pow2_exponent(jnp.abs(extra), 2.0**30))
    exponent = jnp.minimum(exponent, high)
    integer = jnp.clip(round_ste(scaled * exp2i(exponent)), -WEIGHT_MAX, WEIGHT_MAX)
    return integer, exponent
