"""Integer graphs in JAX: exact integer execution, and its fake-quantized float twin for QAT.

mode "int": int8/int32 arithmetic, wrap-around adds and arithmetic shifts; convolutions run as
float32 digit planes whose every partial sum is an exact integer (`jaxlic.quant.exact_conv`),
or as XLA's slow int8 x int8 -> int32 convolution where no split is provably exact. Bit-identical
to `jaxlic.quant.reference` under jit or not, on any thread count: no value is ever rounded.
mode "fake": the same ops on integer-valued float32 tensors with straight-through rounding, so
gradients reach the float parameters the constants were quantized from.
"""

from __future__ import annotations

from typing import Iterable, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.errors import IntegerizationError
from jaxlic.nn.conv import DIMENSIONS, conv_transpose_subpixel
from jaxlic.quant.exact_conv import exact_conv, float_conv, plan_graph
from jaxlic.quant.fakequant import exp2i, floor_ste
from jaxlic.quant.graph import IntegerGraph, Op, needed_ops, output_dtype_of

Mode = Literal["int", "fake"]
_ISQRT_MAX = 46340  # floor(sqrt(2^31 - 1))


def run_ops(ops: Sequence[Op], consts: Mapping[str, jax.Array], values: Mapping[str, jax.Array],
            outputs: Iterable[str], mode: Mode,
            plans: Mapping[str, int | None] | None = None) -> dict[str, jax.Array]:
    """Compute `outputs` from `values` by the ops they need (traceable; no validation). In mode
    "int", convolutions with a digit width in `plans` (`exact_conv.plan_graph`) run as exact
    float32 planes, the others as integer convolutions."""
    values, outputs = dict(values), tuple(outputs)
    for op in needed_ops(ops, outputs, values):
        c = {role: consts[name] for role, name in op.consts.items()}
        args = [values[n] for n in op.inputs]
        values[op.output] = _int_op(op, args, c, (plans or {}).get(op.name)) if mode == "int" else _fake_op(op, args, c)
    return {name: values[name] for name in outputs}


def run(graph: IntegerGraph, inputs: Mapping[str, np.ndarray], outputs: Iterable[str] | None = None,
        jit: bool = True) -> dict[str, np.ndarray]:
    """Exact integer execution of a validated graph; equals `reference.run` bit for bit."""
    inputs = {name: np.asarray(value) for name, value in inputs.items()}
    graph.check_inputs(inputs)
    outputs = tuple(outputs) if outputs is not None else graph.outputs
    for op in graph.ops_for(outputs, inputs):
        if op.kind == "conv2d_transpose" and not _subpixel_form(op, graph.constants[op.consts["weight"]]):
            raise IntegerizationError(f"op {op.name!r}: the JAX backend runs transposed convolutions with a square "
                                      "kernel, padding k//2 and output_padding stride-1 only; use the NumPy reference")
    key = (outputs, tuple(sorted(inputs)), jit)
    if "plans" not in graph._runners:
        graph._runners["plans"] = plan_graph(graph)
    if key not in graph._runners:
        def fn(consts, values):
            return run_ops(graph.ops, consts, values, outputs, "int", graph._runners["plans"])
        graph._runners[key] = jax.jit(fn) if jit else fn
    if "consts" not in graph._runners:
        graph._runners["consts"] = {name: jnp.asarray(a) for name, a in graph.constants.items()}
    result = graph._runners[key](graph._runners["consts"], {k: jnp.asarray(v) for k, v in inputs.items()})
    return {name: np.asarray(value) for name, value in result.items()}


def _subpixel_form(op: Op, weight: np.ndarray) -> bool:
    k = weight.shape[0]
    return (weight.shape[1] == k and op.attrs["padding"] == k // 2
            and op.attrs["output_padding"] == op.attrs["stride"] - 1)


def _isqrt(n: jax.Array) -> jax.Array:
    """floor(sqrt(n)) of int32 n >= 0, exactly (as the digit-by-digit `intops.isqrt`), from a
    float32 estimate corrected once each way: float32(n) is within 2^-24 relative of n, so the
    estimate is within 0.01 of sqrt(n) <= 46341 and its floor within 1 of the answer. The
    products stay in int32: the root is capped at 46340 (46340^2 <= 2^31 - 1) before squaring,
    and (r + 1)^2 <= n is tested as n - r^2 > 2r once r^2 <= n. 3x faster than 16 digit rounds."""
    root = jnp.minimum(jnp.floor(jnp.sqrt(n.astype(jnp.float32))).astype(jnp.int32), _ISQRT_MAX)
    root = root - (root * root > n)
    return root + (n - root * root > 2 * root)


