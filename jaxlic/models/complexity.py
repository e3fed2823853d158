"""Model complexity: multiply-accumulates per pixel and parameter counts.

MACs are counted on the shapes of a traced forward pass (nothing is computed), so any config,
channel-pruned ones included, is measured as built:
- convolution: output positions x k x k x C_in x C_out;
- transposed convolution: input positions x k x k x C_in x C_out (each input scatters a window);
- GDN / inverse GDN: positions x C x C (the gamma matrix product).
Biases, activations and the entropy models are left out (they are per-element, not per-MAC).
Per pixel means divided by the pixels of the input image.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlic.models.config import ModelConfig
from jaxlic.models.registry import build_model
from jaxlic.nn import GDN, Conv, ConvTranspose

_SIDE = 256  # a multiple of every model's downsampling; MACs per pixel do not depend on it


def layer_macs(config: ModelConfig) -> dict[str, float]:
    """MACs per input pixel of each conv, transposed conv and GDN, keyed by parameter path."""
    model = build_model(config)
    counts: dict[str, float] = {}

    def count(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (Conv, ConvTranspose, GDN)):
            return out
        x = args[0]
        positions = math.prod(out.shape[:-1]) if isinstance(module, Conv) else math.prod(x.shape[:-1])
        if isinstance(module, GDN):
            macs = positions * x.shape[-1] * out.shape[-1]
        else:
            macs = positions * module.kernel_size**2 * x.shape[-1] * out.shape[-1]
        counts["/".join(module.path)] = macs / _SIDE**2
        return out

    image = jax.ShapeDtypeStruct((1, _SIDE, _SIDE, 3), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, jnp.zeros((1, 64, 64, 3))))
    with nn.intercept_methods(count):
        jax.eval_shape(lambda p, x: model.apply(p, x, "round"), variables, image)
    return counts


def macs_per_pixel(config: ModelConfig, prefixes: tuple[str, ...] = ("g_a", "g_s", "h_a", "h_s")) -> float:
    """Total MACs per pixel of the transforms whose names start with `prefixes` (default: all).

    The decoder's share is `macs_per_pixel(config, ("g_s", "h_s"))`."""
    return sum(v for k, v in layer_macs(config).items() if k.startswith(prefixes))


def param_count(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
