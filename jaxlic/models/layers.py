"""Building blocks shared by the zoo: a sequential container whose indices match CompressAI."""

from __future__ import annotations

from typing import Callable

import jax
import flax.linen as nn

from jaxlic.nn import GDN, Conv, ConvTranspose


class Activation(nn.Module):
    """A parameter-free activation that still takes a slot, so layer indices match CompressAI."""

    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def relu() -> Activation:
    return Activation(nn.relu)


def leaky_relu() -> Activation:
    return Activation(lambda x: nn.leaky_relu(x, 0.01))


def conv(features: int, kernel: int = 5, stride: int = 2) -> Conv:
    return Conv(features, kernel, stride)


def deconv(features: int, kernel: int = 5, stride: int = 2) -> ConvTranspose:
    return ConvTranspose(features, kernel, stride)


def gdn(kind: str, inverse: bool = False) -> GDN:
    return GDN(inverse=inverse, simplified=kind == "simplified")


def analysis_layers(N: int, M: int, gdn_kind: str) -> list[nn.Module]:
    """g_a: four stride-2 5x5 convolutions with GDN between them (image -> latent / 16)."""
    return [conv(N), gdn(gdn_kind), conv(N), gdn(gdn_kind), conv(N), gdn(gdn_kind), conv(M)]


def synthesis_layers(N: int, gdn_kind: str) -> list[nn.Module]:
    """g_s: four stride-2 5x5 transposed convolutions with inverse GDN between them."""
    return [
        deconv(N), gdn(gdn_kind, True), deconv(N), gdn(gdn_kind, True),
        deconv(N), gdn(gdn_kind, True), deconv(3),
    ]


def run(layers: list[nn.Module], x: jax.Array) -> jax.Array:
    """Apply layers in order."""
    for layer in layers:
        x = layer(x)
    return x
