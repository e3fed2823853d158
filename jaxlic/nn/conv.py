"""Strided convolutions of the Balle transforms, in formulations that are fast on XLA CPU.

Kernels keep the standard layouts so weights convert both ways with PyTorch/CompressAI:
- `Conv` (downsampling): (kh, kw, in, out), cross-correlation, padding k // 2 on each side.
- `ConvTranspose` (upsampling): (kh, kw, in, out) holding PyTorch's ConvTranspose2d weight
  (in, out, kh, kw) transposed; scatter semantics with padding k // 2 and output padding
  stride - 1, so the output is exactly stride x the input size.

XLA CPU runs strided and transposed convolutions slowly (their weight gradients become
reversed-window convolutions that no fast path accepts), so each pass is computed in the
exactly equivalent form that measured fastest (benchmarks/bench_conv_forms.py):
- downsampling: direct stride-s forward and XLA's weight gradient; input gradient as a
  transposed convolution in per-phase form. The space-to-depth form (space-to-depth, then a
  stride-1 convolution, `conv_down_space_to_depth`) is equivalent but measured slower than
  these in every pass on XLA CPU (it adds zero taps: 9 x 4 instead of 25 per output for 5x5 / 2);
- upsampling: per-phase forward (s*s stride-1 convolutions, interleaved) or, for narrow
  outputs, sub-pixel (one stride-1 convolution to s*s*out channels, then depth-to-space);
  input gradient as a direct stride-s convolution; weight gradient through the same form
  (narrow outputs: the strided correlation's weight gradient).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """(N, H*b, W*b, C) -> (N, H, W, b*b*C); the inverse of `depth_to_space`."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // block, w // block, block * block * c)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """(N, H, W, b*b*C) -> (N, H*b, W*b, C); channel index = (row phase, column phase, c)."""
    n, h, w, c = x.shape
    out = c // (block * block)
    x = x.reshape(n, h, w, block, block, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, out)


@functools.lru_cache(maxsize=None)
def subpixel_taps(kernel: int, stride: int, padding: int) -> tuple[int, int, np.ndarray]:
    """Window offsets of the sub-pixel form of a transposed convolution.

    Output row s*m + r receives input rows m + t with kernel row k = r + padding - s*t.
    Returns (left pad, window size, taps[r, t_index] = k or -1 where no tap exists).
    """
    offsets = [
        t
        for r in range(stride)
        for t in range(-kernel, kernel + 1)
        if 0 <= r + padding - stride * t < kernel
    ]
    t_min, t_max = min(offsets), max(offsets)
    window = t_max - t_min + 1
    taps = np.full((stride, window), -1, dtype=np.int32)
    for r in range(stride):
        for i, t in enumerate(range(t_min, t_max + 1)):
            k = r + padding - stride * t
            if 0 <= k < kernel:
                taps[r, i] = k
    return -t_min, window, taps


def subpixel_kernel(kernel: jax.Array, stride: int) -> jax.Array:
    """Rearrange a (k, k, in, out) transposed-conv kernel into the (w, w, in, s*s*out) stride-1
    kernel of its sub-pixel form (padding k // 2, output padding s - 1)."""
    k = kernel.shape[0]
    _, window, taps = subpixel_taps(k, stride, k // 2)
    valid = taps >= 0
    index = np.where(valid, taps, 0)
    # rows[ry, ty, kx, in, out] then cols -> (ry, ty, rx, tx, in, out)
    rows = kernel[index] * valid[:, :, None, None, None]
    both = rows[:, :, index] * valid[None, None, :, :, None, None]
    # -> (ty, tx, in, ry, rx, out) -> (window, window, in, s*s*out)
    both = both.transpose(1, 3, 4, 0, 2, 5)
    cin, cout = kernel.shape[2], kernel.shape[3]
    return both.reshape(window, window, cin, stride * stride * cout)


def _conv(x: jax.Array, kernel: jax.Array, stride: int, padding, preferred_element_type=None) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), padding, dimension_numbers=DIMENSIONS,
        preferred_element_type=preferred_element_type,
    )


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array, stride: int, preferred_element_type=None) -> jax.Array:
    """Transposed convolution (output = stride x input) as stride-1 conv + depth-to-space.

    With int8 operands and preferred_element_type=int32 it is the exact integer convolution."""
    k = kernel.shape[0]
    left, window, _ = subpixel_taps(k, stride, k // 2)
    pad = ((left, window - 1 - left),) * 2
    return depth_to_space(_conv(x, subpixel_kernel(kernel, stride), 1, pad, preferred_element_type), stride)


def conv_transpose_reference(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """The same transposed convolution through lax.conv_transpose (slow on CPU; for tests)."""
    k = kernel.shape[0]
    p = k // 2
    # lax's transposed conv is a dilated correlation: flip the kernel to get scatter semantics.
    pad = ((k - 1 - p, k - 1 - p + stride - 1),) * 2
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], (1, 1), pad, lhs_dilation=(stride, stride),
        dimension_numbers=DIMENSIONS,
    )


