"""Entropy parameters of context models whose networks have no integer form (LALIC: LayerNorm,
sigmoids and BiWKV in its hyper-synthesis, channel contexts and parameter aggregation).

The passes are ELIC's (`jaxlic.quant.context_params.run_passes`); here each pass runs the
model's own float networks, jitted, in float64, and snaps what the coder sees to the grids of
the integer path: the table index is the number of table scales below the predicted scale, the
mean is rounded to 2^-8 (so decoded latents re-enter the networks as the same numbers on both
sides). Encoder and decoder run the same compiled programs on the same inputs, so a round trip
on one machine (one XLA build and CPU) is exact; unlike the integer networks, nothing
guarantees the same bits on another machine, and the only backend is "jax".
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.entropy.factorized import bottleneck_medians
from jaxlic.errors import IntegerizationError
from jaxlic.models import ModelConfig, build_model
from jaxlic.models.elic import merge_checkerboard, split_checkerboard
from jaxlic.models.layers import run
from jaxlic.quant.context_params import LATENT_EXPONENT, MEAN_MAX, Structure

BACKENDS = ("jax",)


def _network(name: str, k: int):
    """The Flax method that runs one context network of group k (k unused for h_s)."""
    return {
        "h_s": lambda m, x: run(m.h_s, x),
        "channel_context": lambda m, x: run(m.scctx[k].channel_context, x),
        "context_prediction": lambda m, x: m.scctx[k].context_prediction(x),
        "entropy_parameters": lambda m, x: run(m.scctx[k].entropy_parameters, x),
    }[name]


class FloatContextParams:
    """The float context networks of one package (`structure` and `runner`, as ContextParams)."""

    def __init__(self, config: ModelConfig, params: dict, scale_table: np.ndarray):
        model = build_model(config)
        groups = tuple(model.bind({"params": params}).groups)
        self.structure = Structure(groups, means_first=bool(model.means_first), chandelier=False, networks=())
        self.scale_heads = np.asarray(scale_table, np.float64)[:-1]
        self.medians = np.asarray(bottleneck_medians(params), np.float64)
        with jax.enable_x64(True):
            self.params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)

        @functools.lru_cache(maxsize=None)
        def jitted(name: str, k: int):
            return jax.jit(lambda p, x: model.apply({"params": p}, x, method=_network(name, k)))

        self._jitted = jitted

    def net(self, name: str, k: int, x: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(self._jitted(name, k)(self.params, jnp.asarray(x, jnp.float64)))

    def runner(self, backend: str = "jax") -> "_FloatRunner":
        if backend not in BACKENDS:
            raise IntegerizationError(f"this model's context networks run in float on the 'jax' backend only, "
                                      f"not {backend!r}")
        return _FloatRunner(self)


class _FloatRunner:
    """The passes of `run_passes` on the float networks; means at 2^-8, as the integer runner."""

    def __init__(self, params: FloatContextParams):
        self.params, self.structure = params, params.structure

    def side(self, z_symbols):
        return self.params.net("h_s", 0, np.asarray(z_symbols, np.float64) + self.params.medians)

    def base(self, k, decoded, side):
        if k:
            channel = self.params.net("channel_context", k, np.concatenate(self.structure.channel_input(decoded), -1))
            side = np.concatenate([channel, side], axis=-1)
        return split_checkerboard(side, np)

    def parameters(self, k, spatial, base):
        if spatial is None:
            spatial = np.zeros((*base.shape[:-1], 2 * self.structure.groups[k]))
        first, second = np.split(self.params.net("entropy_parameters", k, np.concatenate([spatial, base], -1)), 2, -1)
        scales, means = (second, first) if self.structure.means_first else (first, second)
        index = np.searchsorted(self.params.scale_heads, scales, side="left")
        return index, np.clip(np.round(means * 2.0 ** LATENT_EXPONENT), -MEAN_MAX, MEAN_MAX)

    def spatial(self, k, anchors):
        full = merge_checkerboard(anchors, np.zeros_like(anchors), np)
        return split_checkerboard(self.params.net("context_prediction", k, full), np)[1]

    def latent(self, symbols, means):
        return np.asarray(symbols, np.float64) + means * 2.0 ** -LATENT_EXPONENT
