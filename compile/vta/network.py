"""Whole decoders on VTA: layer graphs of the zoo's synthesis transforms, lowering, simulation with
the host steps in between, the NumPy integer reference, and per-layer performance.

Graph of bmshj2018 g_s (CompressAI): ConvT(M->N) IGDN ConvT(N->N) IGDN ConvT(N->N) IGDN ConvT(N->3),
all ConvT k5 s2 p2 op1. IGDN in integer form: the pool is an int8 1x1 convolution over |x| on VTA
(requantized to [0, 127]); the host multiplies: y = clamp((x * pool + 2^(k-1)) >> k). The
hyperprior decoder adds h_s on z: ConvT(N->N) ReLU ConvT(N->N) ReLU Conv(N->M, k3) ReLU.
Host steps work element-wise on the packed NCHW16c layout, so activations never get repacked.
A final transposed convolution with few output channels (N->3) runs as the equivalent stride-1
convolution whose output channels are the s*s phases (12 of 16 lanes used instead of 3 of 16);
the host's depth-to-space of the output image undoes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from compile.vta.config import VTAConfig
from compile.vta.packing import blocks, pack_activation, unpack_activation
from compile.vta.perf import Timing, estimate
from compile.vta.program import DramAllocator
from compile.vta.schedule import DEFAULT_UOP_LIMIT, ConvLayer, LoweredLayer, lower_conv
from compile.vta.simulator import Counters, Simulator
from jaxlic.errors import VTAScheduleError
from jaxlic.quant.intops import depth_to_space, subpixel_conv_weights, subpixel_taps

ARCHS = ("factorized", "hyperprior")
BASE_CHANNELS = {"low": (128, 192), "high": (192, 320)}  # (N, M) of qualities 1-5 and 6-8
IGDN_SHIFT = 6


@dataclass(frozen=True)
class Step:
    """One node: a VTA convolution, or a host step ('abs' or 'igdn') on named tensors."""

    kind: str
    output: str
    inputs: tuple[str, ...]
    layer: ConvLayer | None = None


@dataclass(frozen=True)
class Network:
    """A decoder graph with its input tensors' (height, width, channels)."""

    name: str
    inputs: dict[str, tuple[int, int, int]]
    steps: tuple[Step, ...]
    output: str


def width_channels(width: float, base: tuple[int, int] = BASE_CHANNELS["low"], multiple: int = 16) -> tuple[int, int]:
    """(N, M) of a width multiplier, rounded half up to multiples of `multiple` (at least one)."""
    return tuple(max(multiple, int(np.floor(c * width / multiple + 0.5)) * multiple) for c in base)


def _shift(fan_in: float) -> int:
    """A requantization shift that keeps random int8 layers' outputs spread over int8."""
    return int(np.ceil(np.log2(np.sqrt(fan_in)))) + 7


def _convt(name: str, cin: int, cout: int, clamp=(-128, 127)) -> ConvLayer:
    return ConvLayer(name, cin, cout, 5, 2, 2, True, 1, _shift(cin * 25 / 4), clamp)


