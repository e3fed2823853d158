"""Exact integer arithmetic for LALIC's context networks (jaxlic.quant.rwkv_context), and the
float arithmetic its calibration runs.

Every operation's result is fixed by IEEE-754 and two's complement: sums, products and
comparisons of integers held in float64 below 2^53 (in int64 below 2^63 inside BiWKV),
power-of-two scaling, floor and table lookups. Divisions and square roots are taken in floating
point and then corrected to the exact integer floor, so their rounding does not matter either.
The same code runs on NumPy and on jax.numpy (jitted or not), with the same bits.

A value is an integer array q with one exponent e per tensor (it stands for q 2^-e):
- activations are requantized (round half up) to |q| <= 2^20 - 1 at a calibrated exponent;
- weights (convolutions, linear layers, OmniShift's folded kernel, LayerNorm's scale, the
  blocks' gammas) are integers |w| <= 2^15 - 1 at a power-of-two scale per output channel
  (jaxlic.quant.context_params.integer_weights);
- LayerNorm: per token, C x - sum(x) is scaled by a power of two to the most bits whose sum of
  squares stays below 2^51 (21 for up to 512 channels) and divided by the exact integer square
  root of that sum (epsilon added on the same grid), giving values at 2^-16 before the
  per-channel affine;
- sigmoid: a table at steps of 2^-8 over [-16, 16], values at 2^-16, linearly interpolated;
- BiWKV: keys, decay / T and boost / T become exponents at 2^-24; every e^-x is the product of
  two tables and a first-order term at 2^-24; the scans carry the running maximum as the float
  form does (jaxlic.nn.biwkv), their sums in int64 (at most 2^17 tokens x 2^20 x 2^24 < 2^62).
The tables are computed with Python's decimal module (correctly rounded), so they are the same
everywhere.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.errors import IntegerizationError
from jaxlic.nn.biwkv import EPS as BIWKV_EPS
from jaxlic.nn.biwkv import biwkv, running_max_step
from jaxlic.nn.rwkv import LAYER_NORM_EPS
from jaxlic.quant.context_params import (ACT_MAX, LATENT_MAX, integer_weights, jax_conv, ldexp, np_conv,
                                         params_at, requantization, requantize)

NORM_EXPONENT = 16  # LayerNorm's normalized values and the sigmoid's outputs
GATE_RANGE = 16  # the sigmoid table covers [-16, 16] at steps of 2^-8
KEY_EXPONENT = 24  # BiWKV's exponents (keys, decay / T, boost / T) and its weights e^-x
EXP_RANGE = 32  # e^-x is 0 on the 2^-24 grid beyond x = 32
DECAY_EXPONENT = 40  # decay and boost held at 2^-40 (|.| <= 2^9) before the division by T
MAX_TOKENS = 1 << 17  # BiWKV's int64 sums stay below 2^62
HEAD_EXPONENT = 16  # the aggregation's output (not clipped to 2^20: nothing multiplies it)

@functools.cache
def tables() -> dict[str, np.ndarray]:
    """sigmoid(i / 256) at 2^-16 for i = -4096..4096, e^(-j / 256) and e^(-j / 2^16) at 2^-24
    (j < 32 * 256 and j < 256): decimal arithmetic, correctly rounded, the same on every machine."""
    with localcontext() as context:
        context.prec = 40

        def grid(values, bits: int) -> np.ndarray:
            return np.array([float((v * 2**bits).to_integral_value()) for v in values])

        steps = range(-GATE_RANGE * 256, GATE_RANGE * 256 + 1)
        return {"sigmoid": grid((1 / (1 + (-Decimal(i) / 256).exp()) for i in steps), NORM_EXPONENT),
                "exp_coarse": grid(((-Decimal(j) / 256).exp() for j in range(EXP_RANGE * 256)), KEY_EXPONENT),
                "exp_fine": grid(((-Decimal(j) / 2**16).exp() for j in range(256)), KEY_EXPONENT)}


# --- exact integer helpers on float64 (xp = numpy or jax.numpy) ----------------------------------

def floor_div(xp, a, b):
    """floor(a / b) for float64 integers, b > 0, |a| and b below 2^51: the float quotient
    corrected by exact products (whatever its rounding)."""
    q = xp.floor(a / b)
    q = xp.where(q * b > a, q - 1, q)
    return xp.where((q + 1) * b <= a, q + 1, q)


def isqrt(xp, n):
    """floor(sqrt(n)) for float64 integers 0 <= n < 2^53, corrected by exact squares."""
    r = xp.floor(xp.sqrt(n))
    r = xp.where(r * r > n, r - 1, r)
    return xp.where((r + 1) * (r + 1) <= n, r + 1, r)


def _exp_neg(xp, x, exp_coarse, exp_fine):
    """e^-x at 2^-24 for int64 x >= 0 at 2^-24: two table factors and 1 - (the last 8 bits)."""
    x = xp.minimum(x, (EXP_RANGE << KEY_EXPONENT) - 1)
    coarse, fine, rest = x >> 16, (x >> 8) & 255, x & 255
    product = (exp_coarse[coarse] * exp_fine[fine]) >> KEY_EXPONENT
    return (product * ((1 << KEY_EXPONENT) - rest)) >> KEY_EXPONENT


def _times_weight(a, weight):
    """floor(a * weight / 2^24) for int64 |a| < 2^62, 0 <= weight <= 2^24, without overflow."""
    high, low = a >> 32, a & 0xFFFFFFFF
    return ((high * weight) << 8) + ((low * weight) >> KEY_EXPONENT)


@dataclass(frozen=True)
class _Backend:
    xp: object
    conv: Callable  # float64 NHWC x HWIO convolution, exact on integers below 2^53
    scan: Callable  # (step, init, xs, reverse) -> the stacked per-token outputs


def _np_scan(step, init, xs, reverse: bool):
    state, outs = init, []
    for t in (reversed if reverse else iter)(range(len(xs[0]))):
        state, out = step(state, tuple(x[t] for x in xs))
        outs.append(out)
    outs = outs[::-1] if reverse else outs
    return tuple(np.stack(parts) for parts in zip(*outs))


def _jax_scan(step, init, xs, reverse: bool):
    return jax.lax.scan(step, init, xs, reverse=reverse)[1]


NUMPY, JAX = _Backend(np, np_conv, _np_scan), _Backend(jnp, jax_conv, _jax_scan)


def _integer_biwkv(backend: _Backend, decay, boost, k, v, tables_):
    """BiWKV (jaxlic.nn.biwkv's formula) of int64 keys at 2^-24 and int64 values, (B, T, C),
    with decay and boost at 2^-40: the values' mean under the weights, rounded, at v's exponent."""
    xp = backend.xp
    tokens = k.shape[1]
    w = floor_div(xp, 2 * decay + tokens * 2.0**16, tokens * 2.0**17).astype(np.int64)  # round(decay / T) at 2^-24
    u = floor_div(xp, 2 * boost + tokens * 2.0**16, tokens * 2.0**17).astype(np.int64)
    e = functools.partial(_exp_neg, xp, exp_coarse=tables_["exp_coarse"], exp_fine=tables_["exp_fine"])
    step = running_max_step(xp, w, e, _times_weight)
    empty = xp.zeros((k.shape[0], k.shape[2]), np.int64)
    init = (empty - (1 << 60), empty, empty, empty)
    xs = (xp.swapaxes(k, 0, 1), xp.swapaxes(v, 0, 1))
    m1, a1, b1 = (xp.swapaxes(s, 0, 1) for s in backend.scan(step, init, xs, False))
    m2, a2, b2 = (xp.swapaxes(s, 0, 1) for s in backend.scan(step, init, xs, True))
    own = u + k
    top = xp.maximum(xp.maximum(m1, m2), own)
    e1, e2, e3 = e(top - m1), e(top - m2), e(top - own)
    num = _times_weight(a1, e1) + _times_weight(a2, e2) + v * e3
    den = _times_weight(b1, e1) + _times_weight(b2, e2) + e3 + round(BIWKV_EPS * 2**KEY_EXPONENT)
    return xp.floor_divide(2 * num + den, 2 * den)


def _omni_kernel(p: dict) -> np.ndarray:
    """OmniShift's folded (5, 5, 1, C) kernel in float64 (jaxlic.nn.rwkv.OmniShift.kernel)."""
    alpha = np.asarray(p["alpha"], np.float64)
    kernel = np.zeros((5, 5, 1, np.shape(p["conv1x1"])[-1]))
    kernel[2, 2] = alpha[0]
    for weight, size in zip(alpha[1:], (1, 3, 5)):
        pad = (5 - size) // 2
        kernel[pad:5 - pad, pad:5 - pad] += weight * np.asarray(p[f"conv{size}x{size}"], np.float64)
    return kernel


# --- float arithmetic: the calibration's passes, recording every tensor's peak -------------------

class FloatArith:
    """The networks in float64 (NumPy; BiWKV through jaxlic.nn.biwkv), peaks recorded by name."""

    def __init__(self, params: dict):
        self.params = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
        self.peaks = {}

    def _seen(self, x, name):
        if name is not None:
            self.peaks[name] = max(self.peaks.get(name, 0.0), float(np.abs(x).max(initial=0.0)))
        return x

    def conv(self, x, path, transpose=False):
        p = params_at(self.params, path)
        stride = 2 if transpose else 1
        return self._seen(np_conv(x, np.asarray(p["kernel"], np.float64), transpose, stride) + p["bias"], path)

    def linear(self, x, path):
        return self._seen(x @ np.asarray(params_at(self.params, path)["kernel"], np.float64), path)

    def omni_shift(self, x, path):
        kernel = _omni_kernel(params_at(self.params, path))
        return self._seen(_depthwise(np, x, kernel), path)

    def layer_norm(self, x, path):
        p = params_at(self.params, path)
        centred = x - x.mean(-1, keepdims=True)
        normed = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + LAYER_NORM_EPS)
        return self._seen(normed * p["scale"] + p["bias"], path)

    def channel_scale(self, x, path):
        return self._seen(x * np.asarray(params_at(self.params, path), np.float64), path)

    def add(self, x, y, name, head=False):
        return self._seen(x + y, None if head else name)

    def mul(self, x, y, name):
        return self._seen(x * y, name)

    def squared_relu(self, x, name):
        return self._seen(np.maximum(x, 0.0) ** 2, name)

    def sigmoid(self, x):
        return 1 / (1 + np.exp(-x))

    def concat(self, xs, name):
        return self._seen(np.concatenate(xs, -1), name)

    def biwkv(self, k, v, path):
        b, h, w, c = k.shape
        p = params_at(self.params, path)
        with jax.enable_x64(True):
            out = biwkv(jnp.asarray(p["decay"], jnp.float64) / (h * w), jnp.asarray(p["boost"], jnp.float64) / (h * w),
                        jnp.asarray(k.reshape(b, h * w, c)), jnp.asarray(v.reshape(b, h * w, c)))
        return np.asarray(out).reshape(k.shape)


