"""The NumPy integer interpreter of an integer graph: the ground truth of every backend.

Convolutions and requantization are the VTA reference ops of `jaxlic.quant.intops` (int8 x int8
products accumulated exactly, then wrapped to int32); everything else is integer NumPy with
32-bit wrap-around. No value ever passes through a rounding floating-point operation.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from jaxlic.quant import intops
from jaxlic.quant.graph import IntegerGraph, Op


def run(graph: IntegerGraph, inputs: Mapping[str, np.ndarray], outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Compute `outputs` (default: the graph's outputs) from named NHWC tensors."""
    values = {name: np.asarray(value) for name, value in inputs.items()}
    graph.check_inputs(values)
    wanted = tuple(outputs) if outputs is not None else graph.outputs
    for op in graph.ops_for(wanted, values):
        values[op.output] = _apply(op, [values[n] for n in op.inputs], graph.constants)
    return {name: values[name] for name in wanted}


def _apply(op: Op, args: list[np.ndarray], constants: Mapping[str, np.ndarray]) -> np.ndarray:
    return OPS[op.kind](op.attrs, args, {role: constants[name] for role, name in op.consts.items()})


def _scale_index(x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    index = np.zeros(x.shape, np.int32)
    for column in thresholds.T:  # one pass per level keeps memory at one tensor
        index += x > column
    return index


def _int32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int32)


# One entry per op kind of `jaxlic.quant.graph.OP_KINDS`: (attributes, inputs, constants) -> output.
OPS: dict[str, Callable[[Mapping[str, int], list[np.ndarray], dict[str, np.ndarray]], np.ndarray]] = {
    "conv2d": lambda a, x, c: intops.conv2d(x[0], c["weight"], c["bias"], a["stride"], a["padding"]),
    "conv2d_transpose": lambda a, x, c: intops.conv2d_transpose_subpixel(
        x[0], c["weight"], c["bias"], a["stride"], a["padding"], a["output_padding"]),
    "requantize": lambda a, x, c: intops.requantize(_int32(x[0]), c["shift"], a["lo"], a["hi"]),
    "leaky_relu": lambda a, x, c: np.maximum(x[0], x[0] >> a["shift"]),
    "abs": lambda a, x, c: np.minimum(np.abs(x[0].astype(np.int16)), 127).astype(np.int8),
    "square": lambda a, x, c: _int32(x[0]) * _int32(x[0]),
    "isqrt": lambda a, x, c: intops.isqrt(np.left_shift(np.maximum(_int32(x[0]), 0), c["pre_shift"])),
    "mul": lambda a, x, c: _int32(x[0]) * _int32(x[1]),
    "add": lambda a, x, c: _int32(x[0]) + _int32(x[1]),
    "add_channel": lambda a, x, c: _int32(x[0]) + c["addend"],
    "scale_index": lambda a, x, c: _scale_index(x[0], c["thresholds"]),
}
