"""Integer-mode model packages: float parameters for the encoder, an integer graph for the decoder.

`integerize` freezes a (QAT-trained or plain) float model: it builds the coding tables, rounds
the factorized prior's medians to the grid of the latent input (2^-k) so that the encoder's
symbols and the integer decoder agree exactly, rebuilds the tables around those medians and
lowers the decoder into a validated `IntegerGraph`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxlic.codec.decoders import check_integer_package
from jaxlic.codec.package import ModelPackage, build_tables
from jaxlic.models import ModelConfig
from jaxlic.quant.lowering import Calibration, export_graph


def integerize(config: ModelConfig, params: dict, calibration: Calibration) -> ModelPackage:
    """An integer-mode package of a float model (see the module docstring)."""
    base = build_tables(config, params)
    graph = export_graph(config, base.params, calibration, base.scale_table)
    latent = "z" if base.model.hyper else "y"
    medians = graph.constants[f"{latent}.offset.addend"] * np.exp2(-np.asarray(graph.exponents[latent], np.float64))
    bottleneck = dict(base.params["entropy_bottleneck"])
    bottleneck["quantiles"] = bottleneck["quantiles"].at[:, 0, 1].set(jnp.asarray(medians, jnp.float32))
    rounded = build_tables(config, {**base.params, "entropy_bottleneck": bottleneck}, quantiles="keep")
    package = ModelPackage(config, rounded.params, rounded.tables, rounded.scale_table, graph)
    check_integer_package(package)
    return package
