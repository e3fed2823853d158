"""The NumPy integer interpreter of an integer graph: the ground truth of every backend.

Convolutions and requantization are the VTA reference ops of `jaxlic.quant.intops` (int8 x int8
products accumulated exactly, then wrapped to int32); everything else is integer NumPy with
32-bit wrap-around. No value ever passes through a rounding floating-point operation.
"""

from __future__ import annotations

from typing import Iterable, Mapping

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
    c = {role: constants[name] for role, name in op.consts.items()}
    a, x = op.attrs, args[0]
    if op.kind == "conv2d":
        return intops.conv2d(x, c["weight"], c["bias"], a["stride"], a["padding"])
    if op.kind == "conv2d_transpose":
        return intops.conv2d_transpose_subpixel(x, c["weight"], c["bias"], a["stride"], a["padding"], a["output_padding"])
    if op.kind == "requantize":
        return intops.requantize(x.astype(np.int32), c["shift"], a["lo"], a["hi"])
    if op.kind == "leaky_relu":
        return np.maximum(x, x >> a["shift"])
    if op.kind == "abs":
        return np.minimum(np.abs(x.astype(np.int16)), 127).astype(np.int8)
    if op.kind == "square":
        return x.astype(np.int32) * x.astype(np.int32)
    if op.kind == "isqrt":
        return intops.isqrt(np.left_shift(np.maximum(x.astype(np.int32), 0), c["pre_shift"]))
    if op.kind == "mul":
        return x.astype(np.int32) * args[1].astype(np.int32)
    if op.kind == "add":
        return x.astype(np.int32) + args[1].astype(np.int32)
    if op.kind == "add_channel":
        return x.astype(np.int32) + c["addend"]
    if op.kind == "scale_index":
        index = np.zeros(x.shape, np.int32)
        for column in c["thresholds"].T:  # one pass per level keeps memory at one tensor
            index += x > column
        return index
    raise AssertionError(f"validated graphs have no op {op.kind!r}")
