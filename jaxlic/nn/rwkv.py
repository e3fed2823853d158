"""Bi-RWKV blocks (Vision-RWKV's bidirectional RWKV as LALIC uses it), on NHWC maps.

A block is x += gamma1 * SpatialMix(LN(x)); x += gamma2 * ChannelMix(LN(x)), its tokens the
positions in row-major order. Both mixers first run OmniShift, a 5x5 depthwise convolution
re-parameterized from four branches (identity, depthwise 1x1, 3x3 and 5x5, weighted by alpha):
the branches are what trains, and every call folds them into one 5x5 kernel and runs a single
convolution (the form the official model reaches at inference). Parameter names follow the
official PyTorch modules (`att.key`, `ffn.omni_shift.conv3x3`, ...); kernels are (k, k, 1, C)
and (in, out).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlic.nn.biwkv import biwkv

LAYER_NORM_EPS = 1e-5  # PyTorch's default
BRANCHES = (1, 3, 5)  # kernel sizes of OmniShift's depthwise branches


def layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LAYER_NORM_EPS)


def linear(features: int) -> nn.Dense:
    return nn.Dense(features, use_bias=False)


class OmniShift(nn.Module):
    """alpha0 x + alpha1 dw1x1(x) + alpha2 dw3x3(x) + alpha3 dw5x5(x), run as one 5x5 depthwise
    convolution."""

    features: int

    def setup(self):
        self.alpha = self.param("alpha", nn.initializers.normal(1.0), (4,))
        init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
        self.branches = [self.param(f"conv{k}x{k}", init, (k, k, 1, self.features)) for k in BRANCHES]

    def kernel(self) -> jax.Array:
        """The folded (5, 5, 1, C) kernel."""
        identity = jnp.zeros((5, 5, 1, self.features)).at[2, 2].set(1.0)
        folded = self.alpha[0] * identity
        for alpha, (size, branch) in zip(self.alpha[1:], zip(BRANCHES, self.branches)):
            pad = (5 - size) // 2
            folded = folded + alpha * jnp.pad(branch, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
        return folded

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            x, self.kernel().astype(x.dtype), (1, 1), ((2, 2), (2, 2)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.features)


class SpatialMix(nn.Module):
    """sigmoid(R x) * BiWKV(decay / T, boost / T, K x, V x), projected, after OmniShift."""

    features: int

    def setup(self):
        c = self.features
        self.omni_shift = OmniShift(c)
        self.key, self.value, self.receptance, self.output = (linear(c) for _ in range(4))
        self.decay = self.param("decay", nn.initializers.normal(1.0), (c,))
        self.boost = self.param("boost", nn.initializers.normal(1.0), (c,))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        x = self.omni_shift(x)
        tokens = h * w
        mixed = biwkv(self.decay / tokens, self.boost / tokens,
                      self.key(x).reshape(b, tokens, c), self.value(x).reshape(b, tokens, c))
        return self.output(nn.sigmoid(self.receptance(x)) * mixed.reshape(b, h, w, c))


def squared_relu_mix(x: jax.Array, key: nn.Module, value: nn.Module, receptance: nn.Module) -> jax.Array:
    """sigmoid(R x) * V relu(K x)^2: RWKV's channel mix."""
    return nn.sigmoid(receptance(x)) * value(jnp.square(nn.relu(key(x))))


class ChannelMix(nn.Module):
    """RWKV's channel mix after OmniShift, `hidden_rate` x wide inside."""

    features: int
    hidden_rate: int = 4

    def setup(self):
        c = self.features
        self.omni_shift = OmniShift(c)
        self.key, self.receptance, self.value = linear(self.hidden_rate * c), linear(c), linear(c)

    def __call__(self, x: jax.Array) -> jax.Array:
        return squared_relu_mix(self.omni_shift(x), self.key, self.value, self.receptance)


class BiRwkvBlock(nn.Module):
    """x + gamma1 * SpatialMix(LN(x)), then + gamma2 * ChannelMix(LN(x))."""

    features: int
    hidden_rate: int = 4

    def setup(self):
        c = self.features
        self.ln1, self.ln2 = layer_norm(), layer_norm()
        self.att, self.ffn = SpatialMix(c), ChannelMix(c, self.hidden_rate)
        self.gamma1 = self.param("gamma1", nn.initializers.ones, (c,))
        self.gamma2 = self.param("gamma2", nn.initializers.ones, (c,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.gamma1 * self.att(self.ln1(x))
        return x + self.gamma2 * self.ffn(self.ln2(x))
