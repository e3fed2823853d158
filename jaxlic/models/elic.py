"""ELIC (He et al., CVPR 2022) as CompressAI 1.2.8 builds it: `Elic2022Official` ("elic2022")
and `Elic2022Chandelier` ("elic2022-chandelier").

Transforms: residual bottleneck blocks and Cheng 2020's simplified attention blocks in g_a/g_s;
a mean-scale hyperprior whose output feeds the space-channel context model (SCCTX): the latent is
split into uneven channel groups, and each group is coded in two checkerboard passes
(anchors, where row + column is even, then the rest). A group's Gaussian parameters come from
a pointwise "parameter aggregation" network fed with [spatial context, channel context,
hyperprior output]: the spatial context is zero for anchors and a 5x5 convolution of the
decoded anchors for the rest; the channel context is a 5x5 conv stack over the groups decoded
before (all of them in Official; the first and the latest in Chandelier).

The forward pass is the parallel training form: every group runs both passes on whole tensors,
the aggregation only at the positions of its pass (half the latent). The checkerboard mask of
CompressAI's context convolution is implied: its input holds decoded anchors only (zeros
elsewhere) and only its outputs at non-anchors are used, so each masked tap multiplies a zero.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.entropy.factorized import EntropyBottleneck
from jaxlic.entropy.gaussian import gaussian_conditional
from jaxlic.entropy.quantize import QuantizeMode, quantize
from jaxlic.errors import ConfigError
from jaxlic.models.config import ModelConfig
from jaxlic.models.layers import conv, deconv, relu, run

# ELIC's groups for M = 320 are [16, 16, 32, 64, 192]: units of M // 20 in the ratio 1:1:2:4,
# the rest in the last group (CompressAI's default [16, 16, 32, 64, M - 128] at M = 320).
GROUP_UNITS = (1, 1, 2, 4)
CHANNEL_CONTEXT_WIDTHS = (224, 128)


def channel_groups(M: int) -> tuple[int, ...]:
    """Channels of each of the five groups of an M-channel latent."""
    unit = M // 20
    if unit < 1:
        raise ConfigError(f"elic2022 needs M >= 20 for its five channel groups, got M={M}")
    head = tuple(unit * u for u in GROUP_UNITS)
    return (*head, M - sum(head))


def split_checkerboard(x: jax.Array, xp=jnp) -> tuple[jax.Array, jax.Array]:
    """(anchors, non-anchors) of an (N, H, W, C) tensor of even W, each (N, H, W/2, C); anchors
    are the positions where row + column is even. `xp`: jax.numpy or numpy."""
    n, h, w, c = x.shape
    pairs = x.reshape(n, h, w // 2, 2, c)
    odd_row = (xp.arange(h) % 2 == 1)[None, :, None, None]
    return (xp.where(odd_row, pairs[..., 1, :], pairs[..., 0, :]),
            xp.where(odd_row, pairs[..., 0, :], pairs[..., 1, :]))


def merge_checkerboard(anchors: jax.Array, non_anchors: jax.Array, xp=jnp) -> jax.Array:
    """The inverse of `split_checkerboard`."""
    n, h, half, c = anchors.shape
    odd_row = (xp.arange(h) % 2 == 1)[None, :, None, None]
    pairs = xp.stack([xp.where(odd_row, non_anchors, anchors), xp.where(odd_row, anchors, non_anchors)], axis=3)
    return pairs.reshape(n, h, 2 * half, c)


class ResidualBottleneck(nn.Module):
    """x + 1x1 -> ReLU -> 3x3 -> ReLU -> 1x1 at half the channels."""

    features: int

    def setup(self):
        middle = self.features // 2
        self.conv1, self.conv2, self.conv3 = conv(middle, 1, 1), conv(middle, 3, 1), conv(self.features, 1, 1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv3(nn.relu(self.conv2(nn.relu(self.conv1(x)))))


class ResidualUnit(nn.Module):
    """ReLU(x + 1x1 -> ReLU -> 3x3 -> ReLU -> 1x1 at half the channels)."""

    features: int

    def setup(self):
        half = self.features // 2
        self.conv = [conv(half, 1, 1), relu(), conv(half, 3, 1), relu(), conv(self.features, 1, 1)]

    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.relu(x + run(self.conv, x))


class AttentionBlock(nn.Module):
    """Cheng 2020's simplified attention: x + a(x) * sigmoid(b(x)), three residual units each."""

    features: int

    def setup(self):
        f = self.features
        self.conv_a = [ResidualUnit(f) for _ in range(3)]
        self.conv_b = [*(ResidualUnit(f) for _ in range(3)), conv(f, 1, 1)]

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + run(self.conv_a, x) * nn.sigmoid(run(self.conv_b, x))


