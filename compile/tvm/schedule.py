"""The Relax pipeline for host CPUs: TVM's CPU pipeline plus a fixed schedule for every kernel.

TVM's default CPU pipeline legalizes each op to a plain loop nest (one thread, no tiling), about
100x slower than XLA on a convolution. After fusion this pipeline schedules every kernel by rule:
a convolution is tiled as (rows in parallel) x (output-column tile) x (output-channel vector)
with the reduction loops outside the tile and its accumulators in a local buffer, and a short
element-wise epilogue (bias, requantize) computed per tile; the per-phase convolutions of an
upsampling convolution are tiled the same way, one input row at a time, and interleaved into
their output rows with the epilogue; any other kernel runs its rows in parallel, computing the
blocks it reads row by row (a reduction over a minor axis vectorized across the row). No
tuning, so builds stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
import tvm.relax.backend.cpu_generic.pipeline  # noqa: F401  (dataflow_lower_passes is not re-exported)
from tvm import relax, s_tir, tirx
from tvm.target import codegen


@dataclass(frozen=True)
class Tile:
    """A convolution's register tile: `columns` output columns (unrolled) x `vectors` output-channel
    vectors of `vector_bits`, columns x vectors accumulator registers."""

    columns: int
    vectors: int
    vector_bits: int

    def lanes(self, extent: int, dtype_bits: int) -> int:
        """Vector lanes for a loop of `extent` elements of `dtype_bits`: the widest dividing it."""
        lanes = self.vector_bits // dtype_bits
        while lanes > 1 and extent % lanes:
            lanes //= 2
        return lanes


# AVX2's 16 registers: 12 accumulators; AVX-512's 32: 16 (8 x 2 measured 2.3x faster than the
# AVX2 tile on the largest upsampling conv here, a Zen 5 with full-width AVX-512 FMA units).
AVX2, AVX512 = Tile(6, 2, 256), Tile(8, 2, 512)
TILE_CHANNELS = AVX2.vectors * AVX2.vector_bits // 32  # float32 output channels of the narrower tile
# Attaching a block to the tile costs a region analysis over the whole kernel; past this many
# epilogue blocks (the integer GDN's 80 isqrt ops) the build time explodes, so they run alone.
MAX_TILE_EPILOGUE = 16


def tile_for(target: tvm.target.Target) -> Tile:
    """The register tile for a target's CPU: AVX512 where it has AVX-512, else AVX2 (the ARM
    boards too: LLVM splits the vectors into NEON registers)."""
    return AVX512 if codegen.target_has_features(["avx512f"], target) else AVX2


def host_pipeline(target: tvm.target.Target):
    """TVM's CPU pipeline with `schedule_kernels` after fusion."""
    cpu = relax.backend.cpu_generic.pipeline

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            passes = (cpu.library_dispatch_passes(target) + cpu.legalize_passes(target)
                      + [schedule_kernels(tile_for(target))]
                      + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))
            return tvm.transform.Sequential(passes)(mod)

    return pipeline


