"""Model complexity: multiply-accumulates per pixel and parameter counts.

MACs are counted on the shapes of a traced forward pass (nothing is computed), so any config,
channel-pruned ones included, is measured as built:
- convolution: output positions x k x k x C_in x C_out;
- transposed convolution: input positions x k x k x C_in x C_out (each input scatters a window);
- GDN / inverse GDN: positions x C x C (the gamma matrix product);
- dense layer (LALIC's token-wise linear maps): positions x C_in x C_out;
- OmniShift (LALIC's folded depthwise 5x5): positions x 25 x C.
A layer run more than once (a context model's per-pass networks) counts every run. Biases,
activations, LayerNorms, BiWKV (a few exponentials per token and channel) and the entropy
models are left out (they are per-element, not per-MAC). Per pixel
means divided by the pixels of the input image.

The encoder runs g_a, h_a, h_s and the context networks; the decoder h_s, the context networks
and g_s (ENCODER_PARTS, DECODER_PARTS).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlic.models.config import ModelConfig
from jaxlic.models.registry import build_model, init_params
from jaxlic.nn import GDN, Conv, ConvTranspose
from jaxlic.nn.rwkv import OmniShift

_SIDE = 256  # a multiple of every model's downsampling; MACs per pixel do not depend on it
# Parameter-path prefixes of the context networks (the channel/spatial context of elic2022).
CONTEXT_PARTS = ("scctx",)
ENCODER_PARTS = ("g_a", "h_a", "h_s", *CONTEXT_PARTS)
DECODER_PARTS = ("h_s", "g_s", *CONTEXT_PARTS)


def layer_macs(config: ModelConfig) -> dict[str, float]:
    """MACs per input pixel of each conv, transposed conv and GDN, keyed by parameter path."""
    model = build_model(config)
    counts: dict[str, float] = {}

    def count(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (Conv, ConvTranspose, GDN, nn.Dense, OmniShift)):
            return out
        x = args[0]
        positions = math.prod(out.shape[:-1]) if isinstance(module, Conv) else math.prod(x.shape[:-1])
        if isinstance(module, (GDN, nn.Dense)):
            macs = positions * x.shape[-1] * out.shape[-1]
        elif isinstance(module, OmniShift):
            macs = positions * 25 * x.shape[-1]
        else:
            macs = positions * module.kernel_size**2 * x.shape[-1] * out.shape[-1]
        key = "/".join(module.path)
        counts[key] = counts.get(key, 0.0) + macs / _SIDE**2
        return out

    image = jax.ShapeDtypeStruct((1, _SIDE, _SIDE, 3), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, jnp.zeros((1, 64, 64, 3))))
    with nn.intercept_methods(count):
        jax.eval_shape(lambda p, x: model.apply(p, x, "round"), variables, image)
    return counts


def macs_per_pixel(config: ModelConfig, prefixes: tuple[str, ...] | None = None) -> float:
    """Total MACs per pixel of the layers whose paths start with `prefixes` (default: all).

    The decoder's share is `macs_per_pixel(config, DECODER_PARTS)`."""
    return sum(v for k, v in layer_macs(config).items() if prefixes is None or k.startswith(prefixes))


def model_complexity(config: ModelConfig) -> dict[str, float | int | bool]:
    """Parameters, encoder and decoder MACs per pixel, and whether the model has a context model."""
    macs = layer_macs(config)
    model = build_model(config)
    params = jax.eval_shape(lambda: init_params(model, 0))

    def part(prefixes: tuple[str, ...]) -> float:
        return sum(v for k, v in macs.items() if k.startswith(prefixes))

    return {"params": param_count(params), "encoder_macs": part(ENCODER_PARTS),
            "decoder_macs": part(DECODER_PARTS), "context_model": part(CONTEXT_PARTS) > 0}


def param_count(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
