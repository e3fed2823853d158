"""Integer graphs in JAX: exact integer execution, and its fake-quantized float twin for QAT.

mode "int": int8/int32 arithmetic, wrap-around adds and arithmetic shifts; convolutions run as
float32 digit planes whose every partial sum is an exact integer (`jaxlic.quant.exact_conv`),
or as XLA's slow int8 x int8 -> int32 convolution where no split is provably exact. Bit-identical
to `jaxlic.quant.reference` under jit or not, on any thread count: no value is ever rounded.
mode "fake": the same ops on integer-valued float32 tensors with straight-through rounding, so
gradients reach the float parameters the constants were quantized from.
"""

from __future__ import annotations

import weakref
from typing import Callable, Iterable, Literal, Mapping, Sequence

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
    cache, key = _cache(graph), (outputs, tuple(sorted(inputs)), jit)
    if "plans" not in cache:
        cache["plans"] = plan_graph(graph)
        cache["consts"] = {name: jnp.asarray(a) for name, a in graph.constants.items()}
    if key not in cache:
        ops, plans = graph.ops, cache["plans"]  # not the graph: the cache must not keep it alive

        def fn(consts, values):
            return run_ops(ops, consts, values, outputs, "int", plans)
        cache[key] = jax.jit(fn) if jit else fn
    result = cache[key](cache["consts"], {k: jnp.asarray(v) for k, v in inputs.items()})
    return {name: np.asarray(value) for name, value in result.items()}


_CACHES: dict[int, dict] = {}


def _cache(graph: IntegerGraph) -> dict:
    """The graph's convolution plans, device constants and compiled runners (one per outputs,
    inputs and jit); dropped when the graph is."""
    key = id(graph)
    if key not in _CACHES:
        _CACHES[key] = {}
        weakref.finalize(graph, _CACHES.pop, key, None)
    return _CACHES[key]


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
    if op.kind in ("conv2d", "conv2d_transpose") and bits is not None:
        return exact_conv(op, args[0], c["weight"], bits) + c["bias"]
    return INT_OPS[op.kind](op, args, c)


def _fake_op(op: Op, args: list[jax.Array], c: dict[str, jax.Array]) -> jax.Array:
    if op.kind not in FAKE_OPS:
        raise IntegerizationError(f"op {op.name!r} ({op.kind}) has no fake-quantized form; QAT uses the dequantized scales")
    return FAKE_OPS[op.kind](op, args, c)


def _int_conv2d(op: Op, x: list[jax.Array], c: dict) -> jax.Array:
    """XLA's int8 x int8 -> int32 convolution (slow on CPU: for convs no digit split makes exact)."""
    p = op.attrs["padding"]
    acc = jax.lax.conv_general_dilated(x[0], c["weight"], (op.attrs["stride"],) * 2, ((p, p), (p, p)),
                                       dimension_numbers=DIMENSIONS, preferred_element_type=jnp.int32)
    return acc + c["bias"]


def _int_requantize(op: Op, x: list[jax.Array], c: dict) -> jax.Array:
    shift, value = c["shift"], x[0].astype(jnp.int32)
    right, left = jnp.maximum(shift, 0), jnp.maximum(-shift, 0)
    rounding = jnp.where(right > 0, jnp.left_shift(1, jnp.maximum(right - 1, 0)), 0)
    wide = jnp.where(shift >= 0, value + rounding, jnp.left_shift(value, left))
    return jnp.clip(jnp.right_shift(wide, right), op.attrs["lo"], op.attrs["hi"]).astype(output_dtype_of(op))


def _int_scale_index(op: Op, x: list[jax.Array], c: dict) -> jax.Array:
    """A loop of whole-tensor compares, one per threshold column: on XLA CPU about 70x faster
    than one compare-and-count reduced over a minor thresholds axis (96 channels, 63 levels)."""
    columns = c["thresholds"].T

    def count_above(j, index):
        return index + (x[0] > columns[j]).astype(jnp.int32)

    return jax.lax.fori_loop(0, columns.shape[0], count_above, jnp.zeros(x[0].shape, jnp.int32))


def _int32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.int32)


def _fake_requantize(op: Op, x: list[jax.Array], c: dict) -> jax.Array:
    shift = c["shift"]
    scaled = x[0] * exp2i(-shift) + jnp.where(shift > 0, 0.5, 0.0)
    return jnp.clip(floor_ste(scaled), op.attrs["lo"], op.attrs["hi"])


def _fake_isqrt(op: Op, x: list[jax.Array], c: dict) -> jax.Array:
    """The exact integer root forward (float32 sqrt misplaces ~0.1% of floors), sqrt's gradient
    backward; the pool is an integer below 2^24 and the pre-shift a power of two, so the shifted
    pool is exact in float32."""
    shifted = jnp.maximum(x[0], 0.0) * exp2i(c["pre_shift"])
    root = _isqrt(jax.lax.stop_gradient(shifted).astype(jnp.int32)).astype(jnp.float32)
    smooth = jnp.sqrt(shifted + 1e-6)
    return smooth + jax.lax.stop_gradient(root - smooth)


Kernel = Callable[[Op, list[jax.Array], dict[str, jax.Array]], jax.Array]

# One entry per op kind of `jaxlic.quant.graph.OP_KINDS`: (op, inputs, constants) -> output.
INT_OPS: dict[str, Kernel] = {
    "conv2d": _int_conv2d,
    "conv2d_transpose": lambda op, x, c: conv_transpose_subpixel(x[0], c["weight"], op.attrs["stride"], jnp.int32)
    + c["bias"],
    "requantize": _int_requantize,
    "leaky_relu": lambda op, x, c: jnp.maximum(x[0], jnp.right_shift(x[0], op.attrs["shift"])),
    "abs": lambda op, x, c: jnp.minimum(jnp.abs(x[0].astype(jnp.int16)), 127).astype(jnp.int8),
    "square": lambda op, x, c: _int32(x[0]) * _int32(x[0]),
    "isqrt": lambda op, x, c: _isqrt(jnp.left_shift(jnp.maximum(_int32(x[0]), 0), c["pre_shift"])),
    "mul": lambda op, x, c: _int32(x[0]) * _int32(x[1]),
    "add": lambda op, x, c: _int32(x[0]) + _int32(x[1]),
    "add_channel": lambda op, x, c: _int32(x[0]) + c["addend"],
    "scale_index": _int_scale_index,
}

# The same on integer-valued float32 with straight-through rounding; scale_index has no
# gradient, so QAT trains on the scales it thresholds.
FAKE_OPS: dict[str, Kernel] = {
    "conv2d": lambda op, x, c: float_conv(op, x[0], c["weight"]) + c["bias"],
    "conv2d_transpose": lambda op, x, c: float_conv(op, x[0], c["weight"]) + c["bias"],
    "requantize": _fake_requantize,
    "leaky_relu": lambda op, x, c: jnp.maximum(x[0], floor_ste(x[0] * 2.0 ** -op.attrs["shift"])),
    "abs": lambda op, x, c: jnp.abs(x[0]),
    "square": lambda op, x, c: x[0] * x[0],
    "isqrt": _fake_isqrt,
    "mul": lambda op, x, c: x[0] * x[1],
    "add": lambda op, x, c: x[0] + x[1],
    "add_channel": lambda op, x, c: x[0] + c["addend"],
}
