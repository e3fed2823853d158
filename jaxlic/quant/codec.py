"""The integer decoder path of the codec: table indexes, means and pixels from integer graphs.

Everything that decides how the decoder reads the bitstream (hyper-synthesis, scale -> table
index) is integer in every hyperprior package: the decoder graph of integer-mode packages, the
entropy graph (`jaxlic.quant.entropy_params`) of float ones. So a bitstream's latents decode to
the same bits with any backend: XLA jitted or op by op, on any thread count, or the NumPy
reference; integer-mode packages make the pixels (the synthesis) integer too.
"""

from __future__ import annotations

from typing import Literal, Mapping, Protocol, Sequence

import numpy as np

from jaxlic.codec.package import ModelPackage
from jaxlic.errors import ConfigError
from jaxlic.quant import execute, reference
from jaxlic.quant.export import check_integer_package
from jaxlic.quant.graph import IntegerGraph

BACKENDS = ("jax", "jax-eager", "numpy")


class GraphRunner(Protocol):
    """Another executor of the package's integer graph (e.g. a TVM-built deployment bundle)."""

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]: ...


Backend = Literal["jax", "jax-eager", "numpy"] | GraphRunner


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


def integer_hyper(graph: IntegerGraph, z_symbols: np.ndarray, backend: Backend = "jax"
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(table index of every y element, means as float or None, means as the integers an
    integer synthesis takes or None) from a graph with the hyper phase (`scale_index` [, `means`])."""
    wanted = ["scale_index"] + (["means"] if "means" in graph.outputs else [])
    out = run_graph(graph, {"z_symbols": as_symbols(z_symbols)}, wanted, backend)
    means = out.get("means")
    if means is None:
        return out["scale_index"], None, None
    exponents = np.asarray(graph.exponents["means"], np.float64)
    return out["scale_index"], (means * np.exp2(-exponents)).astype(np.float32), means


def integer_synthesis(package: ModelPackage, y_symbols: np.ndarray, means: np.ndarray | None,
                      backend: Backend = "jax") -> np.ndarray:
    """uint8 NHWC pixels from the y symbols (and the integer means of mean-scale models)."""
    inputs = {"y_symbols": as_symbols(y_symbols)}
    if means is not None:
        inputs["means"] = means
    return run_graph(check_integer_package(package), inputs, ["pixels"], backend)["pixels"]
