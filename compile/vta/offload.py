"""The offload plan of an integer graph: which convolutions run on VTA, lowered, and why the rest
stays on the host; plus execution of a graph with its VTA layers on a device.

A VTA layer is a conv2d / conv2d_transpose fused with the one requantize that reads its
accumulator: VTA stores at most 8 bits per plane, so a layer's output must be int8, uint8 or
int16 (two byte planes), its shifts in [0, 31], and a tiling must fit the config. Everything
else runs on the host: VTA's FPGA ALU has MIN, MAX, ADD and SHR but no multiply, no table
lookup and no data-dependent select. A transposed convolution with few output channels (the
final N->3 layer) runs as the stride-1 convolution whose output channels are its phases
(`network.phase_packed`); `run_layer` applies the depth-to-space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from compile.vta.config import VTAConfig
from compile.vta.network import phase_packable, phase_packed
from compile.vta.perf import Timing, estimate
from compile.vta.program import Program
from compile.vta.schedule import OUT_DTYPES, ConvLayer, execute, lower_conv
from jaxlic.errors import IntegerizationError, VTAScheduleError
from jaxlic.quant import reference
from jaxlic.quant.graph import IntegerGraph, Op
from jaxlic.quant.intops import conv_output_size, conv_transpose_output_size, depth_to_space, output_dtype

CONV_KINDS = ("conv2d", "conv2d_transpose")
MULTIPLY_KINDS = ("square", "mul")  # element-wise multiplies: one MAC per element in the share
HOST_REASONS = {
    "abs": "|x| needs a negation (multiply by -1); the FPGA ALU has no multiply",
    "square": "element-wise multiply; the FPGA ALU has no multiply",
    "mul": "element-wise multiply; the FPGA ALU has no multiply",
    "isqrt": "integer square root: a data-dependent select per bit, which the ALU cannot do",
    "scale_index": "table lookup (counts thresholds below x); VTA has no compare or lookup",
    "add": "32-bit add of entropy-decoded latents (cheap; VTA layers read int8 activations)",
    "add_channel": "32-bit offset of entropy-decoded latents (cheap; VTA layers read int8 activations)",
    "leaky_relu": "leaky ReLU between a convolution and its requantize is not fused into VTA layers",
    "requantize": "requantizes a host tensor (only a requantize right after a VTA convolution is fused)",
}


@dataclass(frozen=True)
class VTALayer:
    """One conv2d/conv2d_transpose + the requantize that alone reads it, lowered for a config."""

    index: int
    conv: str            # op names in the graph
    requantize: str
    input: str           # tensor names: int8 NHWC input, output = the requantize output
    output: str
    in_shape: tuple[int, int, int, int]   # NHWC, batch 1
    out_shape: tuple[int, int, int, int]
    out_dtype: str       # "int8" | "uint8" | "int16"
    macs: int            # useful MACs (transposed: H*W*Cin*Cout*K*K, no inserted zeros)
    program: Program     # weights, biases and shifts inside


@dataclass
class OffloadPlan:
    """VTA layers, host ops with the reason each stays there, and every tensor's NHWC shape."""

    config: VTAConfig
    layers: list[VTALayer]
    shapes: dict[str, tuple]
    host_ops: list[tuple[str, str]]   # (op name, reason it stays on the host)
    host_macs: dict[str, int] = field(default_factory=dict)   # host ops that multiply: op -> MACs
    op_order: tuple[str, ...] = ()    # the graph's op names in order (the table's row order)
    _timings: dict[str, Timing] = field(default_factory=dict, repr=False)

    def timings(self) -> dict[str, Timing]:
        """Cycle-model estimate of every VTA layer's program (cached)."""
        for layer in self.layers:
            if layer.conv not in self._timings:
                self._timings[layer.conv] = estimate(layer.program.insns, self.config)
        return self._timings

    def vta_mac_share(self) -> float:
        """Useful MACs on VTA over all decoder MACs (host convolutions and multiplies included)."""
        vta = sum(layer.macs for layer in self.layers)
        total = vta + sum(self.host_macs.values())
        return vta / total if total else 0.0

    def table(self) -> list[dict]:
        """One row per VTA layer and host op, in graph order: name, placement, MACs, cycles, ms,
        utilization of the GEMM peak (VTA rows), the reason (host rows)."""
        timings = self.timings()
        rows = []
        for layer in self.layers:
            timing = timings[layer.conv]
            rows.append({"name": layer.conv, "ops": [layer.conv, layer.requantize], "placement": "vta",
                         "out_dtype": layer.out_dtype, "macs": layer.macs, "cycles": timing.cycles,
                         "ms": 1e3 * timing.seconds(self.config), "util": timing.utilization(layer.macs),
                         "reason": None})
        for name, reason in self.host_ops:
            rows.append({"name": name, "ops": [name], "placement": "host", "out_dtype": None,
                         "macs": self.host_macs.get(name, 0), "cycles": None, "ms": None, "util": None,
                         "reason": reason})
        order = {name: i for i, name in enumerate(self.op_order)}
        return sorted(rows, key=lambda row: order.get(row["name"], len(order)))


