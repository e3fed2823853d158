"""BiWKV: the bidirectional linear attention of Vision-RWKV and LALIC, in linear time.

Per channel, over tokens t = 0..T-1 (decay w, boost u; per-channel vectors):

    y_t = (sum_{i != t} e^{k_i - (|t-i|-1) w} v_i + e^{u + k_t} v_t)
        / (sum_{i != t} e^{k_i - (|t-i|-1) w} + e^{u + k_t})

with a guard of 1e-6 added to the denominator once every exponent is shifted by the largest
(as the CUDA kernel of Vision-RWKV/LALIC computes it). `biwkv` splits the sum into the tokens
before t and after t; each half is a linear recurrence with the constant factor e^{-w}, solved
by an associative scan whose elements carry their own running maximum (log-sum-exp form), so no
exponential overflows whatever T, w or k. Work is O(T), depth O(log T). `biwkv_quadratic`
evaluates the formula directly in O(T^2) (the reference of tests and benchmarks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-6


def _decayed_sums(w: jax.Array, k: jax.Array, v: jax.Array, reverse: bool):
    """(m, a, b) per token with e^m a = sum_{i<=t} e^{k_i - (t-i) w} v_i and e^m b the same
    sum without v (i >= t when `reverse`); scanned along axis 1."""

    def combine(first, second):
        # The element later in scan order is `second`: first's sums decay by second's length.
        n1, m1, a1, b1 = first
        n2, m2, a2, b2 = second
        shifted = m1 - n2 * w
        m = jnp.maximum(shifted, m2)
        e1, e2 = jnp.exp(shifted - m), jnp.exp(m2 - m)
        return n1 + n2, m, a1 * e1 + a2 * e2, b1 * e1 + b2 * e2

    ones = jnp.ones_like(k)
    _, m, a, b = jax.lax.associative_scan(combine, (ones, k, v, ones), reverse=reverse, axis=1)
    return m, a, b


def _shift(x: jax.Array, fill: jax.Array, reverse: bool) -> jax.Array:
    """x moved one token later (earlier when `reverse`) along axis 1, `fill` at the freed end."""
    if reverse:
        return jnp.concatenate([x[:, 1:], fill[:, -1:]], axis=1)
    return jnp.concatenate([fill[:, :1], x[:, :-1]], axis=1)


def biwkv(w: jax.Array, u: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """BiWKV of (B, T, C) keys and values with (C,) decay w and boost u, in O(T)."""
    own = u + k
    parts = []
    for reverse in (False, True):
        m, a, b = _decayed_sums(w, k, v, reverse)
        # Tokens strictly before t: the inclusive sum at t-1 (its decay is already |t-i|-1);
        # the first token has none (zero sums at the exponent of its own term).
        parts.append((_shift(m, own, reverse), _shift(a, jnp.zeros_like(a), reverse),
                      _shift(b, jnp.zeros_like(b), reverse)))
    (m1, a1, b1), (m2, a2, b2) = parts
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