def decoder(arch: str, resolution: tuple[int, int], channels: tuple[int, int],
            hidden: tuple[int, int, int] | None = None) -> Network:
    """The decoder graph of an image of (width, height) pixels, padded as CompressAI pads it;
    `hidden`: the output channels of g_s.0, g_s.2 and g_s.4 of a channel-pruned model (default N)."""
    if arch not in ARCHS:
        raise VTAScheduleError(f"unknown model architecture {arch!r}; choose one of {ARCHS}")
    n, m = channels
    h0, h1, h2 = hidden or (n, n, n)
    width, height = resolution
    multiple = 64 if arch == "hyperprior" else 16
    lat_h, lat_w = -(-height // multiple) * multiple // 16, -(-width // multiple) * multiple // 16
    steps: list[Step] = []
    inputs = {"y": (lat_h, lat_w, m)}
    x = "y"
    for i, (cin, cout) in enumerate([(m, h0), (h0, h1), (h1, h2), (h2, 3)]):
        out = f"g_s.{2 * i}"
        steps.append(Step("conv", out, (x,), _convt(out, cin, cout)))
        x = out
        if i < 3:
            steps.append(Step("abs", f"{out}.abs", (x,)))
            pool = ConvLayer(f"igdn{i}.pool", cout, cout, 1, shift=_shift(cout) + 1, clamp=(0, 127))
            steps.append(Step("conv", f"igdn{i}.pool", (f"{out}.abs",), pool))
            steps.append(Step("igdn", f"igdn{i}", (x, f"igdn{i}.pool")))
            x = f"igdn{i}"
    if arch == "hyperprior":
        inputs["z"] = (lat_h // 4, lat_w // 4, n)
        relu = (0, 127)
        steps += [Step("conv", "h_s.0", ("z",), _convt("h_s.0", n, n, relu)),
                  Step("conv", "h_s.2", ("h_s.0",), _convt("h_s.2", n, n, relu)),
                  Step("conv", "h_s.4", ("h_s.2",), ConvLayer("h_s.4", n, m, 3, 1, 1, shift=_shift(n * 9), clamp=relu))]
    return Network(f"{arch}-{n}x{m}", inputs, tuple(steps), x)


def random_params(network: Network, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random int8 HWIO weights and int32 biases for every VTA step (deterministic)."""
    rng = np.random.default_rng(seed)
    params = {}
    for step in network.steps:
        if step.layer is not None:
            layer = step.layer
            w = rng.integers(-128, 128, (layer.kernel, layer.kernel, layer.in_channels, layer.out_channels), dtype=np.int8)
            b = rng.integers(-(1 << (layer.shift + 2)), 1 << (layer.shift + 2), layer.out_channels).astype(np.int32)
            params[step.output] = (w, b)
    return params


def host_abs(x: np.ndarray) -> np.ndarray:
    """|x| saturated to int8 (|-128| = 127)."""
    return np.minimum(np.abs(x.astype(np.int16)), 127).astype(np.int8)


def host_igdn(x: np.ndarray, pool: np.ndarray, shift: int = IGDN_SHIFT) -> np.ndarray:
    """Integer IGDN on the host: clamp((x * pool + 2^(k-1)) >> k, -128, 127)."""
    product = x.astype(np.int32) * pool.astype(np.int32) + (1 << (shift - 1))
    return np.clip(product >> shift, -128, 127).astype(np.int8)


def _shapes(network: Network) -> dict[str, tuple[int, int, int]]:
    shapes = dict(network.inputs)
    for step in network.steps:
        h, w, c = shapes[step.inputs[0]]
        shapes[step.output] = (*step.layer.output_size(h, w), step.layer.out_channels) if step.layer else (h, w, c)
    return shapes


def reference(network: Network, params: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the graph computed by the NumPy integer reference (NHWC, batch 1)."""
    values = dict(inputs)
    for step in network.steps:
        args = [values[name] for name in step.inputs]
        if step.kind == "conv":
            values[step.output] = step.layer.reference(args[0], *params[step.output])
        elif step.kind == "abs":
            values[step.output] = host_abs(args[0])
        else:
            values[step.output] = host_igdn(*args)
    return values


@dataclass
class LoweredNetwork:
    """Every VTA step lowered into one DRAM image, with the DRAM address of every tensor."""

    network: Network
    config: VTAConfig
    layers: dict[str, LoweredLayer]
    addresses: dict[str, int]
    shapes: dict[str, tuple[int, int, int]]
    dram_bytes: int
    space_packed: dict[str, int]
    timings: dict[str, Timing] = field(default_factory=dict)

    def estimate(self) -> dict[str, Timing]:
        """Cycle estimates per VTA layer (cached)."""
        if not self.timings:
            self.timings = {name: estimate(low.program.insns, self.config) for name, low in self.layers.items()}
        return self.timings

    def fps(self) -> float:
        """Decodes per second when the VTA layers run back to back (host steps not counted)."""
        return self.config.clock_hz / sum(t.cycles for t in self.estimate().values())


def lower_network(network: Network, config: VTAConfig, params: dict | None = None,
                  uop_limit: int = DEFAULT_UOP_LIMIT, progress: bool = False) -> LoweredNetwork:
    """Lower every convolution of the graph (zero weights when `params` is None)."""
    allocator = DramAllocator(config)
    shapes = _shapes(network)
    addresses = {}

    def packed_bytes(name: str) -> int:
        h, w, c = shapes[name]
        return blocks(c, config.block) * h * w * config.inp_elem_bytes

    for name in network.inputs:
        addresses[name] = allocator.alloc(packed_bytes(name))
    layers, space_packed = {}, {}
    for step in tqdm(network.steps, desc=f"lower {network.name}", disable=not progress, leave=False):
        if step.layer is None:
            addresses[step.output] = allocator.alloc(packed_bytes(step.output))
            continue
        h, w, _ = shapes[step.inputs[0]]
        layer = step.layer
        weights, bias = params[step.output] if params else (None, None)
        if step.output == network.output and phase_packable(layer, config):
            layer, weights, bias = phase_packed(layer, weights, bias)
            space_packed[step.output] = step.layer.stride
        lowered = lower_conv(layer, h, w, config, weights, bias, allocator, addresses[step.inputs[0]], uop_limit)
        layers[step.output] = lowered
        addresses[step.output] = lowered.program.buffers["output"].addr
    return LoweredNetwork(network, config, layers, addresses, shapes, allocator.size, space_packed)


def phase_packable(layer: ConvLayer, config: VTAConfig) -> bool:
    taps = subpixel_taps(layer.kernel, layer.stride, layer.padding)
    offsets = [t.offset for t in taps]
    return (layer.transposed and layer.stride ** 2 * layer.out_channels <= config.block
            and min(offsets) == -max(offsets))


def phase_packed(layer: ConvLayer, weights, bias) -> tuple[ConvLayer, np.ndarray | None, np.ndarray | None]:
    """The stride-1 convolution whose output channels are the phases of a transposed one."""
    phases = layer.stride ** 2
    span = 2 * max(t.offset for t in subpixel_taps(layer.kernel, layer.stride, layer.padding)) + 1
    shift = layer.shift if isinstance(layer.shift, int) else tuple(layer.shift) * phases
    packed = ConvLayer(layer.name, layer.in_channels, phases * layer.out_channels, span, 1, span // 2,
                       shift=shift, clamp=layer.clamp)
    if weights is None:
        return packed, None, None
    return packed, subpixel_conv_weights(weights, layer.stride, layer.padding)[0], np.tile(bias, phases)


def simulate(lowered: LoweredNetwork, inputs: dict[str, np.ndarray], allow_mul: bool = False,
             progress: bool = False) -> tuple[dict[str, np.ndarray], Counters]:
    """Run the graph: VTA steps on the simulator, host steps in NumPy on the packed tensors."""
    config, network = lowered.config, lowered.network
    sim = Simulator(config, lowered.dram_bytes, allow_mul=allow_mul)
    for layer in lowered.layers.values():
        sim.load_program(layer.program)
    for name, array in inputs.items():
        sim.write(lowered.addresses[name], pack_activation(array, config.block))

    def read(name: str) -> np.ndarray:
        h, w, c = lowered.shapes[name]
        if name in lowered.space_packed:
            stride = lowered.space_packed[name]
            h, w, c = h // stride, w // stride, c * stride * stride
        shape = (1, blocks(c, config.block), h, w, config.block)
        return sim.read(lowered.addresses[name], int(np.prod(shape))).view(np.int8).reshape(shape)

    total = Counters()
    for step in tqdm(network.steps, desc=f"simulate {network.name}", disable=not progress):
        if step.kind == "conv":
            total.merge(sim.run(lowered.layers[step.output].program.insns))
        elif step.kind == "abs":
            sim.write(lowered.addresses[step.output], host_abs(read(step.inputs[0])))
        else:
            sim.write(lowered.addresses[step.output], host_igdn(read(step.inputs[0]), read(step.inputs[1])))
    outputs = {}
    for name in [network.output] + (["h_s.4"] if "h_s.4" in lowered.shapes else []):
        stride = lowered.space_packed.get(name, 1)
        channels = lowered.shapes[name][2] * stride * stride
        outputs[name] = depth_to_space(unpack_activation(read(name), channels), stride)
    return outputs, total


def layer_table(lowered: LoweredNetwork) -> list[dict]:
    """Per-layer rows: shapes, MACs, cycles, milliseconds and GEMM utilization of the peak."""
    rows = []
    graph_layers = {step.output: step.layer for step in lowered.network.steps if step.layer is not None}
    for name, timing in lowered.estimate().items():
        low, layer = lowered.layers[name], graph_layers[name]
        macs = layer.macs(*low.in_shape)
        rows.append({"layer": name, "in": f"{low.in_shape[0]}x{low.in_shape[1]}x{low.layer.in_channels}",
                     "out": "x".join(map(str, (*layer.output_size(*low.in_shape), layer.out_channels))),
                     "tiling": f"{low.tiling.rows}x{low.tiling.cols}x{low.tiling.out_blocks}",
                     "gmac": macs / 1e9, "cycles": timing.cycles,
                     "ms": 1e3 * timing.seconds(lowered.config), "util": timing.utilization(macs)})
    return rows