def _depthwise(xp, x, kernel):
    """Depthwise (k, k, 1, C) correlation, padding k // 2, tap by tap (exact on integers)."""
    size = kernel.shape[0]
    pad = size // 2
    h, w = x.shape[1:3]
    padded = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = 0.0
    for dy in range(size):
        for dx in range(size):
            out = out + padded[:, dy:dy + h, dx:dx + w] * kernel[dy, dx, 0]
    return out


# --- integer arithmetic --------------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    """An integer tensor (float64-held) at one exponent."""

    q: object
    e: int


class IntArith:
    """The networks on integers. With `params`, derives each operation's integer constants into
    `consts` (NumPy, on the first run); without, reads them from `consts` (a jit argument)."""

    def __init__(self, backend: _Backend, consts: dict, exponents: dict[str, int], params: dict | None = None):
        self.backend, self.xp, self.consts, self.exponents, self.params = backend, backend.xp, consts, exponents, params

    def _const(self, key: str, make: Callable[[], dict]):
        if key not in self.consts:
            if self.params is None:
                raise IntegerizationError(f"no integer constants for {key!r}")
            self.consts[key] = make()
        return self.consts[key]

    def _weights(self, key: str, kernel, bias, in_exp: int, in_max: float = LATENT_MAX) -> dict:
        def make():
            weight, b, f = integer_weights(key, kernel(), bias() if bias else np.zeros(np.shape(kernel())[-1]),
                                           in_exp, in_max)
            half, scale = requantization(f - self.exponents[key])
            return {"weight": weight, "bias": b, "half": half, "scale": scale}
        return self._const(key, make)

    def _out(self, acc, c: dict, name: str, lo: float = -ACT_MAX):
        return Value(requantize(self.backend, acc, c["half"], c["scale"], lo, ACT_MAX), self.exponents[name])

    def _to(self, x: Value, exponent: int, bound: float = ACT_MAX):
        half, scale = requantization(np.int64(x.e - exponent))
        return requantize(self.backend, x.q, half, scale, -bound, bound)

    def conv(self, x: Value, path, transpose=False):
        p = params_at(self.params, path) if self.params is not None else None
        c = self._weights(path, lambda: p["kernel"], lambda: p["bias"], x.e)
        return self._out(self.backend.conv(x.q, c["weight"], transpose, 2 if transpose else 1) + c["bias"], c, path)

    def linear(self, x: Value, path):
        c = self._weights(path, lambda: np.asarray(params_at(self.params, path)["kernel"])[None, None], None, x.e)
        return self._out(x.q @ c["weight"][0, 0], c, path)

    def omni_shift(self, x: Value, path):
        c = self._weights(path, lambda: _omni_kernel(params_at(self.params, path)), None, x.e)
        return self._out(_depthwise(self.xp, x.q, c["weight"]), c, path)

    def channel_scale(self, x: Value, path):
        c = self._weights(path, lambda: np.asarray(params_at(self.params, path))[None, None, None], None, x.e)
        return self._out(x.q * c["weight"][0, 0, 0], c, path)

    def layer_norm(self, x: Value, path):
        xp, q = self.xp, x.q
        C = q.shape[-1]
        centred = C * q - q.sum(-1, keepdims=True)  # C (x - mean), |.| < 2^31
        _, bits = xp.frexp(xp.abs(centred).max(-1, keepdims=True))
        shift = bits - (51 - (C - 1).bit_length()) // 2  # per token: C |centred 2^-shift|^2 < 2^51
        centred = xp.floor(xp.ldexp(centred, -shift))
        epsilon = LAYER_NORM_EPS * C**3  # var + eps = (sum centred^2 + eps C^3 2^(2 e)) / C^3 2^(2 e)
        grid_eps = xp.minimum(xp.floor(xp.ldexp(xp.full_like(centred[..., :1], epsilon), 2 * x.e - 2 * shift)), 2.0**51)
        root = xp.maximum(isqrt(xp, (centred * centred).sum(-1, keepdims=True) + grid_eps), 1.0)
        gain = float(math.isqrt(C << (2 * NORM_EXPONENT)))  # floor(sqrt(C) 2^16)
        normed = floor_div(xp, 2 * centred * gain + root, 2 * root)  # (x - mean) / std at 2^-16
        p = params_at(self.params, path) if self.params is not None else None
        c = self._weights(path, lambda: np.asarray(p["scale"])[None, None, None], lambda: p["bias"], NORM_EXPONENT,
                          float(1 << 22))
        return self._out(normed * c["weight"][0, 0, 0] + c["bias"], c, path)

    def add(self, x: Value, y: Value, name, head=False):
        if head:
            bound = 2.0**50
            return Value(self._to(x, HEAD_EXPONENT, bound) + self._to(y, HEAD_EXPONENT, bound), HEAD_EXPONENT)
        e = self.exponents[name]
        return Value(self.xp.clip(self._to(x, e) + self._to(y, e), -ACT_MAX, ACT_MAX), e)

    def mul(self, x: Value, y: Value, name):
        return Value(self._to(Value(x.q * y.q, x.e + y.e), self.exponents[name]), self.exponents[name])

    def squared_relu(self, x: Value, name):
        positive = self.xp.maximum(x.q, 0.0)
        return Value(self._to(Value(positive * positive, 2 * x.e), self.exponents[name]), self.exponents[name])

    def sigmoid(self, x: Value):
        xp, table = self.xp, tables()["sigmoid"]
        fine = self._to(x, NORM_EXPONENT, GATE_RANGE * 2.0**16 - 1)
        step = xp.floor(fine / 256)
        index = (step + GATE_RANGE * 256).astype(np.int64)
        low, high = xp.take(xp.asarray(table), index), xp.take(xp.asarray(table), index + 1)
        return Value(low + xp.floor((high - low) * (fine - 256 * step) / 256), NORM_EXPONENT)

    def concat(self, xs, name):
        e = max(x.e for x in xs) if name is None else self.exponents[name]
        bound = LATENT_MAX if name is None else ACT_MAX
        return Value(self.xp.concatenate([self._to(x, e, bound) for x in xs], -1), e)

    def biwkv(self, k: Value, v: Value, path):
        b, h, w, c = k.q.shape
        if h * w > MAX_TOKENS:
            raise IntegerizationError(f"{h * w} latent tokens: the integer BiWKV takes at most {MAX_TOKENS}")
        p = params_at(self.params, path) if self.params is not None else None
        limit = 2.0**(49 - DECAY_EXPONENT)
        c_ = self._const(f"{path}/decay_boost", lambda: {
            name: np.round(ldexp(np.clip(np.asarray(p[name], np.float64), -limit, limit), DECAY_EXPONENT))
            for name in ("decay", "boost")})
        keys = self._to(k, KEY_EXPONENT, 2.0**52).astype(np.int64).reshape(b, h * w, c)
        values = v.q.astype(np.int64).reshape(b, h * w, c)
        out = _integer_biwkv(self.backend, c_["decay"], c_["boost"], keys, values,
                             {name: self.xp.asarray(t.astype(np.int64)) for name, t in tables().items()})
        return Value(out.astype(np.float64).reshape(b, h, w, c), v.e)
