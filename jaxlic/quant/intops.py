"""Pure-NumPy integer reference ops: the ground truth every backend must match bit for bit.

Layouts: activations are NHWC; convolution weights are HWIO, i.e. (KH, KW, C_in, C_out), for both
the direct and the transposed convolution. A PyTorch ``ConvTranspose2d`` weight (C_in, C_out,
KH, KW) becomes HWIO by ``w.transpose(2, 3, 0, 1)``; a PyTorch ``Conv2d`` weight (C_out, C_in, KH,
KW) by ``w.transpose(2, 3, 1, 0)``.

Accumulation is int32 with two's-complement wrap-around (as on VTA). Products are summed in
float64, which is exact for every realistic layer (|sum| < 2^53), then wrapped to int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def _wrap_int32(values: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of exact integer-valued float64/int64 values to int32."""
    return np.asarray(values).astype(np.int64).astype(np.int32)


def _check_int8(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.int8:
        raise TypeError(f"{name} must be int8, got {array.dtype}")
    return array


def _check_bias(bias: np.ndarray | None, channels: int) -> np.ndarray:
    if bias is None:
        return np.zeros(channels, np.int32)
    bias = np.asarray(bias)
    if bias.dtype != np.int32 or bias.shape != (channels,):
        raise ValueError(f"bias must be int32 of shape ({channels},), got {bias.dtype} {bias.shape}")
    return bias


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a direct convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int, padding: int,
                               output_padding: int) -> int:
    """Output length of a transposed convolution along one axis (PyTorch convention)."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, stride: int = 1,
           padding: int = 0) -> np.ndarray:
    """int8 NHWC x int8 HWIO -> int32 NHWC direct convolution with zero padding and bias."""
    x, w = _check_int8("x", x), _check_int8("w", w)
    n, h, wd, cin = x.shape
    kh, kw, wcin, cout = w.shape
    if wcin != cin:
        raise ValueError(f"weight expects {wcin} input channels, activation has {cin}")
    ho, wo = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"convolution of a {h}x{wd} input with a {kh}x{kw} kernel is empty")
    xp = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    wf = w.astype(np.float64)
    acc = np.zeros((n, ho, wo, cout), np.float64)
    for dy in range(kh):
        for dx in range(kw):
            window = xp[:, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride]
            acc += window @ wf[dy, dx]
    return _wrap_int32(acc + _check_bias(bias, cout))


def conv2d_transpose(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None,
                     stride: int = 1, padding: int = 0, output_padding: int = 0) -> np.ndarray:
    """int8 NHWC x int8 HWIO -> int32 NHWC transposed convolution (PyTorch ConvTranspose2d rule).

    Input pixel i contributes x[i] * w[k] to output position o = stride * i - padding + k.
    """
    x, w = _check_int8("x", x), _check_int8("w", w)
    n, h, wd, cin = x.shape
    kh, kw, wcin, cout = w.shape
    if wcin != cin:
        raise ValueError(f"weight expects {wcin} input channels, activation has {cin}")
    if not 0 <= output_padding < stride:
        raise ValueError(f"output_padding {output_padding} must be smaller than stride {stride}")
    ho = conv_transpose_output_size(h, kh, stride, padding, output_padding)
    wo = conv_transpose_output_size(wd, kw, stride, padding, output_padding)
    if ho < 1 or wo < 1:
        raise ValueError("transposed convolution output is empty")
    full_h = max(stride * (h - 1) + kh, padding + ho)
    full_w = max(stride * (wd - 1) + kw, padding + wo)
    full = np.zeros((n, full_h, full_w, cout), np.float64)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    for dy in range(kh):
        for dx in range(kw):
            full[:, dy:dy + stride * (h - 1) + 1:stride, dx:dx + stride * (wd - 1) + 1:stride] += xf @ wf[dy, dx]
    acc = full[:, padding:padding + ho, padding:padding + wo]
    return _wrap_int32(acc + _check_bias(bias, cout))


@dataclass(frozen=True)
class SubpixelTap:
    """One kernel tap of one output phase: out[s*m + phase] += x[m + offset] * w[kernel_index]."""

    phase: int
    offset: int
    kernel_index: int


def subpixel_taps(kernel: int, stride: int, padding: int) -> list[SubpixelTap]:
    """Decompose a 1-D transposed convolution into `stride` direct convolutions ("phases").

    Output o = stride*m + a receives x[i] * w[k] for every k with k = o + padding - stride*i,
    i.e. k = a + padding (mod stride) and i = m + (a + padding - k) / stride. Every kernel index
    belongs to exactly one phase, so no multiply is wasted.
    """
    taps = []
    for phase in range(stride):
        for k in range(kernel):
            if (phase + padding - k) % stride == 0:
                taps.append(SubpixelTap(phase, (phase + padding - k) // stride, k))
    return taps


def conv2d_transpose_subpixel(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None,
                              stride: int = 1, padding: int = 0,
                              output_padding: int = 0) -> np.ndarray:
    """The same result as `conv2d_transpose`, computed phase by phase at input resolution."""
    x, w = _check_int8("x", x), _check_int8("w", w)
    n, h, wd, _ = x.shape
    kh, kw, _, cout = w.shape
    ho = conv_transpose_output_size(h, kh, stride, padding, output_padding)
    wo = conv_transpose_output_size(wd, kw, stride, padding, output_padding)
    taps_y, taps_x = subpixel_taps(kh, stride, padding), subpixel_taps(kw, stride, padding)
    rows, cols = -(-ho // stride), -(-wo // stride)
    lo_y, lo_x = min(t.offset for t in taps_y), min(t.offset for t in taps_x)
    hi_y = max(t.offset for t in taps_y) + rows - h
    hi_x = max(t.offset for t in taps_x) + cols - wd
    xp = np.pad(x.astype(np.float64), ((0, 0), (max(-lo_y, 0), max(hi_y, 0)),
                                       (max(-lo_x, 0), max(hi_x, 0)), (0, 0)))
    base_y, base_x = max(-lo_y, 0), max(-lo_x, 0)
    out = np.zeros((n, rows * stride, cols * stride, cout), np.float64)
    wf = w.astype(np.float64)
    for ty in taps_y:
        for tx in taps_x:
            window = xp[:, base_y + ty.offset:base_y + ty.offset + rows,
                        base_x + tx.offset:base_x + tx.offset + cols]
            out[:, ty.phase::stride, tx.phase::stride] += window @ wf[ty.kernel_index, tx.kernel_index]
    return _wrap_int32(out[:, :ho, :wo] + _check_bias(bias, cout))


def output_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest of int8, uint8, int16, int32 that holds every value of [lo, hi]."""
    for dtype in (np.int8, np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo <= hi <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"clamp range [{lo}, {hi}] does not fit int32")