def _int_op(op: Op, args: list[jax.Array], c: dict[str, jax.Array], bits: int | None) -> jax.Array:
    a, x = op.attrs, args[0]
    if op.kind in ("conv2d", "conv2d_transpose") and bits is not None:
        return exact_conv(op, x, c["weight"], bits) + c["bias"]
    if op.kind == "conv2d":
        p = a["padding"]
        acc = jax.lax.conv_general_dilated(x, c["weight"], (a["stride"],) * 2, ((p, p), (p, p)),
                                           dimension_numbers=DIMENSIONS, preferred_element_type=jnp.int32)
        return acc + c["bias"]
    if op.kind == "conv2d_transpose":
        return conv_transpose_subpixel(x, c["weight"], a["stride"], jnp.int32) + c["bias"]
    if op.kind == "requantize":
        shift, x = c["shift"], x.astype(jnp.int32)
        right, left = jnp.maximum(shift, 0), jnp.maximum(-shift, 0)
        rounding = jnp.where(right > 0, jnp.left_shift(1, jnp.maximum(right - 1, 0)), 0)
        wide = jnp.where(shift >= 0, x + rounding, jnp.left_shift(x, left))
        dtype = output_dtype_of(op)
        return jnp.clip(jnp.right_shift(wide, right), a["lo"], a["hi"]).astype(dtype)
    if op.kind == "leaky_relu":
        return jnp.maximum(x, jnp.right_shift(x, a["shift"]))
    if op.kind == "abs":
        return jnp.minimum(jnp.abs(x.astype(jnp.int16)), 127).astype(jnp.int8)
    if op.kind == "square":
        return x.astype(jnp.int32) * x.astype(jnp.int32)
    if op.kind == "isqrt":
        return _isqrt(jnp.left_shift(jnp.maximum(x.astype(jnp.int32), 0), c["pre_shift"]))
    if op.kind == "mul":
        return x.astype(jnp.int32) * args[1].astype(jnp.int32)
    if op.kind == "add":
        return x.astype(jnp.int32) + args[1].astype(jnp.int32)
    if op.kind == "add_channel":
        return x.astype(jnp.int32) + c["addend"]
    if op.kind == "scale_index":
        # A loop of whole-tensor compares, one per threshold column: on XLA CPU about 70x faster
        # than one compare-and-count reduced over a minor thresholds axis (96 channels, 63 levels).
        columns = c["thresholds"].T

        def count_above(j, index):
            return index + (x > columns[j]).astype(jnp.int32)

        return jax.lax.fori_loop(0, columns.shape[0], count_above, jnp.zeros(x.shape, jnp.int32))
    raise AssertionError(f"validated graphs have no op {op.kind!r}")


def _fake_op(op: Op, args: list[jax.Array], c: dict[str, jax.Array]) -> jax.Array:
    a, x = op.attrs, args[0]
    if op.kind in ("conv2d", "conv2d_transpose"):
        return float_conv(op, x, c["weight"]) + c["bias"]
    if op.kind == "requantize":
        shift = c["shift"]
        scaled = x * exp2i(-shift) + jnp.where(shift > 0, 0.5, 0.0)
        return jnp.clip(floor_ste(scaled), a["lo"], a["hi"])
    if op.kind == "leaky_relu":
        return jnp.maximum(x, floor_ste(x * 2.0 ** -a["shift"]))
    if op.kind == "abs":
        return jnp.abs(x)
    if op.kind == "square":
        return x * x
    if op.kind == "isqrt":
        # The exact integer root forward (float32 sqrt misplaces ~0.1% of floors), sqrt's
        # gradient backward; the pre-shifted pool has <= 15 significant bits, exact in float32.
        shifted = jnp.maximum(x, 0.0) * exp2i(c["pre_shift"])
        root = _isqrt(jax.lax.stop_gradient(shifted).astype(jnp.int32)).astype(jnp.float32)
        smooth = jnp.sqrt(shifted + 1e-6)
        return smooth + jax.lax.stop_gradient(root - smooth)
    if op.kind == "mul":
        return x * args[1]
    if op.kind == "add":
        return x + args[1]
    if op.kind == "add_channel":
        return x + c["addend"]
    raise IntegerizationError(f"op {op.name!r} ({op.kind}) has no fake-quantized form; QAT uses the dequantized scales")