def space_to_depth_kernel(kernel: jax.Array, stride: int) -> jax.Array:
    """Rearrange a (k, k, in, out) strided-conv kernel into the (a, a, s*s*in, out) stride-1
    kernel of its space-to-depth form, a = ceil(k / s): tap k = s*a + b moves to window offset a
    and input phase b (zero where s*a + b >= k)."""
    k, _, cin, cout = kernel.shape
    taps = -(-k // stride)
    padded = jnp.pad(kernel, ((0, stride * taps - k), (0, stride * taps - k), (0, 0), (0, 0)))
    padded = padded.reshape(taps, stride, taps, stride, cin, cout)
    return padded.transpose(0, 2, 1, 3, 4, 5).reshape(taps, taps, stride * stride * cin, cout)


def conv_down_space_to_depth(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Strided convolution (padding k // 2, output ceil(input / s)) as space-to-depth of the
    padded input followed by a stride-1 valid convolution with `space_to_depth_kernel`."""
    k = kernel.shape[0]
    taps = -(-k // stride)
    p = k // 2
    n, h, w, c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = stride * (out_h + taps - 1) - h - p
    pad_w = stride * (out_w + taps - 1) - w - p
    x = jnp.pad(x, ((0, 0), (p, pad_h), (p, pad_w), (0, 0)))
    return _conv(space_to_depth(x, stride), space_to_depth_kernel(kernel, stride), 1, "VALID")


def conv_down_reference(x: jax.Array, kernel: jax.Array, stride: int, preferred_element_type=None) -> jax.Array:
    """Direct strided convolution with padding k // 2 (output = ceil(input / stride))."""
    p = kernel.shape[0] // 2
    return _conv(x, kernel, stride, ((p, p), (p, p)), preferred_element_type)


@functools.lru_cache(maxsize=None)
def _phase_taps(kernel: int, stride: int, padding: int) -> tuple[tuple[int, int, tuple[int, ...]], ...] | None:
    """Per output phase r of a transposed convolution: (left pad, right pad, kernel indices).

    Output row s*m + r receives input rows m + t, t = t_lo..t_hi, with kernel row
    k = r + padding - s*t: a stride-1 correlation of the input padded by (-t_lo, t_hi) with
    those kernel rows. None when a phase has no tap or would need a negative pad.
    """
    phases = []
    for r in range(stride):
        ts = [t for t in range(-kernel, kernel + 1) if 0 <= r + padding - stride * t < kernel]
        if not ts or min(ts) > 0 or max(ts) < 0:
            return None
        phases.append((-min(ts), max(ts), tuple(r + padding - stride * t for t in ts)))
    return tuple(phases)


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Transposed convolution as s*s exact stride-1 convolutions (one per output phase) whose
    outputs are interleaved: no zero taps (25 per 4 outputs for 5x5 / 2 instead of the 36 of
    the sub-pixel form)."""
    k = kernel.shape[0]
    phases = _phase_taps(k, stride, k // 2)
    if phases is None:
        return conv_transpose_subpixel(x, kernel, stride)
    rows = []
    for top, bottom, ky in phases:
        cols = []
        for left, right, kx in phases:
            part = kernel[np.array(ky)][:, np.array(kx)]
            cols.append(_conv(x, part, 1, ((top, bottom), (left, right))))
        rows.append(jnp.stack(cols, axis=3))  # (N, h, w, s, C)
    out = jnp.stack(rows, axis=2)  # (N, h, s, w, s, C)
    n, h, _, w, _, c = out.shape
    return out.reshape(n, h * stride, w * stride, c)


def conv_transpose_weight_grad_direct(x: jax.Array, grad: jax.Array, kernel_shape, stride: int) -> jax.Array:
    """Weight gradient of a transposed convolution as XLA's weight gradient of the strided
    correlation it is the transpose of (input `grad`, cotangent `x`)."""
    k, _, cin, cout = kernel_shape
    zeros = jnp.zeros((k, k, cout, cin), grad.dtype)
    _, vjp = jax.vjp(lambda w: conv_down_reference(grad, w, stride), zeros)
    return vjp(x)[0].transpose(0, 1, 3, 2)


# XLA CPU's convolutions lose efficiency with few output channels: below this many, the
# per-phase form (s*s narrow convolutions) is slower than the sub-pixel one (one conv to
# s*s*out channels), above it the per-phase form wins by skipping the sub-pixel's zero taps.
PHASE_MIN_CHANNELS = 16


def conv_transpose_fast(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """The transposed convolution in its fastest exact form for this width."""
    if kernel.shape[3] >= PHASE_MIN_CHANNELS:
        return conv_transpose_phases(x, kernel, stride)
    return conv_transpose_subpixel(x, kernel, stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_down(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Downsampling convolution: direct forward, per-phase/sub-pixel input gradient."""
    return conv_down_reference(x, kernel, stride)


def _conv_down_fwd(x, kernel, stride):
    return conv_down_reference(x, kernel, stride), (x, kernel)


def _conv_down_bwd(stride, residuals, grad):
    x, kernel = residuals
    # d/dx of a strided correlation is the transposed convolution with in/out swapped.
    grad_x = conv_transpose_fast(grad, kernel.transpose(0, 1, 3, 2), stride)
    grad_x = grad_x[:, : x.shape[1], : x.shape[2]]
    _, weight_vjp = jax.vjp(lambda w: conv_down_reference(x, w, stride), kernel)
    return grad_x, weight_vjp(grad)[0]


conv_down.defvjp(_conv_down_fwd, _conv_down_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_up(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Upsampling (transposed) convolution: per-phase/sub-pixel forward, direct strided input
    gradient."""
    return conv_transpose_fast(x, kernel, stride)


def _conv_up_fwd(x, kernel, stride):
    return conv_transpose_fast(x, kernel, stride), (x, kernel)


def _conv_up_bwd(stride, residuals, grad):
    x, kernel = residuals
    # d/dx of a transposed convolution is the strided correlation with in/out swapped.
    grad_x = conv_down_reference(grad, kernel.transpose(0, 1, 3, 2), stride)
    if kernel.shape[3] >= PHASE_MIN_CHANNELS:
        _, weight_vjp = jax.vjp(lambda w: conv_transpose_phases(x, w, stride), kernel)
        grad_w = weight_vjp(grad)[0]
    else:
        # Narrow outputs (the last layer, N -> 3): the strided correlation's weight gradient is
        # 2x faster than the sub-pixel form's, whose 12 output channels starve the GEMM.
        grad_w = conv_transpose_weight_grad_direct(x, grad, kernel.shape, stride)
    return grad_x, grad_w


conv_up.defvjp(_conv_up_fwd, _conv_up_bwd)


def _kernel_init(fan_in: int):
    """PyTorch's default conv init (kaiming uniform, a = sqrt(5)) so training matches peers."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class Conv(nn.Module):
    """k x k convolution with stride s (downsampling when s > 1) and padding k // 2."""

    features: int
    kernel_size: int = 5
    stride: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        init = _kernel_init(cin * k * k)
        kernel = self.param("kernel", init, (k, k, cin, self.features))
        bias = self.param("bias", init, (self.features,))
        if self.stride == 1:
            y = conv_down_reference(x, kernel, 1)
        else:
            y = conv_down(x, kernel, self.stride)
        return y + bias


class ConvTranspose(nn.Module):
    """k x k transposed convolution upsampling by `stride` (output exactly stride x input)."""

    features: int
    kernel_size: int = 5
    stride: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        # PyTorch's ConvTranspose2d computes fan_in from weight.size(1) * k * k = out * k * k.
        init = _kernel_init(self.features * k * k)
        kernel = self.param("kernel", init, (k, k, cin, self.features))
        bias = self.param("bias", init, (self.features,))
        return conv_up(x, kernel, self.stride) + bias
