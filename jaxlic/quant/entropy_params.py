"""Deterministic entropy parameters for float hyperprior packages.

A float hyper-synthesis gives scales that differ in the last bits across thread counts, jit and
machines; a scale near a table boundary then picks another table index in the decoder than in
the encoder and the range decoder desynchronizes (CompressAI issues #279, #309, #320). So every
float hyperprior package also carries an integer graph of its hyper phase alone
(`z_symbols` -> `scale_index`), lowered exactly as integer-mode packages lower theirs; encoder
and decoder both take the table indexes from it. Means (mbt2018-mean) stay float: they choose
no table, so an ulp of difference moves a latent by an ulp, never the symbols the range coder
reads. The synthesis stays float too: pixels may differ by one level across machines, the
decoded symbols never.

The graph needs activation ranges but no images: z is drawn from the package's own prior
(its integer coding tables), the hyper-synthesis runs on those samples in float, and every
activation gets the power-of-two exponent of its peak. The graph is built once (when a
package is first coded or saved), stored in the package file and part of its fingerprint, so
encoder and decoder use the same integers; a package built again elsewhere from the same
parameters either derives the same graph or has another fingerprint (a typed error, never a
desynchronized decode).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.entropy.factorized import bottleneck_medians
from jaxlic.entropy.tables import CodingTables
from jaxlic.errors import IntegerizationError
from jaxlic.models import ModelConfig
from jaxlic.quant.fakequant import ACT_MAX, pow2_exponent
from jaxlic.quant.graph import IntegerGraph
from jaxlic.quant.lowering import LATENT_MAX_EXPONENT, Calibration, _bound, _float_walk, export_graph

PRIOR_SAMPLES = (8, 16, 16)  # z maps drawn from the prior to calibrate the hyper-synthesis
SEED = 0


def sample_prior(tables: CodingTables, medians: np.ndarray, shape=PRIOR_SAMPLES, seed: int = SEED) -> np.ndarray:
    """z_hat maps (B, H, W, C) drawn channel by channel from the integer tables (no overflow)."""
    rng = np.random.default_rng(seed)
    channels = len(tables.lengths)
    z = np.empty((*shape, channels), np.float32)
    for c in range(channels):
        freqs = tables.freqs[c, : tables.lengths[c] - 1].astype(np.float64)
        symbols = rng.choice(freqs.size, size=shape, p=freqs / freqs.sum())
        z[..., c] = symbols + tables.offsets[c] + medians[c]
    return z


def prior_calibration(config: ModelConfig, params: dict, tables: CodingTables) -> Calibration:
    """Exponents of z (from the table range) and of every hyper-synthesis activation (from
    prior samples)."""
    medians = np.asarray(bottleneck_medians(params), np.float64)
    lowest = tables.offsets + medians
    highest = tables.offsets + tables.lengths - 2 + medians
    z_peak = np.maximum(np.abs(lowest), np.abs(highest))
    model = _bound(config, params)
    seen: dict[str, jax.Array] = {}
    _float_walk("h_s", model.h_s, jnp.asarray(sample_prior(tables, medians)), seen)
    exponents = {name: pow2_exponent(np.asarray(jnp.max(jnp.abs(v), axis=(0, 1, 2)), np.float64), ACT_MAX)
                 for name, v in seen.items()}
    exponents["z"] = pow2_exponent(z_peak, ACT_MAX, 0, LATENT_MAX_EXPONENT)
    return Calibration({name: tuple(int(v) for v in e) for name, e in exponents.items()})


def entropy_graph(config: ModelConfig, params: dict, tables: CodingTables, scale_table: np.ndarray) -> IntegerGraph:
    """The integer table indexes of a float hyperprior model (see the module docstring)."""
    graph = export_graph(config, params, prior_calibration(config, params, tables), scale_table, synthesis=False)
    check_entropy_graph(graph, config)
    return graph


def check_entropy_graph(graph: IntegerGraph, config: ModelConfig) -> None:
    """IntegerizationError unless `graph` maps this model's z symbols to table indexes."""
    if graph.inputs != {"z_symbols": config.N} or graph.outputs != ("scale_index",):
        raise IntegerizationError(
            f"the entropy graph (inputs {graph.inputs}, outputs {list(graph.outputs)}) is not the hyper phase of "
            f"{config.arch} with N={config.N}")
