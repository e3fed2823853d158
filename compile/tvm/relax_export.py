"""The integer graph as a TVM Relax IRModule: every op kind, static shapes, weights as parameters.

Each Relax function computes some graph outputs from some graph tensors (by default one `main`
from the graph inputs to the graph outputs) and takes, after its inputs, every host parameter of
the module in one shared order, so the built library holds code, never weights. A VTA-placed
pair (a convolution and the requantize that alone reads it) becomes one
`R.call_dps_packed(function, (x, R.prim_value(index)), out)` whose implementation the runtime
registers; its weights stay out of the module.

Arithmetic follows `jaxlic.quant.reference` bit for bit. A validated graph provably never leaves
int32 (`IntegerGraph.validate`), so TVM's int32 adds and shifts need no wrap-around handling.
A module also carries `SIGNATURE`, a function returning its own calling convention as JSON bytes,
so a library file alone says which function computes what (see `HostModule`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import tvm
from tvm import relax, te, tirx

from compile.tvm.schedule import TILE_CHANNELS
from jaxlic.errors import CompileError, IntegerizationError
from jaxlic.quant.graph import IntegerGraph, Op
from jaxlic.quant.intops import conv_output_size, conv_transpose_output_size, subpixel_conv_weights

VTA_FUNCTION = "jaxlic.vta_layer"
SIGNATURE = "jaxlic_signature"
CONV_KINDS = ("conv2d", "conv2d_transpose")
# float32 adds are exact while every partial sum is an integer below 2^24 in magnitude.
FLOAT_EXACT = 1 << 24
# Measured here (EPYC, AVX-512), the 3x3 64->256 sub-pixel conv of a width-0.5 decoder at 768x512:
# int8 conv2d 2.56 s, float32 1.00 s (same schedule). "int8" remains for CPUs where that flips.
CONV_ARITHMETIC = "float32"
ISQRT_MAX = 46340  # the largest root whose square fits int32
_op = relax.op


@dataclass(frozen=True)
class Offload:
    """One VTA-placed pair: conv op + requantize op -> one packed call producing `output`."""

    index: int
    conv: str
    requantize: str
    output: str
    out_shape: tuple[int, ...]
    out_dtype: str


@dataclass(frozen=True)
class Function:
    """One Relax function of the module: graph tensors `inputs` -> graph tensors `outputs`."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def to_relax(graph: IntegerGraph, input_shapes: Mapping[str, Sequence[int]], offloads: Sequence[Offload] = (),
             function: str = VTA_FUNCTION, functions: Sequence[Function] | None = None) -> tuple[tvm.IRModule, list[str]]:
    """The IRModule of `graph` at the given NHWC input shapes, and its parameter names in order.

    `functions` (objects with name, inputs, outputs; default one `main` from the graph inputs to
    the graph outputs) each become a Relax function taking (inputs..., parameters...) and
    returning the tuple of its outputs. CompileError for bad shapes, offloads or ops."""
    functions = tuple(functions) if functions is not None else (Function("main", tuple(graph.inputs), graph.outputs),)
    names = [f.name for f in functions]
    if not functions or len(set(names)) != len(names) or SIGNATURE in names:
        raise CompileError(f"function names must be distinct, non-empty and not {SIGNATURE!r}, got {names}")
    by_conv = _check_offloads(graph, offloads)
    fused = {o.requantize for o in offloads}
    plans = []
    for fn in functions:
        try:
            ops = graph.ops_for(fn.outputs, fn.inputs)
        except IntegerizationError as exc:
            raise CompileError(f"function {fn.name!r}: {exc}") from None
        names = {op.name for op in ops}
        for offload in offloads:
            if offload.requantize in names and offload.conv not in names:
                raise CompileError(f"function {fn.name!r} needs offloaded {offload.requantize!r} without its convolution")
        plans.append((fn, ops))
    host_consts = sorted({c for _, ops in plans for op in ops if op.name not in by_conv and op.name not in fused
                          for c in op.consts.values()})
    shapes = {name: _input_shape(graph, name, input_shapes) for fn in functions for name in fn.inputs}
    builder = relax.BlockBuilder()
    for fn, ops in plans:
        _emit_function(builder, graph, fn, ops, shapes, host_consts, by_conv, fused, function)
    signature = {"functions": {fn.name: {"inputs": list(fn.inputs), "outputs": list(fn.outputs)} for fn in functions},
                 "input_shapes": {name: list(shape) for name, shape in shapes.items()},
                 "input_dtypes": {name: str(graph.info[name].dtype) for name in shapes},
                 "params": host_consts, "packed_function": function, "offloads": len(offloads)}
    with builder.function(SIGNATURE, []):
        builder.emit_func_output(relax.const(np.frombuffer(json.dumps(signature).encode(), np.uint8)))
    return builder.get(), host_consts