def tensor_shapes(graph: IntegerGraph, input_shapes: Mapping[str, tuple[int, int, int, int]]) -> dict[str, tuple]:
    """NHWC shape of every tensor of the graph for the given input shapes."""
    shapes = {}
    for name, channels in graph.inputs.items():
        shape = tuple(int(n) for n in input_shapes.get(name, ()))
        if len(shape) != 4 or shape[-1] != channels or min(shape) < 1:
            raise IntegerizationError(f"input {name!r} needs an NHWC shape with {channels} channels, got "
                                      f"{input_shapes.get(name)}")
        shapes[name] = shape
    for op in graph.ops:
        n, h, w, c = shapes[op.inputs[0]]
        if op.kind in CONV_KINDS:
            kh, kw, _, cout = graph.constants[op.consts["weight"]].shape
            a = op.attrs
            if op.kind == "conv2d":
                size = (conv_output_size(h, kh, a["stride"], a["padding"]), conv_output_size(w, kw, a["stride"], a["padding"]))
            else:
                size = tuple(conv_transpose_output_size(s, k, a["stride"], a["padding"], a["output_padding"])
                             for s, k in ((h, kh), (w, kw)))
            if min(size) < 1:
                raise IntegerizationError(f"op {op.name!r}: an input of {h}x{w} gives an empty output")
            shapes[op.output] = (n, *size, cout)
        else:
            if any(shapes[other] != shapes[op.inputs[0]] for other in op.inputs[1:]):
                raise IntegerizationError(f"op {op.name!r}: inputs of shapes {[shapes[i] for i in op.inputs]} differ")
            shapes[op.output] = (n, h, w, c)
    return shapes


def _conv_layer(graph: IntegerGraph, conv: Op, requantize: Op) -> ConvLayer:
    weight = graph.constants[conv.consts["weight"]]
    shifts = graph.constants[requantize.consts["shift"]]
    shift = int(shifts[0]) if (shifts == shifts[0]).all() else tuple(int(n) for n in shifts)
    return ConvLayer(conv.name, weight.shape[2], weight.shape[3], weight.shape[0], conv.attrs["stride"],
                     conv.attrs["padding"], conv.kind == "conv2d_transpose", conv.attrs.get("output_padding", 0),
                     shift, (requantize.attrs["lo"], requantize.attrs["hi"]))


def _fusable(graph: IntegerGraph, conv: Op, consumers: list[Op]) -> tuple[Op | None, str | None]:
    """(the requantize to fuse, None) or (None, why the conv stays on the host)."""
    if conv.output in graph.outputs or len(consumers) != 1 or consumers[0].kind != "requantize":
        kinds = ", ".join(sorted({c.kind for c in consumers})) or "the graph output"
        return None, (f"its 32-bit accumulator feeds {kinds}; a VTA layer ends in one requantize "
                      "(STORE writes at most 8 bits per plane)")
    requantize = consumers[0]
    lo, hi = requantize.attrs["lo"], requantize.attrs["hi"]
    if output_dtype(lo, hi).name not in OUT_DTYPES:
        return None, f"its requantize clamps to [{lo}, {hi}] (32-bit); VTA stores int8, uint8 or int16 outputs"
    shifts = graph.constants[requantize.consts["shift"]]
    if shifts.min() < 0 or shifts.max() > 31:
        return None, f"its requantize shifts by {shifts.min()}..{shifts.max()}; VTA layers shift right by 0..31"
    weight = graph.constants[conv.consts["weight"]]
    if weight.shape[0] != weight.shape[1]:
        return None, f"non-square {weight.shape[0]}x{weight.shape[1]} kernel"
    return requantize, None


