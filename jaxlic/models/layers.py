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


class ResidualUnit(nn.Module):
    """x + 1x1(ReLU(1x1(x))) through C/2 channels: a light slot in place of an inverse GDN (same
    C^2 MACs per position, no division or root)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        return x + Conv(c, 1, 1, name="expand")(nn.relu(Conv(max(1, c // 2), 1, 1, name="reduce")(x)))


def synthesis_block(kind: str, features: int) -> list[nn.Module]:
    """One g_s block: a stride-2 transposed conv and (but for the last block) the slot after it.

    Kinds (`ModelConfig.decoder`): igdn / sgdn / relu (5x5, then inverse GDN, simplified inverse
    GDN or ReLU), res (3x3, then a `ResidualUnit`), and for the last block deconv5 / deconv3."""
    if kind in ("deconv5", "deconv3"):
        return [deconv(features, 5 if kind == "deconv5" else 3)]
    if kind == "res":
        return [deconv(features, 3), ResidualUnit()]
    return [deconv(features), relu() if kind == "relu" else gdn("simplified" if kind == "sgdn" else "gdn", True)]


def synthesis_layers(hidden: Sequence[int], gdn_kind: str, blocks: Sequence[str] = ()) -> list[nn.Module]:
    """g_s: four stride-2 5x5 transposed convolutions (`hidden` channels, then 3) with inverse GDN,
    or the `blocks` of a staged decoder (`ModelConfig.decoder`, jaxlic.train.asym)."""
    kinds = tuple(blocks) or zoo_blocks(gdn_kind)
    return [layer for kind, features in zip(kinds, (*hidden, 3)) for layer in synthesis_block(kind, features)]


def zoo_blocks(gdn_kind: str) -> tuple[str, ...]:
    """The zoo's g_s as `ModelConfig.decoder` block kinds."""
    slot = "sgdn" if gdn_kind == "simplified" else "igdn"
    return (slot, slot, slot, "deconv5")


def run(layers: list[nn.Module], x: jax.Array) -> jax.Array:
    """Apply layers in order."""
    for layer in layers:
        x = layer(x)
    return x