def count_packed_calls(mod: tvm.IRModule, function: str = VTA_FUNCTION) -> int:
    """How many `call_dps_packed(function, ...)` calls the module's Relax functions make."""
    calls = []

    def visit(expr):
        if (isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == "relax.call_dps_packed"
                and getattr(expr.args[0], "global_symbol", None) == function):
            calls.append(expr)

    for _, func in mod.functions.items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return len(calls)


def _check_offloads(graph: IntegerGraph, offloads: Sequence[Offload]) -> dict[str, Offload]:
    ops = {op.name: op for op in graph.ops}
    readers: dict[str, list[str]] = {}
    for op in graph.ops:
        for name in op.inputs:
            readers.setdefault(name, []).append(op.name)
    by_conv = {}
    for offload in offloads:
        where = f"offload {offload.index} ({offload.conv!r} + {offload.requantize!r})"
        conv, requantize = ops.get(offload.conv), ops.get(offload.requantize)
        if conv is None or conv.kind not in CONV_KINDS:
            raise CompileError(f"{where}: {offload.conv!r} is not a convolution of the graph")
        if requantize is None or requantize.kind != "requantize" or requantize.inputs != (conv.output,):
            raise CompileError(f"{where}: {offload.requantize!r} is not a requantize reading {conv.output!r}")
        if readers.get(conv.output) != [requantize.name] or conv.output in graph.outputs:
            raise CompileError(f"{where}: the accumulator {conv.output!r} is read by more than the requantize")
        if offload.output != requantize.output or offload.out_dtype != str(graph.info[offload.output].dtype):
            raise CompileError(f"{where}: output must be {requantize.output!r} of dtype "
                               f"{graph.info[requantize.output].dtype}, got {offload.output!r} {offload.out_dtype}")
        if offload.conv in by_conv or offload.index in {o.index for o in by_conv.values()}:
            raise CompileError(f"{where}: the convolution or the index is offloaded twice")
        by_conv[offload.conv] = offload
    return by_conv


def _input_shape(graph: IntegerGraph, name: str, input_shapes: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
    if name not in graph.info:
        raise CompileError(f"{name!r} is not a tensor of the integer graph")
    shape = input_shapes.get(name)
    if shape is None:
        raise CompileError(f"no shape given for input {name!r}; give NHWC shapes for {sorted(input_shapes)}")
    shape = tuple(shape)
    channels = graph.info[name].channels
    if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape) or shape[3] != channels:
        raise CompileError(f"input {name!r} needs a static NHWC shape (N, H, W, {channels}) of positive ints, got {shape}")
    return tuple(int(d) for d in shape)


def _emit_function(builder, graph, fn, ops, shapes, host_consts, by_conv, fused, function) -> None:
    inputs = [relax.Var(name, relax.TensorType(shapes[name], str(graph.info[name].dtype))) for name in fn.inputs]
    params = {name: relax.Var(name, relax.TensorType(graph.constants[name].shape, str(graph.constants[name].dtype)))
              for name in host_consts}
    with builder.function(fn.name, inputs + list(params.values())):
        with builder.dataflow():
            values = dict(zip(fn.inputs, inputs))
            for op in ops:
                if op.name in fused:
                    continue
                offload = by_conv.get(op.name)
                if offload is not None:
                    _check_offload_shape(graph, op, values[op.inputs[0]], offload)
                    values[offload.output] = _emit_offload(builder, values[op.inputs[0]], offload, function)
                    continue
                c = {role: params[name] for role, name in op.consts.items()}
                try:
                    values[op.output] = _lower(builder, graph, op, [values[n] for n in op.inputs], c)
                except CompileError as exc:
                    raise CompileError(f"function {fn.name!r}, op {op.name!r} ({op.kind}): {exc}") from None
            output = builder.emit_output(relax.Tuple([values[name] for name in fn.outputs]))
        builder.emit_func_output(output)


def _emit_offload(builder, x, offload: Offload, function: str):
    out = relax.TensorType(tuple(offload.out_shape), offload.out_dtype)
    call = relax.call_dps_packed(function, relax.Tuple([x, relax.prim_value(offload.index)]), out)
    return builder.emit(call, name_hint=_hint(offload.output))


