"""BiWKV: the bidirectional linear attention of Vision-RWKV and LALIC, in linear time.

Per channel, over tokens t = 0..T-1 (decay w, boost u; per-channel vectors):

    y_t = (sum_{i != t} e^{k_i - (|t-i|-1) w} v_i + e^{u + k_t} v_t)
        / (sum_{i != t} e^{k_i - (|t-i|-1) w} + e^{u + k_t})

with a guard of 1e-6 added to the denominator once every exponent is shifted by the largest
(as the CUDA kernel of Vision-RWKV/LALIC computes it). `biwkv` splits the sum into the tokens
before t and after t; each half is a linear recurrence with the constant factor e^{-w}, run as
a scan forward and one backward whose state carries its own running maximum (log-sum-exp form),
so no exponential overflows whatever T, w or k. Work and memory are O(T). (A scan compiles in a
fraction of a second; `lax.associative_scan` ran no faster on CPU and compiled 10-30x slower,
which a model of 40 blocks multiplies.) `biwkv_quadratic` evaluates the formula directly in
O(T^2), the reference of tests and benchmarks.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

EPS = 1e-6
NO_TOKENS = -1e30  # the exponent of an empty sum (its terms are zero)


def running_max_step(xp, w, exp_neg: Callable, times: Callable) -> Callable:
    """One token of the scan: state (peak, age, a, b), token (k_t, v_t) -> (state, (m, a, b)).

    The running maximum is held as (the exponent where it was set, tokens since): m = peak -
    age w is then one rounding away, where subtracting w token after token would accumulate
    T roundings (about 1e-3 of the output at T = 4096 in float32). `exp_neg(x)` is e^-x for
    x >= 0 and `times(a, f)` scales a sum by such a factor: the float ones here, exact integer
    ones in jaxlic.quant.rwkv_arith."""

    def step(state, token):
        peak, age, a, b = state
        k_t, v_t = token
        decayed = peak - (age + 1) * w
        grows = k_t > decayed
        top = xp.where(grows, k_t, decayed)
        old, new = exp_neg(top - decayed), exp_neg(top - k_t)
        out = (peak - age * w, a, b)
        return (xp.where(grows, k_t, peak), xp.where(grows, 0, age + 1), times(a, old) + v_t * new,
                times(b, old) + new), out

    return step


def _sums_before(w: jax.Array, k: jax.Array, v: jax.Array, reverse: bool):
    """(m, a, b) per token with e^m a = sum_{i<t} e^{k_i - (t-i-1) w} v_i and e^m b the same
    sum without v (i > t, by distance, when `reverse`)."""
    step = running_max_step(jnp, w, lambda x: jnp.exp(-x), jnp.multiply)
    batch, _, channels = k.shape
    empty = jnp.zeros((batch, channels), k.dtype)
    tokens = (jnp.swapaxes(k, 0, 1), jnp.swapaxes(v, 0, 1))
    _, sums = jax.lax.scan(step, (empty + NO_TOKENS, empty, empty, empty), tokens, reverse=reverse)
    return tuple(jnp.swapaxes(x, 0, 1) for x in sums)


def biwkv(w: jax.Array, u: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """BiWKV of (B, T, C) keys and values with (C,) decay w and boost u, in O(T)."""
    m1, a1, b1 = _sums_before(w, k, v, reverse=False)
    m2, a2, b2 = _sums_before(w, k, v, reverse=True)
    own = u + k
    m = jnp.maximum(jnp.maximum(m1, m2), own)
    e1, e2, e3 = jnp.exp(m1 - m), jnp.exp(m2 - m), jnp.exp(own - m)
    return (a1 * e1 + a2 * e2 + e3 * v) / (b1 * e1 + b2 * e2 + e3 + EPS)


def biwkv_quadratic(w: jax.Array, u: jax.Array, k: jax.Array, v: jax.Array, block: int = 1024) -> jax.Array:
    """BiWKV evaluated term by term from its formula, O(T^2) work; `block` query tokens at a time
    (memory O(block T C))."""
    _, T, _ = k.shape
    block = min(block, T)
    starts = jnp.arange(0, T, block)
    tokens = jnp.arange(T)

    def rows(start):
        t = jnp.minimum(start + jnp.arange(block), T - 1)
        distance = jnp.abs(t[:, None] - tokens[None, :])  # (block, T)
        exponents = jnp.where((distance == 0)[None, :, :, None], u + k[:, None, :, :],
                              k[:, None, :, :] - (distance - 1)[None, :, :, None] * w)
        m = jnp.max(exponents, axis=2, keepdims=True)
        weights = jnp.exp(exponents - m)
        return jnp.sum(weights * v[:, None], axis=2) / (jnp.sum(weights, axis=2) + EPS)

    out = jax.lax.map(rows, starts)  # (blocks, B, block, C)
    return jnp.moveaxis(out, 0, 1).reshape(k.shape[0], -1, k.shape[2])[:, :T]
