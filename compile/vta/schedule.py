"""Lowering of int8 convolutions (direct and transposed) to tiled, double-buffered VTA programs.

Every layer becomes the same loop: for each group of output-channel blocks (weights, biases and
per-channel shift rows loaded once), for each spatial tile (input and accumulator tiles
double-buffered in two SRAM halves): LOAD INP (zero padding from the LOAD pad fields) -> GEMM
reset -> GEMM -> ALU (bias + rounding, SHR passes of at most 15, MIN, MAX; for 16-bit outputs a
copy shifted right by 8 into a second region) -> STORE (one or two byte planes). A transposed convolution runs in sub-pixel form: each
micro-op writes the accumulator row of its output phase, so the accumulator tile is already in
output order and no zero is ever multiplied. Tiles and channel groups are all the same size (the
last one is shifted back to overlap its neighbour) so one micro-op kernel per half serves all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compile.vta.config import VTAConfig
from compile.vta.isa import (SHR_MAX, AluInsn, AluOp, FinishInsn, GemmInsn, Instruction, InstructionLayout, MemInsn,
                             MemType, Opcode, encode_uops, replace)
from compile.vta.packing import blocks, pack_activation, pack_bias, pack_weights, unpack_activation
from compile.vta.perf import GEMM_STARTUP, alu_cycles, dma_cycles
from compile.vta.program import Buffer, DramAllocator, Program, Segment, as_bytes
from compile.vta.simulator import Simulator
from jaxlic.errors import VTAScheduleError
from jaxlic.quant.intops import (conv2d, conv2d_transpose, conv_output_size, conv_transpose_output_size,
                                 output_dtype, requantize, subpixel_taps)

# The Chisel VTA hard-codes 2048 micro-op entries: staying below runs on every design.
DEFAULT_UOP_LIMIT = 2048
MAX_PAD = 15
MAX_LOOP = (1 << 14) - 1
MAX_SHIFT = 31
OUT_DTYPES = ("int8", "uint8", "int16")  # STORE writes 8 bits: int16 outputs take two byte planes


@dataclass(frozen=True)
class ConvLayer:
    """An int8 convolution with fused bias and power-of-two requantization.

    `shift` is one right shift for every output channel or a tuple of one per channel, in
    [0, 31]; `clamp` selects the output type: int8, uint8 or int16 (two byte planes).
    """

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    transposed: bool = False
    output_padding: int = 0
    shift: int | tuple[int, ...] = 0
    clamp: tuple[int, int] = (-128, 127)

    def __post_init__(self) -> None:
        if not isinstance(self.shift, int):  # lists from JSON metadata, NumPy arrays
            object.__setattr__(self, "shift", tuple(int(n) for n in self.shift))
        object.__setattr__(self, "clamp", tuple(int(v) for v in self.clamp))

    def channel_shifts(self) -> np.ndarray:
        """The right shift of every output channel (int64)."""
        return np.broadcast_to(np.asarray(self.shift, np.int64), (self.out_channels,))

    @property
    def out_dtype(self) -> np.dtype:
        """The smallest integer type that holds the clamp range."""
        return output_dtype(*self.clamp)

    @property
    def planes(self) -> int:
        """Byte planes the layer stores (2 for int16 outputs)."""
        return self.out_dtype.itemsize

    def shr_passes(self) -> list[int | np.ndarray]:
        """The SHR passes whose sum is each channel's shift, each at most 15 (the FPGA reads a shift
        as signed 5 bits): an int where every channel shifts alike (an immediate), else an array."""
        remaining, passes = self.channel_shifts().copy(), []
        while remaining.max(initial=0) > 0:
            amounts = np.minimum(remaining, SHR_MAX)
            passes.append(int(amounts[0]) if (amounts == amounts[0]).all() else amounts)
            remaining -= amounts
        return passes

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output (height, width) for an input of (height, width)."""
        if self.transposed:
            return tuple(conv_transpose_output_size(n, self.kernel, self.stride, self.padding, self.output_padding)
                         for n in (height, width))
        return tuple(conv_output_size(n, self.kernel, self.stride, self.padding) for n in (height, width))

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates the layer really needs (no padding, no zero insertion)."""
        pixels = height * width if self.transposed else math.prod(self.output_size(height, width))
        return pixels * self.in_channels * self.out_channels * self.kernel ** 2

    def reference(self, x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """The NumPy integer reference (NHWC in, NHWC int8 out)."""
        if self.transposed:
            acc = conv2d_transpose(x, weights, bias, self.stride, self.padding, self.output_padding)
        else:
            acc = conv2d(x, weights, bias, self.stride, self.padding)
        return requantize(acc, np.asarray(self.shift), *self.clamp)


def _check_layer(layer: ConvLayer) -> None:
    shifts = np.asarray(layer.shift)
    if shifts.ndim > 1 or (shifts.ndim == 1 and shifts.shape != (layer.out_channels,)):
        raise VTAScheduleError(f"{layer.name}: shift must be an int or one int per output channel "
                               f"({layer.out_channels}), got shape {shifts.shape}")
    if shifts.min() < 0 or shifts.max() > MAX_SHIFT:
        raise VTAScheduleError(f"{layer.name}: shifts must be in [0, {MAX_SHIFT}], got {shifts.min()}..{shifts.max()}")
    lo, hi = layer.clamp
    if not lo <= hi or lo < -(1 << 31) or hi >= 1 << 31 or output_dtype(lo, hi).name not in OUT_DTYPES:
        raise VTAScheduleError(f"{layer.name}: clamp [{lo}, {hi}] needs a 32-bit output; VTA stores int8, uint8 "
                               "or int16 (two byte planes)")


@dataclass(frozen=True)
class _Axis:
    """One spatial axis in macro-pixel form: output = phases * macro + phase, input = step * macro + offset."""

    size: int
    out_size: int
    macro: int
    phases: int
    step: int
    taps: tuple[tuple[int, int, int], ...]  # (phase, input offset, kernel index)

    @property
    def lo(self) -> int:
        return min(t[1] for t in self.taps)

    @property
    def span(self) -> int:
        return max(t[1] for t in self.taps) - self.lo + 1

    def window(self, tile):
        """Input extent of a tile of `tile` macro pixels (int or array)."""
        return (tile - 1) * self.step + self.span

    def starts(self, tile: int) -> list[int]:
        """Tile starts; the last tile is shifted back so all tiles have the same size."""
        return [min(i * tile, self.macro - tile) for i in range(-(-self.macro // tile))]

    def load_extent(self, start: int, tile: int) -> tuple[int, int, int, int]:
        """(first input index, count, pad before, pad after) of the input window of a tile."""
        first = start * self.step + self.lo
        last = first + self.window(tile) - 1
        before, after = max(0, -first), max(0, last - (self.size - 1))
        return first + before, self.window(tile) - before - after, before, after


def _axis(layer: ConvLayer, size: int, out_size: int) -> _Axis:
    if out_size < 1:
        raise VTAScheduleError(f"{layer.name}: an input of {size} gives an empty output")
    if layer.transposed:
        if out_size % layer.stride:
            raise VTAScheduleError(f"{layer.name}: transposed output size {out_size} is not a multiple of the stride "
                                   f"{layer.stride}; choose output_padding so that it is")
        taps = tuple((t.phase, t.offset, t.kernel_index) for t in subpixel_taps(layer.kernel, layer.stride, layer.padding))
        axis = _Axis(size, out_size, out_size // layer.stride, layer.stride, 1, taps)
    else:
        taps = tuple((0, k - layer.padding, k) for k in range(layer.kernel))
        axis = _Axis(size, out_size, out_size, 1, layer.stride, taps)
    _, count, before, _ = axis.load_extent(0, 1)
    _, _, _, after = axis.load_extent(axis.macro - 1, 1)
    if max(before, after) > MAX_PAD:
        raise VTAScheduleError(f"{layer.name}: needs {max(before, after)} rows of zero padding, LOAD pads at most {MAX_PAD}")
    if count < 1:
        raise VTAScheduleError(f"{layer.name}: input of {size} is smaller than the padding; nothing to load")
    return axis


@dataclass(frozen=True)
class Tiling:
    """Macro-pixel rows and columns per tile and output-channel blocks per weight group."""

    rows: int
    cols: int
    out_blocks: int


def _uops_per_half(out_blocks, in_blocks: int, taps: int, row_passes: int, planes: int):
    """[imm base] [bias add + one per per-channel SHR pass, per out block] [high plane base + copy]
    [GEMM kernel] (`out_blocks` may be an array)."""
    return 1 + out_blocks * (1 + row_passes) + 2 * (planes - 1) + out_blocks * in_blocks * taps


def _param_rows(out_blocks, row_passes: int):
    """ACC rows kept for the whole layer: the bias and the per-channel shift rows of a group."""
    return out_blocks * (1 + row_passes)


def _alu_cycles_per_tile(region_rows, passes: list, planes: int):
    """Cycle-model cost of a tile's ALU work (`region_rows` = out blocks x tile pixels)."""
    cycles = alu_cycles(region_rows, False) + 2 * alu_cycles(region_rows, True)   # bias add, MIN, MAX
    cycles = cycles + sum(alu_cycles(region_rows, isinstance(p, int)) for p in passes)
    if planes == 2:  # copy into the high region, SHR 8
        cycles = cycles + alu_cycles(region_rows, False) + alu_cycles(region_rows, True)
    return cycles


