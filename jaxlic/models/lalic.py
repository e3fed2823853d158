"""LALIC (Feng et al., CVPR 2025, "Linear Attention Modeling for Learned Image Compression";
official code sjtu-medialab/RwkvCompress): ELIC's structure with every transform made of Bi-RWKV
blocks (jaxlic.nn.rwkv), and the RWKV-SCCTX entropy model.

Channels at width 1: g_a 3 -> 96 -> 144 -> 256 -> M = 320 (a 5x5 then 3x3 stride-2 convs; 2, 4
and 6 blocks between them), g_s its mirror with transposed convs; h_a 320 -> 256 (6 blocks) ->
N = 192 (z) with 5x5 stride-2 convs, h_s back to M. The entropy model is ELIC's (five uneven
channel groups, two checkerboard passes each; jaxlic.models.elic.SpaceChannelGroup runs them)
with other networks: the channel context is conv3x3 -> M, two blocks (hidden rate 8), conv1x1
-> 2g; the parameter aggregation three EntropyParametersBlocks whose widths ramp down to 2g (at
least 2 x 128 inside). The width knob scales every channel count.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxlic.entropy.factorized import EntropyBottleneck
from jaxlic.models.elic import Elic2022, SpaceChannelGroup, _ramp, channel_groups
from jaxlic.models.layers import Activation, conv, deconv
from jaxlic.nn.rwkv import BiRwkvBlock, layer_norm, linear, squared_relu_mix

DIMS = (96, 144, 256, 320, 256, 192)  # at width 1; the fourth is M, the last N (z)
DEPTHS = (2, 4, 6, 6)
AGGREGATION_MIN = 128  # the official N: the aggregation is at least 2 x this wide inside
CHANNEL_CONTEXT_HIDDEN_RATE = 8


def identity() -> Activation:
    """The parameter-free slot between aggregation blocks (official `nn.Identity`)."""
    return Activation(lambda x: x, "identity")


def blocks(features: int, depth: int, hidden_rate: int = 4) -> list[nn.Module]:
    return [BiRwkvBlock(features, hidden_rate) for _ in range(depth)]


class EntropyParametersBlock(nn.Module):
    """x = 1x1 conv(x); x + channel mix of LN(x) (squared ReLU, 2x wide inside)."""

    features: int

    def setup(self):
        c = self.features
        self.mix, self.norm = conv(c, 1, 1), layer_norm()
        self.key, self.value, self.receptance = linear(2 * c), linear(c), linear(c)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.mix(x)
        return x + squared_relu_mix(self.norm(x), self.key, self.value, self.receptance)


class LalicGroup(SpaceChannelGroup):
    """A channel group of RWKV-SCCTX: ELIC's two passes with LALIC's networks."""

    context_width: int = 0  # M: the channel context's inside

    def setup(self):
        out, inside = 2 * self.channels, self.context_width
        if self.conditional:
            self.channel_context = [conv(inside, 3, 1), *blocks(inside, 2, CHANNEL_CONTEXT_HIDDEN_RATE), conv(out, 1, 1)]
        self.context_prediction = conv(out, 5, 1)
        a, b = self.aggregation
        self.entropy_parameters = [EntropyParametersBlock(a), identity(), EntropyParametersBlock(b), identity(),
                                   EntropyParametersBlock(out)]


def lalic_dims(width: float, N: int, M: int) -> tuple[int, ...]:
    """Channels of the six stages at `width` (M and N as configured)."""
    from jaxlic.models.registry import scaled

    n1, n2, n3, _, n5, _ = (scaled(d, width) for d in DIMS)
    return n1, n2, n3, M, n5, N


class Lalic(Elic2022):
    """lalic: Bi-RWKV transforms and the RWKV-SCCTX entropy model."""

    rwkv_context = True  # its context networks are jaxlic.quant.rwkv_context's, not ELIC's convolutions

    def setup(self):
        c = self.config
        n1, n2, n3, M, n5, N = lalic_dims(c.width, c.N, c.M)
        l1, l2, l3, l4 = DEPTHS
        self.g_a = [conv(n1, 5), *blocks(n1, l1), conv(n2, 3), *blocks(n2, l2), conv(n3, 3), *blocks(n3, l3),
                    conv(M, 3)]
        self.g_s = [deconv(n3, 3), *blocks(n3, l3), deconv(n2, 3), *blocks(n2, l2), deconv(n1, 3), *blocks(n1, l1),
                    deconv(3, 5)]
        self.h_a = [conv(n5), *blocks(n5, l4), conv(N)]
        self.h_s = [deconv(n5), *blocks(n5, l4), deconv(M)]
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.groups = channel_groups(M)
        self.scctx = [LalicGroup(g, self.aggregation_widths(k), k > 0, False, context_width=M)
                      for k, g in enumerate(self.groups)]

    def aggregation_widths(self, k: int) -> tuple[int, int]:
        from jaxlic.models.registry import scaled

        g = self.groups[k]
        return _ramp(2 * g + (k > 0) * 2 * g + self.config.M, 2 * g, 2 * scaled(AGGREGATION_MIN, self.config.width))
