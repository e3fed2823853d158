"""Exact int8 convolutions on XLA's fast float32 convolutions.

XLA's CPU backend has no fast kernel for int8 x int8 -> int32 convolutions, but runs float32
ones at GEMM speed. A float32 convolution of integer-valued operands is exact when every partial
sum it forms is an integer of magnitude <= 2^24 (all such integers are float32 numbers, so no
addition or fused multiply-add rounds, in whatever order or blocking the kernel sums).

The bound: one output of a convolution sums x[t] * w[t] over its taps t, so every partial sum,
in any order, is at most max|x| * sum_t |w[t]| in magnitude. `max|x|` is the input tensor's
static range (validated by the graph), `sum_t |w[t]|` the L1 norm of one output channel's taps
in the form that runs (for a transposed convolution: one output phase's taps of its sub-pixel
kernel, which are also the taps of its per-phase form). When `max|x| * max_c L1(w[.., c]) <=
2^24` one float32 convolution is exact. Otherwise the weight is split into base-2^b digits,
w = sum_j d_j * 2^(b*j) with |d_j| <= 2^(b-1) (ceil(8 / b) planes), with the widest b whose every
digit plane passes the bound (4-bit digits: 2 planes, exact up to 2^24 / 128 / 8 = 16384 taps
at the extremes of int8). The planes run as one float32 convolution with their output channels
side by side; each plane's exact integer result is cast to int32 and shifted left by b*j, and
the planes are summed in int32. Casting and 32-bit
wrap-around shifts and adds are exact modulo 2^32, so the result is the int32 wrap of the exact
sum, as `jaxlic.quant.reference` computes it. No split (a fan-in past 2^24 / 128 / 2 taps)
keeps the integer convolution (`plan_conv` returns None).

This assumes the float convolution is a sum of products (XLA CPU: Eigen/oneDNN GEMM forms);
algorithms that transform operands (Winograd, FFT) would void it, which the tests would show.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.nn.conv import DIMENSIONS, conv_down, conv_down_reference, conv_up, subpixel_kernel
from jaxlic.quant.graph import IntegerGraph, Op

FLOAT32_EXACT = 1 << 24  # every integer of at most this magnitude is a float32 number
DIGIT_BITS = (8, 4, 3, 2)  # widest first: fewest planes
INT8_BITS = 8


def digit_planes(weight, bits: int) -> list:
    """Base-2^bits digits of int8 weights (NumPy or JAX integer arrays), lowest first:
    weight == sum_j planes[j] << (bits * j), every |digit| <= 2^(bits-1). All but the top digit
    are balanced, in [-2^(bits-1), 2^(bits-1)); the top one is what remains."""
    half, rest, digits = 1 << (bits - 1), weight, []
    for _ in range(-(-INT8_BITS // bits) - 1):
        digit = (rest + half) % (1 << bits) - half
        digits.append(digit)
        rest = (rest - digit) >> bits
    return digits + [rest]


def compose(planes: list, bits: int):
    """The inverse of `digit_planes`: sum_j planes[j] << (bits * j)."""
    return sum(d << (bits * j) for j, d in enumerate(planes))


def _taps(op: Op, weight: np.ndarray) -> np.ndarray:
    """The (.., in, out) kernel whose output columns hold each output's taps in the form that runs."""
    if op.kind == "conv2d_transpose":
        return np.asarray(subpixel_kernel(weight, op.attrs["stride"]))
    return weight


def plan_conv(op: Op, weight: np.ndarray, input_magnitude: int) -> int | None:
    """The digit width (bits) of the fewest planes whose every partial sum stays within 2^24,
    or None when even 2-bit planes would not."""
    for bits in DIGIT_BITS:
        reach = max(np.abs(_taps(op, d)).sum(axis=(0, 1, 2)).max() for d in digit_planes(weight.astype(np.int64), bits))
        if reach * input_magnitude <= FLOAT32_EXACT:
            return bits
    return None


def plan_graph(graph: IntegerGraph) -> dict[str, int | None]:
    """The digit width of every convolution of a validated graph (`plan_conv`), by op name."""
    plans = {}
    for op in graph.ops:
        if op.kind in ("conv2d", "conv2d_transpose"):
            x = graph.info[op.inputs[0]]
            plans[op.name] = plan_conv(op, graph.constants[op.consts["weight"]], max(abs(x.lo), abs(x.hi)))
    return plans


def float_conv(op: Op, x: jax.Array, weight: jax.Array) -> jax.Array:
    """The op's convolution (no bias) in the fast forms of the float models, their fast
    gradients included (`jaxlic.nn.conv`)."""
    s = op.attrs["stride"]
    if op.kind == "conv2d_transpose":
        return conv_up(x, weight, s)
    k, p = weight.shape[0], op.attrs["padding"]
    if p == k // 2:
        return conv_down(x, weight, s) if s > 1 else conv_down_reference(x, weight, 1)
    return jax.lax.conv_general_dilated(x, weight, (s, s), ((p, p), (p, p)), dimension_numbers=DIMENSIONS)


def exact_conv(op: Op, x: jax.Array, weight: jax.Array, bits: int) -> jax.Array:
    """int8 x int8 -> int32 convolution (no bias) through float32 planes of `bits`-bit weight
    digits (see the module docstring)."""
    planes = digit_planes(weight.astype(jnp.int32), bits)
    sums = float_conv(op, x.astype(jnp.float32), jnp.concatenate(planes, axis=3).astype(jnp.float32))
    cout = weight.shape[3]
    return compose([sums[..., j * cout:(j + 1) * cout].astype(jnp.int32) for j in range(len(planes))], bits)
