"""The integer decoder path of the codec: table indexes, means and pixels from the integer graph.

Everything that decides how the decoder reads the bitstream (hyper-synthesis, scale -> table
index) and everything it outputs (synthesis) is integer, so a bitstream decodes to the same
bits with any backend: XLA jitted or op by op, on any thread count, or the NumPy reference.
"""

from __future__ import annotations

from typing import Literal, Mapping, Protocol, Sequence

import numpy as np

from jaxlic.codec.package import ModelPackage
from jaxlic.errors import ConfigError
from jaxlic.quant import execute, reference
from jaxlic.quant.export import check_integer_package

BACKENDS = ("jax", "jax-eager", "numpy")


class GraphRunner(Protocol):
    """Another executor of the package's integer graph (e.g. a TVM-built deployment bundle)."""

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]: ...


Backend = Literal["jax", "jax-eager", "numpy"] | GraphRunner


def _run(package: ModelPackage, inputs: dict[str, np.ndarray], outputs: list[str], backend: Backend) -> dict:
    graph = check_integer_package(package)
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


def integer_hyper(package: ModelPackage, z_symbols: np.ndarray, backend: Backend = "jax"
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(table index of every y element, means as float for the encoder or None, means as the
    integers the synthesis takes or None)."""
    wanted = ["scale_index"] + (["means"] if package.config.arch == "mbt2018-mean" else [])
    out = _run(package, {"z_symbols": as_symbols(z_symbols)}, wanted, backend)
    means = out.get("means")
    if means is None:
        return out["scale_index"], None, None
    exponents = np.asarray(package.integer.exponents["means"], np.float64)
    return out["scale_index"], (means * np.exp2(-exponents)).astype(np.float32), means


def integer_synthesis(package: ModelPackage, y_symbols: np.ndarray, means: np.ndarray | None,
                      backend: Backend = "jax") -> np.ndarray:
    """uint8 NHWC pixels from the y symbols (and the integer means of mean-scale models)."""
    inputs = {"y_symbols": as_symbols(y_symbols)}
    if means is not None:
        inputs["means"] = means
    return _run(package, inputs, ["pixels"], backend)["pixels"]
