"""Building blocks shared by the zoo: a sequential container whose indices match CompressAI."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import flax.linen as nn

from jaxlic.nn import GDN, Conv, ConvTranspose


LEAKY_SLOPE = 0.01


class Activation(nn.Module):
    """A parameter-free activation that still takes a slot, so layer indices match CompressAI.

    `kind` names it for exporters (the integer graph knows "relu" and "leaky_relu")."""

    fn: Callable[[jax.Array], jax.Array]
    kind: str = "custom"

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def relu() -> Activation:
    return Activation(nn.relu, "relu")


def leaky_relu() -> Activation:
    return Activation(lambda x: nn.leaky_relu(x, LEAKY_SLOPE), "leaky_relu")


def conv(features: int, kernel: int = 5, stride: int = 2) -> Conv:
    return Conv(features, kernel, stride)


def deconv(features: int, kernel: int = 5, stride: int = 2) -> ConvTranspose:
    return ConvTranspose(features, kernel, stride)


def gdn(kind: str, inverse: bool = False) -> GDN:
    return GDN(inverse=inverse, simplified=kind == "simplified")


def analysis_layers(hidden: Sequence[int], M: int, gdn_kind: str) -> list[nn.Module]:
    """g_a: four stride-2 5x5 convolutions (`hidden` channels, then M) with GDN between them."""
    a, b, c = hidden
    return [conv(a), gdn(gdn_kind), conv(b), gdn(gdn_kind), conv(c), gdn(gdn_kind), conv(M)]


def synthesis_layers(hidden: Sequence[int], gdn_kind: str) -> list[nn.Module]:
    """g_s: four stride-2 5x5 transposed convolutions (`hidden` channels, then 3) with inverse GDN."""
    a, b, c = hidden
    return [
        deconv(a), gdn(gdn_kind, True), deconv(b), gdn(gdn_kind, True),
        deconv(c), gdn(gdn_kind, True), deconv(3),
    ]


def run(layers: list[nn.Module], x: jax.Array) -> jax.Array:
    """Apply layers in order."""
    for layer in layers:
        x = layer(x)
    return x
