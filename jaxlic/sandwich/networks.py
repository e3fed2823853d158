"""Pre/post-processors of a sandwich: learned residuals on the plain pipeline, quality-conditioned.

Each processor is linear pixel map + pixel-wise MLP + U-Net, summed (the sandwich papers' U-Net
with a pixel-wise bypass), and `Sandwich` adds it to the scenario's fixed plain path (luma,
bicubic resize, 8-bit rounding, ...). The last layer of each branch (the linear map, the MLP's
output layer, the U-Net's output convolution) starts at zero and the layers before it do not, so an
untrained sandwich is exactly the plain pipeline, yet every branch gets a gradient from the first
step. Both processors see the JPEG quality as an extra input channel (the decoder reads it from
the file), so one model serves every rate point. Resolution changes are space-to-depth before the
pre-processor and depth-to-space after the post-processor, so both run at the code resolution.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _act(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.1)


class PixelMLP(nn.Module):
    """A per-pixel MLP (1x1 convolutions); the output layer starts at zero."""

    hidden: int
    depth: int
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.depth):
            x = _act(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.zeros)(x)


class UNet(nn.Module):
    """A small U-Net (two 3x3 convolutions per level, average-pool down, nearest up, concatenated
    skips) for any input size: it pads by edge replication to whole levels and crops back."""

    features: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[1:3]
        m = 2 ** (len(self.features) - 1)
        x = jnp.pad(x, ((0, 0), (0, -h % m), (0, -w % m), (0, 0)), mode="edge")
        skips = []
        for level, f in enumerate(self.features):
            if level:
                x = nn.avg_pool(x, (2, 2), (2, 2))
            x = _act(nn.Conv(f, (3, 3))(_act(nn.Conv(f, (3, 3))(x))))
            skips.append(x)
        for f, skip in zip(reversed(self.features[:-1]), reversed(skips[:-1])):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            x = _act(nn.Conv(f, (3, 3))(_act(nn.Conv(f, (3, 3))(jnp.concatenate([x, skip], -1)))))
        return nn.Conv(self.out, (3, 3), kernel_init=nn.initializers.zeros)(x)[:, :h, :w]


class Processor(nn.Module):
    """A residual: zero-initialized linear map + pixel MLP + U-Net, conditioned on quality/100."""

    out: int
    features: Sequence[int]
    mlp_hidden: int
    mlp_depth: int

    @nn.compact
    def __call__(self, x: jax.Array, quality: jax.Array) -> jax.Array:
        q = jnp.broadcast_to((quality.astype(x.dtype) / 100.0)[:, None, None, None], (*x.shape[:3], 1))
        conditioned = jnp.concatenate([x, q], -1)
        linear = nn.Dense(self.out, kernel_init=nn.initializers.zeros, name="linear")(x)
        mlp = PixelMLP(self.mlp_hidden, self.mlp_depth, self.out)(conditioned)
        return linear + mlp + UNet(self.features, self.out)(conditioned)