def choose_tiling(layer: ConvLayer, height: int, width: int, config: VTAConfig,
                  uop_limit: int = DEFAULT_UOP_LIMIT) -> Tiling:
    """The fitting tiling with the lowest estimated cycles; VTAScheduleError when none fits."""
    _check_layer(layer)
    out_h, out_w = layer.output_size(height, width)
    ay, ax = _axis(layer, height, out_h), _axis(layer, width, out_w)
    ib, ob = blocks(layer.in_channels, config.block), blocks(layer.out_channels, config.block)
    taps, phases2 = len(ay.taps) * len(ax.taps), ay.phases * ax.phases
    th, tw, oc = np.meshgrid(np.arange(1, ay.macro + 1), np.arange(1, ax.macro + 1), np.arange(1, ob + 1),
                             indexing="ij")
    passes = layer.shr_passes()
    row_passes, planes = sum(not isinstance(p, int) for p in passes), layer.planes
    ih, iw = ay.window(th), ax.window(tw)
    plane = phases2 * th * tw
    acc_half = (config.acc_depth - _param_rows(oc, row_passes)) // 2
    uops = 2 * _uops_per_half(oc, ib, taps, row_passes, planes)
    fits = ((ib * ih * iw <= config.inp_depth // 2) & (planes * oc * plane <= acc_half)
            & (oc * ib * layer.kernel ** 2 <= config.wgt_depth) & (uops <= min(uop_limit, config.uop_depth))
            & (phases2 * tw < 1 << config.acc_index_bits) & (ay.step * iw < 1 << config.inp_index_bits)
            & (th <= MAX_LOOP) & (tw <= MAX_LOOP) & (planes * oc * plane <= MAX_LOOP))
    if not fits.any():
        raise VTAScheduleError(
            f"{layer.name}: no tiling fits {config.name}: one output block needs {ib * layer.kernel ** 2} of "
            f"{config.wgt_depth} WGT rows, one output pixel {ib * ay.span * ax.span} of {config.inp_depth // 2} "
            f"INP rows per buffer and {2 * _uops_per_half(1, ib, taps, row_passes, planes)} of "
            f"{min(uop_limit, config.uop_depth)} micro-ops; split the layer's input channels or use a config with "
            "larger buffers")
    th, tw, oc, ih, iw, plane, uops = (a[fits] for a in (th, tw, oc, ih, iw, plane, uops))
    elem = config.inp_elem_bytes
    tiles = -(-ay.macro // th) * -(-ax.macro // tw)
    groups = -(-ob // oc)
    load = ib * dma_cycles(config, ih, iw * elem)
    compute = (planes * oc * plane + GEMM_STARTUP + th * tw * oc * ib * taps
               + _alu_cycles_per_tile(oc * plane, passes, planes))
    store = planes * oc * dma_cycles(config, ay.phases * th, ax.phases * tw * elem)
    weights = dma_cycles(config, 1, oc * ib * layer.kernel ** 2 * config.wgt_elem_bytes)
    cost = groups * (weights + tiles * np.maximum(np.maximum(load, compute), store))
    best = np.lexsort((uops, cost))[0]
    return Tiling(int(th[best]), int(tw[best]), int(oc[best]))


@dataclass
class LoweredLayer:
    """A layer's VTA program with the shapes and buffers the host needs."""

    layer: ConvLayer
    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    tiling: Tiling
    program: Program

    @property
    def useful_macs(self) -> int:
        return self.layer.macs(*self.in_shape)


class _Tokens:
    """Emits pops so that a module has consumed at least `n` tokens of one FIFO."""

    def __init__(self, flag: str, noop: MemInsn, stream: list[Instruction]) -> None:
        self.flag, self.noop, self.stream, self.popped = flag, noop, stream, 0

    def need(self, n: int) -> bool:
        """Emit no-op pops until one pop is left; True when the next real instruction must pop."""
        while n - self.popped > 1:
            self.stream.append(replace(self.noop, **{self.flag: True}))
            self.popped += 1
        if n - self.popped == 1:
            self.popped += 1
            return True
        return False


def _mem(opcode: Opcode, memory_type: MemType, sram: int, dram: int, y: int, x: int, stride: int,
         pads: tuple[int, int, int, int] = (0, 0, 0, 0), **flags) -> MemInsn:
    return MemInsn(opcode=opcode, memory_type=memory_type, sram_base=sram, dram_base=dram, y_size=y, x_size=x,
                   x_stride=stride, y_pad_0=pads[0], y_pad_1=pads[1], x_pad_0=pads[2], x_pad_1=pads[3], **flags)


def lower_conv(layer: ConvLayer, height: int, width: int, config: VTAConfig, weights: np.ndarray | None = None,
               bias: np.ndarray | None = None, allocator: DramAllocator | None = None,
               input_addr: int | None = None, uop_limit: int = DEFAULT_UOP_LIMIT,
               tiling: Tiling | None = None) -> LoweredLayer:
    """Lower one layer (HWIO int8 weights, int32 bias; zeros when omitted) to a VTA program.

    The program's buffers: "input" (packed int8), "output" (packed low bytes: the int8/uint8
    result, or the low byte of an int16 one) and, for int16 outputs, "output_hi" (high bytes)."""
    _check_layer(layer)
    out_h, out_w = layer.output_size(height, width)
    ay, ax = _axis(layer, height, out_h), _axis(layer, width, out_w)
    tiling = tiling or choose_tiling(layer, height, width, config, uop_limit)
    block, k = config.block, layer.kernel
    ib, ob = blocks(layer.in_channels, block), blocks(layer.out_channels, block)
    th, tw, oc = tiling.rows, tiling.cols, min(tiling.out_blocks, ob)
    ih, iw = ay.window(th), ax.window(tw)
    plane = ay.phases * ax.phases * th * tw
    region = oc * plane  # accumulator rows of one byte plane of a tile
    passes, planes = layer.shr_passes(), layer.planes
    row_passes = [p for p in passes if not isinstance(p, int)]
    inp_half = config.inp_depth // 2
    acc_half = (config.acc_depth - _param_rows(oc, len(row_passes))) // 2
    param_row = 2 * acc_half  # bias rows, then one row per out block of each per-channel SHR pass
    taps = [(py, px, dy - ay.lo, dx - ax.lo, ky, kx) for py, dy, ky in ay.taps for px, dx, kx in ax.taps]

    # Micro-ops, per half: see _uops_per_half.
    per_half = _uops_per_half(oc, ib, len(taps), len(row_passes), planes)
    if 2 * per_half > min(uop_limit, config.uop_depth) or ib * ih * iw > inp_half or planes * region > acc_half:
        raise VTAScheduleError(f"{layer.name}: tiling {tiling} does not fit {config.name}")
    uop_rows = []
    for half in (0, 1):
        acc0, inp0 = half * acc_half, half * inp_half
        uop_rows.append((acc0, 0, 0))
        uop_rows += [(acc0 + o * plane, param_row + r * oc + o, 0) for r in range(1 + len(row_passes))
                     for o in range(oc)]
        if planes == 2:
            uop_rows += [(acc0 + region, 0, 0), (acc0 + region, acc0, 0)]
        uop_rows += [(acc0 + o * plane + py * ax.phases * tw + px, inp0 + i * ih * iw + dy * iw + dx,
                      ((o * ib + i) * k + ky) * k + kx)
                     for i in range(ib) for py, px, dy, dx, ky, kx in taps for o in range(oc)]
    layout = InstructionLayout(config)
    uops = encode_uops(*np.array(uop_rows).T, layout)
    kernel_uop = 1 + oc * (1 + len(row_passes)) + 2 * (planes - 1)

    # DRAM: static segments and activation buffers.
    allocator = allocator or DramAllocator(config)
    in_bytes = ib * height * width * config.inp_elem_bytes
    input_addr = allocator.alloc(in_bytes) if input_addr is None else input_addr
    out_bytes = ob * out_h * out_w * config.out_elem_bytes
    outputs = ["output", "output_hi"][:planes]
    output_addrs = [allocator.alloc(out_bytes) for _ in outputs]
    w = np.zeros((k, k, layer.in_channels, layer.out_channels), np.int8) if weights is None else weights
    if w.shape != (k, k, layer.in_channels, layer.out_channels) or w.dtype != np.int8:
        raise VTAScheduleError(f"{layer.name}: weights must be int8 HWIO {(k, k, layer.in_channels, layer.out_channels)}")
    b = np.zeros(layer.out_channels, np.int32) if bias is None else bias
    if b.shape != (layer.out_channels,) or b.dtype != np.int32:
        raise VTAScheduleError(f"{layer.name}: bias must be int32 of shape ({layer.out_channels},)")
    shifts = layer.channel_shifts()
    rounding = np.where(shifts > 0, np.left_shift(1, np.maximum(shifts - 1, 0)), 0)
    # (acc + bias) + 2^(n-1) == acc + (bias + 2^(n-1)) modulo 2^32: one ALU pass less, bit-exact.
    # The "bias" segment: (1 + per-channel SHR passes, out blocks, BLOCK) int32, the bias first.
    rows = [b.astype(np.int64) + rounding] + row_passes
    params = np.stack([pack_bias(r.astype(np.int64).astype(np.int32), block) for r in rows])
    segments = []
    addresses = {}
    for name, data in (("uops", as_bytes(uops)), ("weights", as_bytes(pack_weights(w, block))),
                       ("bias", as_bytes(params))):
        addresses[name] = allocator.alloc(len(data))
        segments.append(Segment(f"{layer.name}.{name}", addresses[name], data))
    inp_elem0 = input_addr // config.inp_elem_bytes
    out_elem0 = [addr // config.out_elem_bytes for addr in output_addrs]
    wgt_elem0 = addresses["weights"] // config.wgt_elem_bytes
    bias_elem0 = addresses["bias"] // config.acc_elem_bytes

    stream: list[Instruction] = []
    ld_noop = _mem(Opcode.LOAD, MemType.INP, 0, 0, 0, 0, 0)
    cmp_noop = _mem(Opcode.LOAD, MemType.ACC, 0, 0, 0, 0, 0)
    from_compute = _Tokens("pop_next", ld_noop, stream)   # CMP->LD, popped by the load module
    from_store = _Tokens("pop_next", cmp_noop, stream)    # ST->CMP, popped by the compute module
    stream.append(_mem(Opcode.LOAD, MemType.UOP, 0, addresses["uops"] // 4, 1, len(uop_rows), len(uop_rows)))
    group_starts = [min(g * oc, ob - oc) for g in range(-(-ob // oc))]
    tiles = [(r, c) for r in ay.starts(th) for c in ax.starts(tw)]
    t = 0
    for g0 in group_starts:
        for index, (r0, c0) in enumerate(tiles):
            half = t % 2
            acc0, inp0, u0 = half * acc_half, half * inp_half, half * per_half
            # Load module: weights wait for every earlier tile's GEMM, inputs for the tile two back.
            if index == 0:
                pop = from_compute.need(t)
                stream.append(_mem(Opcode.LOAD, MemType.WGT, 0, wgt_elem0 + g0 * ib * k * k, 1, oc * ib * k * k,
                                   oc * ib * k * k, pop_next=pop))
            pop = from_compute.need(t - 1)
            y0, ny, py0, py1 = ay.load_extent(r0, th)
            x0, nx, px0, px1 = ax.load_extent(c0, tw)
            for i in range(ib):
                stream.append(_mem(Opcode.LOAD, MemType.INP, inp0 + i * ih * iw,
                                   inp_elem0 + (i * height + y0) * width + x0, ny, nx, width, (py0, py1, px0, px1),
                                   pop_next=pop and i == 0, push_next=i == ib - 1))
            # Compute module.
            if index == 0:
                stream.append(_mem(Opcode.LOAD, MemType.ACC, param_row, bias_elem0 + g0, 1 + len(row_passes), oc,
                                   ob))
            pop = from_store.need(t - 1)
            stream.append(GemmInsn(reset=True, uop_bgn=u0, uop_end=u0 + 1, iter_out=planes * region, iter_in=1,
                                   dst_factor_out=1, pop_next=pop))
            stream.append(GemmInsn(uop_bgn=u0 + kernel_uop, uop_end=u0 + per_half, iter_out=th, iter_in=tw,
                                   dst_factor_out=ay.phases * ax.phases * tw, dst_factor_in=ax.phases,
                                   src_factor_out=ay.step * iw, src_factor_in=ax.step, pop_prev=True, push_prev=True))
            stream += _requantize_alu(u0, oc, plane, passes, layer.clamp, planes)
            # Store module: one STORE per output block and byte plane of the tile.
            stores = [_mem(Opcode.STORE, MemType.OUT, acc0 + p * region + o * plane,
                           out_elem0[p] + ((g0 + o) * out_h + r0 * ay.phases) * out_w + c0 * ax.phases,
                           ay.phases * th, ax.phases * tw, out_w) for p in range(planes) for o in range(oc)]
            stores[0] = replace(stores[0], pop_prev=True)
            stores[-1] = replace(stores[-1], push_prev=True)
            stream += stores
            t += 1
    if from_compute.need(t):
        stream.append(replace(ld_noop, pop_next=True))
    if from_store.need(t):
        stream.append(replace(cmp_noop, pop_next=True))
    stream.append(FinishInsn())
    buffers = {"input": Buffer("input", input_addr, in_bytes)}
    buffers.update({name: Buffer(name, addr, out_bytes) for name, addr in zip(outputs, output_addrs)})
    meta = {"layer": vars(layer) | {"clamp": list(layer.clamp)}, "input_hw": [height, width],
            "output_hw": [out_h, out_w], "tiling": vars(tiling)}
    program = Program(config, stream, segments, buffers, allocator.size, meta)
    return LoweredLayer(layer, (height, width), (out_h, out_w), tiling, program)


def _requantize_alu(u0: int, oc: int, plane: int, passes: list, clamp: tuple[int, int], planes: int) -> list[AluInsn]:
    """A tile's ALU stream: bias add, the SHR passes, MIN, MAX, then (int16) copy and SHR 8 of the
    high plane; the last one pushes the tile to the store module."""
    region = oc * plane

    def alu(uop: int, op: AluOp, iterations: int, imm: int | None = None, src_factor: int = 0, uops: int = 1):
        return AluInsn(uop_bgn=u0 + uop, uop_end=u0 + uop + uops, iter_out=iterations, iter_in=1, dst_factor_out=1,
                       src_factor_out=src_factor, alu_opcode=op, use_imm=imm is not None, imm=imm or 0)

    stream = [alu(1, AluOp.ADD, plane, uops=oc)]
    row = 1
    for amount in passes:
        if isinstance(amount, int):
            stream.append(alu(0, AluOp.SHR, region, amount))
        else:
            row += 1
            stream.append(alu(1 + (row - 1) * oc, AluOp.SHR, plane, uops=oc))
    stream += [alu(0, AluOp.MIN, region, clamp[1]), alu(0, AluOp.MAX, region, clamp[0])]
    if planes == 2:
        copy = 1 + row * oc
        stream += [alu(copy + 1, AluOp.ADD, region, src_factor=1), alu(copy, AluOp.SHR, region, 8)]
    stream[-1] = replace(stream[-1], push_next=True)
    return stream


def execute(program: Program, x: np.ndarray, device=None) -> np.ndarray:
    """Run a lowered layer's program on `device` (default: a fresh simulator that refuses MUL).

    `device` has write(addr, bytes), read(addr, nbytes), load_program(program) and run(insns)
    (the simulator and the board drivers). NHWC int8 in; NHWC out in the layer's output type, an
    int16 result rebuilt from its two byte planes."""
    layer = ConvLayer(**program.meta["layer"])
    config = program.config
    (height, width), (out_h, out_w) = program.meta["input_hw"], program.meta["output_hw"]
    if x.shape != (1, height, width, layer.in_channels) or x.dtype != np.int8:
        raise VTAScheduleError(f"{layer.name}: input must be int8 {(1, height, width, layer.in_channels)}, got "
                               f"{x.dtype} {x.shape}")
    device = device or Simulator(config, program.dram_bytes, allow_mul=False)
    device.load_program(program)
    device.write(program.buffers["input"].addr, pack_activation(x, config.block))
    device.run(program.insns)
    planes = []
    for name in ("output", "output_hi")[:layer.planes]:
        buffer = program.buffers[name]
        packed = np.frombuffer(device.read(buffer.addr, buffer.nbytes), np.uint8)
        planes.append(unpack_activation(packed.reshape(1, -1, out_h, out_w, config.block), layer.out_channels))
    if layer.planes == 1:
        return planes[0].view(layer.out_dtype)
    return (planes[1].view(np.int8).astype(np.int16) << 8) | planes[0].astype(np.int16)