def requantize(acc: np.ndarray, shift: int | np.ndarray, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """int32 -> clamp((acc + 2^(shift-1)) >> shift, lo, hi); shift 0 adds nothing.

    The rounding add wraps at 32 bits and the shift is arithmetic, exactly as the VTA ALU does.
    `shift` is an int or one int per channel (last axis); a negative shift is a left shift by
    -shift with 32-bit wrap (VTA's SHR with a negative operand). The result has the smallest
    dtype that holds [lo, hi] (int8 for the default range).
    """
    shift = np.asarray(shift)
    if not np.issubdtype(shift.dtype, np.integer) or shift.ndim > 1:
        raise ValueError(f"shift must be an int or a 1-D int array, got {shift.dtype} {shift.shape}")
    if shift.size and (shift.min() < -31 or shift.max() > 31):
        raise ValueError(f"shift must be in [-31, 31], got {shift.min()}..{shift.max()}")
    if not np.iinfo(np.int32).min <= lo <= hi <= np.iinfo(np.int32).max:
        raise ValueError(f"clamp range [{lo}, {hi}] must lie inside int32")
    acc = np.asarray(acc)
    if acc.dtype != np.int32:
        raise TypeError(f"acc must be int32, got {acc.dtype}")
    shift = shift.astype(np.int64)
    right = np.maximum(shift, 0)
    rounding = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    wide = np.where(shift >= 0, acc.astype(np.int64) + rounding, acc.astype(np.int64) << np.maximum(-shift, 0))
    wrapped = wide.astype(np.int32)  # two's-complement wrap, as the 32-bit ALU
    return np.clip(wrapped >> right.astype(np.int32), lo, hi).astype(output_dtype(lo, hi))


def isqrt(n: np.ndarray) -> np.ndarray:
    """floor(sqrt(n)) of int32 n >= 0 (negatives give 0), by the digit-by-digit method.

    Sixteen rounds of compare, subtract and shift; no multiply and no floating point, so every
    backend that runs the same rounds gets the same bits.
    """
    n = np.asarray(n)
    if n.dtype != np.int32:
        raise TypeError(f"isqrt needs int32, got {n.dtype}")
    rest, root = np.maximum(n, 0), np.zeros_like(n)
    for bit in (1 << (30 - 2 * i) for i in range(16)):
        trial = root + bit
        take = rest >= trial
        rest = np.where(take, rest - trial, rest)
        root = np.where(take, (root >> 1) + bit, root >> 1)
    return root


def subpixel_conv_weights(w: np.ndarray, stride: int, padding: int) -> tuple[np.ndarray, int]:
    """Transposed-conv HWIO weights -> (weights, padding) of the equivalent stride-1 direct conv.

    The direct conv's output channel (py * stride + px) * C_out + c holds output phase (py, px) of
    channel c, so `depth_to_space` of its result equals `conv2d_transpose` (when the sub-pixel
    window is centred, e.g. kernel 5, stride 2, padding 2); taps outside a phase get zero weights.
    """
    kh, kw, cin, cout = w.shape
    if kh != kw:
        raise ValueError("sub-pixel packing needs a square kernel")
    taps = subpixel_taps(kh, stride, padding)
    lo, hi = min(t.offset for t in taps), max(t.offset for t in taps)
    if lo != -hi:
        raise ValueError(f"sub-pixel window [{lo}, {hi}] is not centred; use conv2d_transpose_subpixel")
    span = hi - lo + 1
    packed = np.zeros((span, span, cin, stride, stride, cout), w.dtype)
    for ty in taps:
        for tx in taps:
            packed[ty.offset - lo, tx.offset - lo, :, ty.phase, tx.phase] = w[ty.kernel_index, tx.kernel_index]
    return packed.reshape(span, span, cin, stride * stride * cout), -lo


def depth_to_space(y: np.ndarray, stride: int) -> np.ndarray:
    """(N, H, W, s*s*C) with channel (py*s + px)*C + c -> (N, H*s, W*s, C)."""
    n, h, w, c = y.shape
    channels = c // (stride * stride)
    return np.ascontiguousarray(y.reshape(n, h, w, stride, stride, channels).transpose(0, 1, 3, 2, 4, 5)
                                .reshape(n, h * stride, w * stride, channels))