def _check_offload_shape(graph: IntegerGraph, op: Op, x, offload: Offload) -> None:
    n, h, w, _ = (int(d) for d in x.ty.shape)
    k, cout = graph.constants[op.consts["weight"]].shape[0], graph.constants[op.consts["weight"]].shape[3]
    s, p = op.attrs["stride"], op.attrs["padding"]
    if op.kind == "conv2d":
        size = [conv_output_size(d, k, s, p) for d in (h, w)]
    else:
        size = [conv_transpose_output_size(d, k, s, p, op.attrs["output_padding"]) for d in (h, w)]
    if tuple(offload.out_shape) != (n, *size, cout):
        raise CompileError(f"offload {offload.index} ({op.name!r}): out_shape must be {(n, *size, cout)} for an "
                           f"input of {(n, h, w)}, got {tuple(offload.out_shape)}")


def _hint(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _i32(value: int):
    return relax.const(value, "int32")


def _elementwise(builder, name: str, inputs: list, per_element, dtype: str):
    """One TE kernel (one TIR block): out[i] = per_element(i, *tensors), in `dtype`."""
    def compute(*tensors):
        return te.compute(tensors[0].shape, lambda *i: per_element(i, *tensors).astype(dtype), name=name)

    return builder.emit_te(compute, *inputs, primfunc_name_hint=name)


def _requantize(lo: int, hi: int):
    def per_element(i, x, shift):
        n = shift[i[-1]]
        right, left = tirx.max(n, 0), tirx.max(-n, 0)
        # 2^(n-1) for n > 0, else 0; a negative shift n shifts left by -n and adds nothing.
        rounding = (tirx.const(1, "int32") << right) >> 1
        value = ((x[i].astype("int32") << left) + rounding) >> right
        return tirx.min(tirx.max(value, tirx.const(lo, "int32")), tirx.const(hi, "int32"))
    return per_element


def _isqrt(i, x, pre_shift):
    """floor(sqrt(max(x, 0) << pre_shift)), exactly as intops.isqrt, in one element-wise kernel:
    float32(n) is within 2^-24 relative of n, so floor(sqrt(float32(n))) is within 1 of the
    answer; one correction each way makes it exact (the argument of jaxlic.quant.execute._isqrt,
    checked there on every non-negative int32). The root is capped at 46340 so r * r stays in int32."""
    n = tirx.max(x[i].astype("int32"), 0) << pre_shift[i[-1]]
    root = tirx.min(tirx.floor(tirx.sqrt(n.astype("float32"))).astype("int32"), tirx.const(ISQRT_MAX, "int32"))
    root = root - (root * root > n).astype("int32")
    return root + (n - root * root > 2 * root).astype("int32")


def _lower(builder, graph: IntegerGraph, op: Op, args: list, c: dict):
    """One host op, emitted (see jaxlic.quant.reference for the semantics)."""
    a, x, dtype, name = op.attrs, args[0], str(graph.info[op.output].dtype), _hint(op.output)
    int32 = lambda value: value.astype("int32")  # noqa: E731
    if op.kind == "conv2d":
        acc = _conv(builder, graph, op, x, c["weight"], a["padding"], a["stride"])
        return builder.emit(_op.add(acc, c["bias"]), name)
    if op.kind == "conv2d_transpose":
        return builder.emit(_op.add(_conv_transpose(builder, graph, op, x, c["weight"]), c["bias"]), name)
    if op.kind == "scale_index":
        columns = builder.emit(_op.permute_dims(c["thresholds"]))  # (levels, channels): rows contiguous
        return builder.emit_te(_count_above, x, columns, primfunc_name_hint=name)
    per_element, inputs = {
        "requantize": (_requantize(a.get("lo"), a.get("hi")), [x, c.get("shift")]),
        "leaky_relu": (lambda i, t: tirx.max(t[i], t[i] >> a.get("shift")), [x]),
        "abs": (lambda i, t: tirx.min(tirx.abs(t[i].astype("int16")), tirx.const(127, "int16")), [x]),
        "square": (lambda i, t: int32(t[i]) * int32(t[i]), [x]),
        "mul": (lambda i, t, u: int32(t[i]) * int32(u[i]), args),
        "add": (lambda i, t, u: int32(t[i]) + int32(u[i]), args),
        "add_channel": (lambda i, t, addend: int32(t[i]) + addend[i[-1]], [x, c.get("addend")]),
        "isqrt": (_isqrt, [x, c.get("pre_shift")]),
    }.get(op.kind, (None, None))
    if per_element is None:
        raise CompileError(f"op kind {op.kind!r} has no TVM lowering")
    return _elementwise(builder, name, inputs, per_element, dtype)


def _count_above(x, columns):
    """TE: per element, how many of its channel's thresholds (`columns[level, channel]`) it exceeds."""
    level = te.reduce_axis((0, columns.shape[0]), "level")
    return te.compute(x.shape, lambda *i: te.sum((x[i] > columns[level, i[-1]]).astype("int32"), axis=level),
                      name="count_above")


def _magnitude(graph: IntegerGraph, name: str) -> int:
    info = graph.info[name]
    return max(abs(info.lo), abs(info.hi))


def _conv(builder, graph: IntegerGraph, op: Op, x, weight, padding: int | tuple[int, int, int, int], stride: int = 1):
    """int8 NHWC x int8 HWIO -> int32, computed as CONV_ARITHMETIC says (exact either way)."""
    if CONV_ARITHMETIC == "int8":
        return _op.nn.conv2d(x, weight, stride, padding, data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32")
    taps = graph.constants[op.consts["weight"]]
    return _exact(builder, graph, op, x, taps, lambda data: _float_conv(data, weight, taps.shape, stride, padding))


def _exact(builder, graph: IntegerGraph, op: Op, x, taps: np.ndarray, float_conv):
    """The int32 result of `float_conv` (a float32 convolution of x's integers with the HWIO
    kernel `taps`, NumPy, in the form that runs) made exact.

    Every partial sum of an output is an integer of magnitude at most max|x| * sum|w| over that
    output's taps (a column of `taps`; IntegerGraph.validate bounds max|x|). While that is below
    2^24 every float32 add is exact whatever the summation order, so one float32 convolution
    gives the integer sum. Otherwise x = 16 * (x >> 4) + (x & 15) splits it into two such convs."""
    reach = int(np.abs(taps.astype(np.int64)).sum(axis=(0, 1, 2)).max())
    exact = lambda data: _op.astype(float_conv(data), "int32")  # noqa: E731
    if reach * _magnitude(graph, op.inputs[0]) < FLOAT_EXACT:
        return exact(x)
    if reach * 15 >= FLOAT_EXACT:
        raise CompileError(f"weights with sum|w| = {reach} per channel are too large for exact float32 convolution")
    high = exact(builder.emit(_op.right_shift(x, relax.const(4, "int8"))))
    low = exact(builder.emit(_op.bitwise_and(x, relax.const(15, "int8"))))
    return _op.add(_op.left_shift(high, _i32(4)), low)


def _float_conv(data, weight, shape: tuple[int, ...], stride: int, padding):
    """float32 NHWC conv of int8 data and an int8 HWIO weight of `shape`. Output channels are
    padded with zero filters to a multiple of the schedule's register tile (and cut after), so
    a narrow output (the 3 x 4 phases of the pixel layer) still runs in whole vectors."""
    kh, kw, cin, cout = shape
    weight = _op.astype(weight, "float32")
    extra = -cout % TILE_CHANNELS
    if extra:
        weight = _op.concat([weight, _op.zeros((kh, kw, cin, extra), "float32")], axis=3)
    acc = _op.nn.conv2d(_op.astype(data, "float32"), weight, stride, padding, data_layout="NHWC",
                        kernel_layout="HWIO", out_dtype="float32")
    return _op.strided_slice(acc, axes=[3], begin=[0], end=[cout]) if extra else acc


def _conv_transpose(builder, graph: IntegerGraph, op: Op, x, weight):
    """The sub-pixel form of `intops.subpixel_conv_weights`: a stride-1 conv whose output
    channels hold the stride x stride output phases. With output channels in whole register
    tiles it is one kernel writing the upsampled output directly (output (y, x) reads phase
    column (y % s, x % s)); otherwise a packed conv, then depth-to-space (and a crop)."""
    kh, kw, cin, cout = graph.constants[op.consts["weight"]].shape
    s, p, extra = op.attrs["stride"], op.attrs["padding"], op.attrs["output_padding"]
    try:
        # The packing applied to tap numbers 1..kh*kw (0: no tap) says where each tap goes.
        taps, pad = subpixel_conv_weights(np.arange(1, kh * kw + 1, dtype=np.int32).reshape(kh, kw, 1, 1), s, p)
    except ValueError as exc:
        raise CompileError(f"TVM export takes transposed convolutions of centred sub-pixel form only ({exc})") from None
    span = taps.shape[0]
    n, h, w, _ = (int(d) for d in x.ty.shape)
    ho, wo = (conv_transpose_output_size(d, kh, s, p, extra) for d in (h, w))
    if ho > h * s or wo > w * s:
        raise CompileError(f"output {ho}x{wo} exceeds the {h * s}x{w * s} sub-pixel grid")
    table = _op.concat([_op.zeros((1, cin, cout), "int8"), _op.reshape(weight, (kh * kw, cin, cout))], axis=0)
    packed = _op.take(table, relax.const(taps.reshape(-1)), axis=0, mode="clip")
    packed = _op.reshape(_op.permute_dims(_op.reshape(packed, (span, span, s, s, cin, cout)), (0, 1, 4, 2, 3, 5)),
                         (span, span, cin, s * s * cout))
    phase_taps = subpixel_conv_weights(graph.constants[op.consts["weight"]], s, p)[0]
    if cout % TILE_CHANNELS == 0:
        packed = builder.emit(packed)
        windows = tuple(_window(taps[:, :, 0, phase]) for phase in range(s * s))
        return _exact(builder, graph, op, x, phase_taps,
                      lambda data: builder.emit_te(_upsampling_conv, data, packed, s, pad, cout, (ho, wo), windows,
                                                   primfunc_name_hint="conv2d_transpose"))
    phases = _exact(builder, graph, op, x, phase_taps, lambda data: _float_conv(data, packed, phase_taps.shape, 1, pad))
    grid = _op.reshape(_op.permute_dims(_op.reshape(phases, (n, h, w, s, s, cout)), (0, 1, 3, 2, 4, 5)),
                       (n, h * s, w * s, cout))
    if (ho, wo) == (h * s, w * s):
        return grid
    return _op.strided_slice(grid, axes=[1, 2], begin=[0, 0], end=[ho, wo])


def _window(taps: np.ndarray) -> tuple[int, int, int, int]:
    """First row, first column, rows and columns of the nonzero taps of one phase's kernel."""
    rows, cols = np.nonzero(taps.any(axis=1))[0], np.nonzero(taps.any(axis=0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _phase_conv(padded, kernel, window, column: int, shape, name: str):
    """TE: one output phase, a stride-1 conv over its window of the packed kernel."""
    top, left, rows, cols = window
    rh, rw = te.reduce_axis((0, rows), "rh"), te.reduce_axis((0, cols), "rw")
    rc = te.reduce_axis((0, padded.shape[3]), "rc")
    return te.compute(shape, lambda b, i, j, c: te.sum(
        padded[b, i + top + rh, j + left + rw, rc] * kernel[top + rh, left + rw, rc, column + c], axis=[rh, rw, rc]),
        name=name)


def _upsampling_conv(data, packed, s: int, pad: int, cout: int, size: tuple[int, int], windows):
    """TE: float32 (N, ho, wo, cout) from int8 NHWC data and the packed sub-pixel kernel, one
    stride-1 conv per output phase over that phase's taps only (`windows`: per phase
    py * s + px, the first row and column and the extents of its taps in the packed kernel; a
    5x5 / 2 kernel has 25 taps per 2x2 outputs, the packed form 36), interleaved into the output."""
    n, h, w, cin = data.shape
    padded = te.compute((n, h + 2 * pad, w + 2 * pad, cin), lambda b, i, j, c: tirx.if_then_else(
        tirx.all(i >= pad, i < h + pad, j >= pad, j < w + pad), data[b, i - pad, j - pad, c].astype("float32"),
        tirx.const(0.0, "float32")), name="pad")
    kernel = te.compute(packed.shape, lambda *i: packed[i].astype("float32"), name="kernel")
    phases = {divmod(phase, s): _phase_conv(padded, kernel, window, phase * cout, (n, h, w, cout),
                                            f"conv2d_phase{phase}") for phase, window in enumerate(windows)}

    def pick(b, y, x, c):
        value = tirx.const(0.0, "float32")
        for (py, px), phase in phases.items():
            value = tirx.if_then_else(tirx.all(y % s == py, x % s == px), phase[b, y // s, x // s, c], value)
        return value

    return te.compute((n, *size, cout), pick, name="interleave")