def plan_offload(graph: IntegerGraph, input_shapes: Mapping[str, tuple[int, int, int, int]], config: VTAConfig,
                 progress: bool = False) -> OffloadPlan:
    """Place every op of the graph, lowering each VTA layer for `config` (batch-1 inputs)."""
    shapes = tensor_shapes(graph, input_shapes)
    if any(shape[0] != 1 for shape in shapes.values()):
        raise VTAScheduleError("VTA layers are lowered for batch 1; give input shapes with N = 1")
    consumers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for name in op.inputs:
            consumers.setdefault(name, []).append(op)
    layers, host_ops, host_macs, fused = [], [], {}, set()
    for op in tqdm(graph.ops, desc="plan VTA offload", disable=not progress, leave=False):
        if op.name in fused:
            continue
        if op.kind not in CONV_KINDS:
            host_ops.append((op.name, HOST_REASONS[op.kind]))
            if op.kind in MULTIPLY_KINDS:
                host_macs[op.name] = int(np.prod(shapes[op.output]))
            continue
        requantize, reason = _fusable(graph, op, consumers.get(op.output, []))
        layer = _conv_layer(graph, op, requantize) if requantize else None
        if layer is not None:
            try:
                layers.append(_lower(graph, op, requantize, layer, shapes, config, len(layers)))
                fused.add(requantize.name)
                continue
            except VTAScheduleError as exc:
                reason = f"no VTA program: {exc}"
        weight = graph.constants[op.consts["weight"]]
        host_macs[op.name] = int(np.prod(shapes[op.inputs[0] if op.kind == "conv2d_transpose" else op.output][1:3])
                                 * np.prod(weight.shape))
        host_ops.append((op.name, reason))
    return OffloadPlan(config, layers, shapes, host_ops, host_macs, tuple(op.name for op in graph.ops))


def _lower(graph: IntegerGraph, conv: Op, requantize: Op, layer: ConvLayer, shapes: dict, config: VTAConfig,
           index: int) -> VTALayer:
    in_shape, out_shape = shapes[conv.inputs[0]], shapes[requantize.output]
    weights = graph.constants[conv.consts["weight"]]
    bias = graph.constants[conv.consts["bias"]]
    lowered_layer, meta = layer, {}
    if (phase_packable(layer, config)
            and out_shape[1:3] == (layer.stride * in_shape[1], layer.stride * in_shape[2])):
        lowered_layer, weights, bias = phase_packed(layer, weights, bias)
        meta = {"depth_to_space": layer.stride}
    program = lower_conv(lowered_layer, in_shape[1], in_shape[2], config, weights, bias).program
    program.meta.update(meta | {"graph_ops": [conv.name, requantize.name]})
    return VTALayer(index, conv.name, requantize.name, conv.inputs[0], requantize.output, tuple(in_shape),
                    tuple(out_shape), layer.out_dtype.name, layer.macs(in_shape[1], in_shape[2]), program)


def run_layer(layer: VTALayer, x: np.ndarray, device=None) -> np.ndarray:
    """Run a VTA layer on `device` (default: a fresh simulator that refuses MUL): NHWC int8 in,
    NHWC `layer.out_dtype` out (16-bit planes recombined, phase-packed outputs depth-to-spaced)."""
    if tuple(x.shape) != layer.in_shape:
        raise VTAScheduleError(f"VTA layer {layer.conv} takes {layer.in_shape}, got {tuple(x.shape)}")
    out = execute(layer.program, np.asarray(x), device)
    stride = layer.program.meta.get("depth_to_space", 1)
    return depth_to_space(out, stride) if stride > 1 else out


def run_graph(graph: IntegerGraph, layers: Sequence[VTALayer], inputs: Mapping[str, np.ndarray],
              outputs: Sequence[str] | None = None,
              vta_layer: Callable[[int, np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Compute `outputs` (default: the graph's) with each VTA layer run by `vta_layer(index, x)`
    (default: `run_layer` on a fresh simulator) and every other op by the NumPy reference."""
    run_vta = vta_layer or (lambda index, x: run_layer(layers[index], x))
    values = dict(inputs)
    graph.check_inputs(values)
    wanted = tuple(outputs) if outputs is not None else graph.outputs
    by_conv = {layer.conv: layer for layer in layers}
    fused = {layer.requantize for layer in layers}
    for op in graph.ops_for(wanted, values):
        if op.name in fused:
            continue
        if op.name in by_conv:
            layer = by_conv[op.name]
            values[layer.output] = run_vta(layer.index, values[layer.input])
        else:
            values.update(reference.run(graph, {n: values[n] for n in op.inputs}, [op.output]))
    return {name: values[name] for name in wanted}