class SpaceChannelGroup(nn.Module):
    """One channel group of the SCCTX model, coded in two checkerboard passes."""

    channels: int
    aggregation: tuple[int, ...]  # hidden widths of the parameter aggregation (1x1 convs)
    conditional: bool  # has a channel context (every group but the first)
    means_first: bool  # the aggregation outputs (means, scales) instead of (scales, means)

    def setup(self):
        out = 2 * self.channels
        if self.conditional:
            a, b = CHANNEL_CONTEXT_WIDTHS
            self.channel_context = [conv(a, 5, 1), relu(), conv(b, 5, 1), relu(), conv(out, 5, 1)]
        self.context_prediction = conv(out, 5, 1)
        a, b = self.aggregation
        self.entropy_parameters = [conv(a, 1, 1), relu(), conv(b, 1, 1), relu(), conv(out, 1, 1)]

    def gaussian_parameters(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(scales, means) from [spatial context, channel context, hyperprior output]."""
        first, second = jnp.split(run(self.entropy_parameters, context), 2, axis=-1)
        return (second, first) if self.means_first else (first, second)

    def __call__(self, y: jax.Array, decoded: jax.Array | None, side: jax.Array,
                 mode: QuantizeMode) -> tuple[jax.Array, jax.Array]:
        """(y_hat, likelihoods) of this group given the groups decoded before and the hyperprior
        output `side`. y_hat is rounded around the predicted means (straight through unless
        mode is "round"); likelihoods follow `mode` (noise in training)."""
        if self.conditional:
            side = jnp.concatenate([run(self.channel_context, decoded), side], axis=-1)
        rounding = "round" if mode == "round" else "ste"
        y_a, y_n = split_checkerboard(y)
        side_a, side_n = split_checkerboard(side)
        no_context = jnp.zeros((*side_a.shape[:-1], 2 * self.channels), side.dtype)
        scales_a, means_a = self.gaussian_parameters(jnp.concatenate([no_context, side_a], axis=-1))
        y_hat_a = quantize(y_a, rounding, means_a)
        _, context_n = split_checkerboard(self.context_prediction(merge_checkerboard(y_hat_a, jnp.zeros_like(y_hat_a))))
        scales_n, means_n = self.gaussian_parameters(jnp.concatenate([context_n, side_n], axis=-1))
        y_hat = merge_checkerboard(y_hat_a, quantize(y_n, rounding, means_n))
        rng = self.make_rng("noise") if mode == "noise" else None
        means = merge_checkerboard(means_a, means_n)
        _, likelihoods = gaussian_conditional(y, merge_checkerboard(scales_a, scales_n), means, mode, rng)
        return y_hat, likelihoods


def _ramp(c_in: int, c_out: int, minimum: int) -> tuple[int, int]:
    """CompressAI's sequential_channel_ramp widths for three layers: floor(linspace(c_in, c_out,
    4)) inside, at least `minimum`."""
    inner = np.floor(np.linspace(c_in, c_out, 4)[1:3]).astype(int)
    return tuple(int(max(c, minimum)) for c in inner)


class Elic2022(nn.Module):
    """elic2022: CompressAI's Elic2022Official (the paper's SCCTX over all decoded groups)."""

    config: ModelConfig
    downsampling = 64
    hyper = True
    context_model = True  # the codec codes y group by group, two checkerboard passes each
    means_first = False

    def setup(self):
        N, M = self.config.N, self.config.M

        def blocks() -> list[nn.Module]:
            return [ResidualBottleneck(N) for _ in range(3)]

        self.g_a = [conv(N), *blocks(), conv(N), *blocks(), AttentionBlock(N), conv(N), *blocks(),
                    conv(M), AttentionBlock(M)]
        self.g_s = [AttentionBlock(M), deconv(N), *blocks(), deconv(N), AttentionBlock(N), *blocks(),
                    deconv(N), *blocks(), deconv(3)]
        self.h_a = [conv(N, 3, 1), relu(), conv(N), relu(), conv(N)]
        self.h_s = [deconv(N), relu(), deconv(N * 3 // 2), relu(), self.hyper_output_layer()]
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.groups = channel_groups(M)
        self.scctx = [
            SpaceChannelGroup(g, self.aggregation_widths(k), k > 0, self.means_first)
            for k, g in enumerate(self.groups)
        ]

    def hyper_output_layer(self) -> nn.Module:
        return deconv(2 * self.config.N, 3, 1)

    def aggregation_widths(self, k: int) -> tuple[int, int]:
        g, side = self.groups[k], 2 * self.config.N
        return _ramp(2 * g + (k > 0) * 2 * g + side, 2 * g, side)

    def channel_context_input(self, decoded: list[jax.Array]) -> jax.Array | None:
        """What the channel context of the next group sees: every decoded group."""
        return jnp.concatenate(decoded, axis=-1) if decoded else None

    def analysis(self, x: jax.Array) -> jax.Array:
        return run(self.g_a, x)

    def synthesis(self, y_hat: jax.Array) -> jax.Array:
        return run(self.g_s, y_hat)

    def hyper_analysis(self, y: jax.Array) -> jax.Array:
        return run(self.h_a, y)

    def _no_hyper_only_form(self) -> ConfigError:
        return ConfigError(f"{self.config.arch}: its Gaussian parameters come from the context model, not from z "
                           "alone, so it has no hyper-only entropy graph or integer-mode decoder graph; the codec "
                           "codes it with its integer context networks (jaxlic.quant.context_params)")

    @property
    def predicts_means(self) -> bool:
        """Refused (the hyperprior codec path and the integer export ask it of hyperpriors):
        this model's Gaussian parameters do not come from z alone but also from the groups and
        anchors decoded before."""
        raise self._no_hyper_only_form()

    def hyper_synthesis(self, z_hat: jax.Array):
        """Refused, as `predicts_means`: there are no (scales, means) of z alone."""
        raise self._no_hyper_only_form()

    def space_channel_context(self, y: jax.Array, side: jax.Array, mode: QuantizeMode) -> tuple[jax.Array, jax.Array]:
        """(y_hat, likelihoods) of the whole latent, group after group."""
        bounds = list(itertools.accumulate(self.groups))[:-1]
        decoded, likelihoods = [], []
        for group, y_k in zip(self.scctx, jnp.split(y, bounds, axis=-1)):
            y_hat_k, likelihoods_k = group(y_k, self.channel_context_input(decoded), side, mode)
            decoded.append(y_hat_k)
            likelihoods.append(likelihoods_k)
        return jnp.concatenate(decoded, axis=-1), jnp.concatenate(likelihoods, axis=-1)

    def __call__(self, x: jax.Array, mode: QuantizeMode = "noise") -> dict:
        """Training/evaluation forward: reconstruction and likelihoods of y and z."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        _, z_likelihoods = self.entropy_bottleneck(z, mode)
        # The hyper-synthesis sees z rounded around the medians (straight through in training).
        z_hat = quantize(z, "round" if mode == "round" else "ste", self.entropy_bottleneck.medians())
        y_hat, y_likelihoods = self.space_channel_context(y, run(self.h_s, z_hat), mode)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y": y}


class Elic2022Chandelier(Elic2022):
    """elic2022-chandelier: CompressAI's Elic2022Chandelier (channel context from the first and
    the latest decoded groups, a conv at the end of h_s, 2M-wide aggregation, (means, scales))."""

    means_first = True

    def hyper_output_layer(self) -> nn.Module:
        return conv(2 * self.config.M, 3, 1)

    def aggregation_widths(self, k: int) -> tuple[int, int]:
        return 2 * self.config.M, 512

    def channel_context_input(self, decoded: list[jax.Array]) -> jax.Array | None:
        """The first decoded group, and the latest one when it is another."""
        if not decoded:
            return None
        return jnp.concatenate([decoded[0], decoded[-1]], axis=-1) if len(decoded) > 1 else decoded[0]
