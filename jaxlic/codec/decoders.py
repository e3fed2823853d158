"""The decoder protocol every package kind implements, so the codec is straight code.

`hyper(z_symbols) -> (table index of every y element, means or None)` and
`synthesis(y_symbols, means) -> uint8 pixels` (NHWC, at the padded size). Table indexes always
come from an integer graph (the decoder graph of integer-mode packages, the entropy graph of
float hyperprior packages), so a stream's symbols decode identically with any backend: XLA
jitted or op by op, on any thread count, the NumPy reference, or a deployment bundle
(a `GraphRunner`). Means are float32 in both kinds; the integer ones are exact multiples of
2^-e with |value| * 2^e < 2^24, so the integer synthesis gets its integers back exactly.
"""

from __future__ import annotations

from typing import Literal, Mapping, Protocol, Sequence

import numpy as np

from jaxlic.codec.package import ModelPackage
from jaxlic.entropy.factorized import y_offset
from jaxlic.errors import BitstreamError, ConfigError, IntegerizationError
from jaxlic.quant import execute, reference
from jaxlic.quant.graph import IntegerGraph

BACKENDS = ("jax", "jax-eager", "numpy")


class GraphRunner(Protocol):
    """Another executor of the package's integer graph (e.g. a TVM-built deployment bundle)."""

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]: ...


Backend = Literal["jax", "jax-eager", "numpy"] | GraphRunner


class Decoder(Protocol):
    def hyper(self, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...

    def synthesis(self, y_symbols: np.ndarray, means: np.ndarray | None) -> np.ndarray: ...


def run_graph(graph: IntegerGraph, inputs: dict[str, np.ndarray], outputs: list[str], backend: Backend) -> dict:
    """Run `graph` with one of the BACKENDS or another GraphRunner (which runs its own copy)."""
    if not isinstance(backend, str):
        return backend.run(inputs, outputs)
    if backend == "numpy":
        return reference.run(graph, inputs, outputs)
    if backend in ("jax", "jax-eager"):
        return execute.run(graph, inputs, outputs, jit=backend == "jax")
    raise ConfigError(f"unknown integer backend {backend!r}; choose one of {BACKENDS}")


def as_symbols(values: np.ndarray) -> np.ndarray:
    """Decoded (int64) or encoder (float) symbols as the graph's int32 input, saturating."""
    return np.clip(np.asarray(values), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)


def _integer_indexes(graph: IntegerGraph, z_symbols: np.ndarray, backend: Backend, means: bool):
    wanted = ["scale_index"] + (["means"] if means else [])
    return run_graph(graph, {"z_symbols": as_symbols(z_symbols)}, wanted, backend)


def _pixels(x_hat: np.ndarray) -> np.ndarray:
    x = np.asarray(x_hat)
    if not np.all(np.isfinite(x)):
        raise BitstreamError("the bitstream decodes to non-finite pixels (crafted escapes or a diverged model)")
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


class FloatDecoder:
    """Float synthesis (and float means); table indexes from the package's entropy graph."""

    def __init__(self, package: ModelPackage, backend: Backend = "jax"):
        self.package, self.backend = package, backend

    def hyper(self, z_symbols):
        package = self.package
        indexes = _integer_indexes(package.hyper_graph, z_symbols, self.backend, means=False)["scale_index"]
        if not package.model.predicts_means:
            return indexes, None
        fns = package.transforms
        return indexes, np.asarray(fns.hyper_synthesis(z_symbols.astype(np.float32) + fns.medians)[1])

    def synthesis(self, y_symbols, means):
        fns = self.package.transforms
        offset = y_offset(self.package.model.hyper, fns.medians, means)
        return _pixels(fns.synthesis(y_symbols.astype(np.float32) + offset))


class IntegerDecoder:
    """The integer-mode decoder graph for everything: indexes, means and pixels."""

    def __init__(self, package: ModelPackage, backend: Backend = "jax"):
        self.graph, self.backend = check_integer_package(package), backend
        self.means_exponents = np.asarray(self.graph.exponents.get("means", ()), np.float64)

    def hyper(self, z_symbols):
        out = _integer_indexes(self.graph, z_symbols, self.backend, means="means" in self.graph.outputs)
        if "means" not in out:
            return out["scale_index"], None
        return out["scale_index"], (out["means"] * np.exp2(-self.means_exponents)).astype(np.float32)

    def synthesis(self, y_symbols, means):
        inputs = {"y_symbols": as_symbols(y_symbols)}
        if means is not None:
            inputs["means"] = np.round(means * np.exp2(self.means_exponents)).astype(np.int32)
        return run_graph(self.graph, inputs, ["pixels"], self.backend)["pixels"]


def decoder_for(package: ModelPackage, backend: Backend = "jax") -> Decoder:
    """The package's decoder: integer-mode packages run their graph, float ones their networks."""
    return IntegerDecoder(package, backend) if package.integer is not None else FloatDecoder(package, backend)


def check_integer_package(package: ModelPackage) -> IntegerGraph:
    """The package's graph, after checking it is the decoder of this model (IntegerizationError)."""
    graph = package.integer
    if graph is None:
        raise IntegerizationError("this model package has no integer graph; make one with `jaxlic quantize`")
    config, model = package.config, package.model
    want_inputs = {"y_symbols": config.M, **({"z_symbols": config.N} if model.hyper else {})}
    want_outputs = {"pixels", *(("scale_index",) if model.hyper else ()), *(("means",) if model.predicts_means else ())}
    if graph.inputs != want_inputs or set(graph.outputs) != want_outputs or "y" not in graph.exponents:
        raise IntegerizationError(
            f"the integer graph (inputs {graph.inputs}, outputs {list(graph.outputs)}) is not a decoder of "
            f"{config.arch} with N={config.N}, M={config.M}")
    return graph
