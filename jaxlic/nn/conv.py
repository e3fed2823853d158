"""Strided convolutions of the Balle transforms, in formulations that are fast on XLA CPU.

Kernels keep the standard layouts so weights convert both ways with PyTorch/CompressAI:
- `Conv` (downsampling): (kh, kw, in, out), cross-correlation, padding k // 2 on each side.
- `ConvTranspose` (upsampling): (kh, kw, in, out) holding PyTorch's ConvTranspose2d weight
  (in, out, kh, kw) transposed; scatter semantics with padding k // 2 and output padding
  stride - 1, so the output is exactly stride x the input size.

XLA CPU runs strided and transposed convolutions slowly (their weight gradients become
reversed-window convolutions that no fast path accepts), so each pass is computed in the form
that is fastest and exactly equivalent:
- downsampling: direct stride-s forward; input gradient in sub-pixel form; XLA's own weight
  gradient;
- upsampling: sub-pixel forward (stride-1 convolution to s*s*out channels, then depth-to-space);
  input gradient as a direct stride-s convolution; weight gradient through the sub-pixel form.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """(N, H, W, b*b*C) -> (N, H*b, W*b, C); channel index = (row phase, column phase, c)."""
    n, h, w, c = x.shape
    out = c // (block * block)
    x = x.reshape(n, h, w, block, block, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, out)


@functools.lru_cache(maxsize=None)
def _subpixel_taps(kernel: int, stride: int, padding: int) -> tuple[int, int, np.ndarray]:
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
    _, window, taps = _subpixel_taps(k, stride, k // 2)
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
    left, window, _ = _subpixel_taps(k, stride, k // 2)
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


def conv_down_reference(x: jax.Array, kernel: jax.Array, stride: int, preferred_element_type=None) -> jax.Array:
    """Direct strided convolution with padding k // 2 (output = ceil(input / stride))."""
    p = kernel.shape[0] // 2
    return _conv(x, kernel, stride, ((p, p), (p, p)), preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_down(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Downsampling convolution: direct forward, sub-pixel input gradient."""
    return conv_down_reference(x, kernel, stride)


def _conv_down_fwd(x, kernel, stride):
    return conv_down_reference(x, kernel, stride), (x, kernel)


def _conv_down_bwd(stride, residuals, grad):
    x, kernel = residuals
    # d/dx of a strided correlation is the transposed convolution with in/out swapped.
    grad_x = conv_transpose_subpixel(grad, kernel.transpose(0, 1, 3, 2), stride)
    grad_x = grad_x[:, : x.shape[1], : x.shape[2]]
    _, weight_vjp = jax.vjp(lambda w: conv_down_reference(x, w, stride), kernel)
    return grad_x, weight_vjp(grad)[0]


conv_down.defvjp(_conv_down_fwd, _conv_down_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_up(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Upsampling (transposed) convolution: sub-pixel forward, direct strided input gradient."""
    return conv_transpose_subpixel(x, kernel, stride)


def _conv_up_fwd(x, kernel, stride):
    return conv_transpose_subpixel(x, kernel, stride), (x, kernel)


def _conv_up_bwd(stride, residuals, grad):
    x, kernel = residuals
    # d/dx of a transposed convolution is the strided correlation with in/out swapped.
    grad_x = conv_down_reference(grad, kernel.transpose(0, 1, 3, 2), stride)
    _, weight_vjp = jax.vjp(lambda w: conv_transpose_subpixel(x, w, stride), kernel)
    return grad_x, weight_vjp(grad)[0]


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