def schedule_kernels(tile: Tile):
    """A module pass scheduling every PrimFunc with this register tile (see the module docstring)."""

    @tvm.transform.module_pass(opt_level=0)
    def schedule(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions.items():
            if isinstance(func, tirx.PrimFunc):
                sch = s_tir.Schedule(func)
                _schedule(sch, tile)
                updates[gv] = sch.mod["main"]
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return schedule


def _schedule(sch: s_tir.Schedule, tile: Tile) -> None:
    if not _has_root(sch):
        return
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    convs = [i for i, b in enumerate(blocks) if sch.get(b).name_hint.startswith("conv2d") and _is_reduction(sch, b)]
    if len(convs) == 1:
        _schedule_conv(sch, tile, blocks[convs[0]], blocks[:convs[0]], blocks[convs[0] + 1:])
    elif convs:
        _schedule_phases(sch, tile, [blocks[i] for i in convs], blocks[:convs[0]], blocks[convs[-1] + 1:])
    elif blocks:
        _schedule_rows(sch, tile, blocks[-1], blocks[:-1])


def _has_root(sch: s_tir.Schedule) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except s_tir.ScheduleError:  # a PrimFunc without a root block (already lowered): leave it alone
        return False


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def _column_tile(tile: Tile, width: int) -> int:
    """Output columns per register tile: the tile's, or the widest fewer dividing the width (a
    partial last tile puts a predicate in the unrolled tile, 2-4x slower)."""
    return next((t for t in range(tile.columns, 1, -1) if width % t == 0), tile.columns)


def _tile_conv(sch: s_tir.Schedule, tile: Tile, conv, loops):
    """Tile a convolution's loops (w, co, rh, rw, rc) into register tiles: accumulators in a
    local buffer, reductions outside the tile. Returns the loop the tile runs in."""
    w, co, rh, rw, rc = loops
    lanes = tile.lanes(int(sch.get(co).extent), _bits(sch, conv))
    local = sch.cache_write(conv, 0, "local")
    w_outer, w_inner = sch.split(w, [None, _column_tile(tile, int(sch.get(w).extent))])
    extent = int(sch.get(co).extent)
    vectors = tile.vectors if lanes > 1 and extent % (tile.vectors * lanes) == 0 else 1
    c_outer, c_vec, c_inner = sch.split(co, [None, vectors, lanes])
    sch.reorder(w_outer, c_outer, rh, rw, rc, w_inner, c_vec, c_inner)
    sch.reverse_compute_at(local, c_outer)
    sch.unroll(w_inner)
    sch.unroll(c_vec)
    if lanes > 1:
        sch.vectorize(c_inner)
    sch.decompose_reduction(conv, rh)
    return c_outer


def _schedule_conv(sch: s_tir.Schedule, tile: Tile, conv, before, after) -> None:
    """Tile the convolution; its epilogue (the blocks after it) runs per tile, in cache."""
    loops = sch.get_loops(conv)
    if len(loops) != 7:
        return _schedule_rows(sch, tile, conv, before)
    sch.parallel(sch.fuse(*loops[:2]))
    c_outer = _tile_conv(sch, tile, conv, loops[2:])
    tile_space = _space(sch, conv)[:4]
    for block in after if len(after) <= MAX_TILE_EPILOGUE else ():  # element-wise over the accumulator: per tile; anything else on its own
        try:
            if _space(sch, block) != tile_space:
                raise ValueError("not element-wise over the accumulator")
            sch.reverse_compute_at(block, c_outer)
        except (s_tir.ScheduleError, ValueError):
            _parallel_spatial(sch, block)
    for block in after if len(after) > MAX_TILE_EPILOGUE else ():
        _parallel_spatial(sch, block)
    for block in before:
        _parallel_spatial(sch, block)


def _schedule_phases(sch: s_tir.Schedule, tile: Tile, convs, before, after) -> None:
    """Several convolutions read by one element-wise output (the output phases of an upsampling
    convolution, interleaved): per input row, each convolution's row (tiled), then the output
    rows it makes (the epilogue inlined into one block)."""
    for block in after[:-1]:
        sch.compute_inline(block)
    out = after[-1]
    b, y, x, c = sch.get_loops(out)
    stride = -(-int(sch.get(y).extent) // int(sch.get(sch.get_loops(convs[0])[1]).extent))  # output rows per input row
    y_outer, y_phase = sch.split(y, [None, stride])
    x_outer, x_phase = sch.split(x, [None, stride])
    lanes = tile.lanes(int(sch.get(c).extent), 32)
    c_outer, c_inner = sch.split(c, [None, lanes])
    rows = sch.fuse(b, y_outer)
    sch.reorder(rows, y_phase, x_outer, x_phase, c_outer, c_inner)
    sch.unroll(y_phase)
    sch.unroll(x_phase)
    sch.vectorize(c_inner)
    for conv in convs:
        sch.compute_at(conv, rows)
    sch.parallel(rows)
    for conv in convs:
        loops = sch.get_loops(conv)[1:]  # one row: (w, co, rh, rw, rc) where every extent exceeds 1
        if len(loops) == 5:
            _tile_conv(sch, tile, conv, loops)
    for block in before:
        _parallel_spatial(sch, block)


def _bits(sch: s_tir.Schedule, block) -> int:
    """Bits of the element type a block writes."""
    return tvm.DataType(str(sch.get(block).writes[0].source.dtype)).bits


def _space(sch: s_tir.Schedule, block) -> list[tuple[int, int]]:
    """(kind, extent) of each block iterator."""
    return [(int(iv.iter_type), int(iv.dom.extent)) for iv in sch.get(block).iter_vars]


def _schedule_rows(sch: s_tir.Schedule, tile: Tile, anchor, before) -> None:
    """Run the anchor block's rows in parallel, computing what it reads row by row."""
    loops = sch.get_loops(anchor)
    kinds = [iv.iter_type for iv in sch.get(anchor).iter_vars]
    if len(loops) < 3 or len(loops) != len(kinds) or tirx.IterVar.CommReduce in kinds[:2]:
        for block in [*before, anchor]:
            _parallel_spatial(sch, block)
        return
    rows = sch.fuse(loops[0], loops[1])
    for block in reversed(before):
        try:
            sch.compute_at(block, rows)
        except s_tir.ScheduleError:
            _parallel_spatial(sch, block)
    sch.parallel(rows)
    if kinds[-1] == tirx.IterVar.CommReduce and tirx.IterVar.CommReduce not in kinds[:-1]:
        _vectorize_across(sch, tile, anchor, loops[2:-1], loops[-1])


def _vectorize_across(sch: s_tir.Schedule, tile: Tile, block, spatial, reduction) -> None:
    """A reduction over a minor axis (e.g. a count of thresholds below each value): the
    reduction loop outside the row's other loops and the innermost one vectorized, so each
    step is one vector operation over the row's accumulators."""
    lanes = tile.lanes(int(sch.get(spatial[-1]).extent), _bits(sch, block))
    sch.reorder(reduction, *spatial)
    if lanes > 1:
        sch.vectorize(sch.split(spatial[-1], [None, lanes])[1])
    sch.decompose_reduction(block, reduction)


def _parallel_spatial(sch: s_tir.Schedule, block) -> None:
    """Run the leading spatial loops of a block (fused, all but the innermost) in parallel."""
    loops = sch.get_loops(block)
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    if not loops or len(loops) != len(kinds):
        return
    lead = next((i for i, kind in enumerate(kinds) if kind != tirx.IterVar.DataPar), len(kinds))
    outer = loops[:lead - 1] if lead == len(kinds) else loops[:lead]
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
