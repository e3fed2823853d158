"""How close an integer-mode package's inverse GDN layers are to the float GDN, measured.

For each inverse-GDN layer of the integer graph, on the layer's own integer input x (so the error
of earlier layers is not counted twice), against the float normalizer of the same input
N = sqrt(beta + gamma x^2) (or beta + gamma |x| for the simplified GDN):
- `normalizer`: the worst relative error of the integer N(P), |N_int - N| / N;
- `normalizer_p999`: its 99.9th percentile over all elements;
- `output_lsb`: the worst error of x * N_int against x * N, in LSBs of the layer's int8 output.
The relative error of N has no useful bound where P is near beta and beta is tiny (a trained
beta at its floor of 1e-6): there x is near 0 too, and `output_lsb` is what reaches the pixels.
"""

from __future__ import annotations

from typing import Iterable

import jax.numpy as jnp
import numpy as np

from jaxlic.codec.decoders import IntegerDecoder, as_symbols, check_integer_package
from jaxlic.codec.package import ModelPackage
from jaxlic.entropy.factorized import bottleneck_medians
from jaxlic.nn.gdn import effective
from jaxlic.quant import execute

KEYS = ("normalizer", "normalizer_p999", "output_lsb")


def synthesis_inputs(package: ModelPackage, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The integer graph's synthesis inputs for a batch (NHWC in [0, 1]), as the encoder makes them."""
    model = package.model.bind({"params": package.params})
    medians = np.asarray(bottleneck_medians(package.params))
    y = np.asarray(model.analysis(jnp.asarray(batch)))
    if not model.hyper:
        return {"y_symbols": as_symbols(np.round(y - medians))}
    z_symbols = as_symbols(np.round(np.asarray(model.hyper_analysis(jnp.asarray(y))) - medians))
    _, means = IntegerDecoder(package).hyper(z_symbols)
    if means is None:
        return {"y_symbols": as_symbols(np.round(y))}
    exponents = np.asarray(package.integer.exponents["means"], np.float64)
    return {"y_symbols": as_symbols(np.round(y - means)), "means": np.round(means * np.exp2(exponents)).astype(np.int32)}


def gdn_errors(package: ModelPackage, batches: Iterable[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per inverse-GDN layer, the worst of each measure in KEYS over `batches` (module docstring)."""
    graph = check_integer_package(package)
    model = package.model.bind({"params": package.params})
    layers = {f"g_s_{i}": layer for i, layer in enumerate(model.g_s)}
    pairs = {name: next(op for op in graph.ops if op.name == f"{name}.mul").inputs for name in graph.meta["igdn"]}
    errors = {name: dict.fromkeys(KEYS, 0.0) for name in pairs}
    for batch in batches:
        values = execute.run(graph, synthesis_inputs(package, batch), sorted({t for p in pairs.values() for t in p}))
        for name, (x_name, norm_name) in pairs.items():
            x, norm = (values[t] * np.exp2(-np.asarray(graph.exponents[t], np.float64)) for t in (x_name, norm_name))
            layer, p = layers[name], package.params[name]
            beta = np.asarray(effective(p["beta"], layer.beta_min), np.float64)
            gamma = np.asarray(effective(p["gamma"]), np.float64)
            pool = (np.abs(x) if layer.simplified else x * x) @ gamma.T + beta
            exact = pool if layer.simplified else np.sqrt(pool)
            relative = np.abs(norm - exact) / exact
            lsb = np.exp2(-np.asarray(graph.exponents[name], np.float64))
            measured = {"normalizer": relative.max(), "normalizer_p999": np.quantile(relative, 0.999),
                        "output_lsb": np.max(np.abs(x * (norm - exact)) / lsb)}
            errors[name] = {k: max(errors[name][k], float(measured[k])) for k in KEYS}
    return errors


def describe_errors(errors: dict[str, dict[str, float]]) -> str:
    """One line: per layer, the worst normalizer error and output error in LSBs."""
    return ", ".join(f"{name} N {e['normalizer']:.1e} (99.9%: {e['normalizer_p999']:.1e}) output {e['output_lsb']:.2f} LSB"
                     for name, e in errors.items())
