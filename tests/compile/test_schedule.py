"""Lowered convolutions run bit-exactly on the simulator, within the SRAM and micro-op limits."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compile.vta.config import load_config
from compile.vta.isa import GemmInsn, MemInsn, MemType
from compile.vta.perf import estimate
from compile.vta.isa import AluInsn, AluOp
from compile.vta.schedule import DEFAULT_UOP_LIMIT, ConvLayer, Tiling, choose_tiling, execute, lower_conv
from compile.vta.simulator import Simulator
from jaxlic.errors import VTAScheduleError

PYNQ = load_config("pynq")


def run_layer(layer, h, w, config, seed, tiling=None, bias_range=20000, bias=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, h, w, layer.in_channels), dtype=np.int8)
    weights = rng.integers(-128, 128, (layer.kernel, layer.kernel, layer.in_channels, layer.out_channels),
                           dtype=np.int8)
    if bias is None:
        bias = rng.integers(-bias_range, bias_range, layer.out_channels).astype(np.int32)
    lowered = lower_conv(layer, h, w, config, weights, bias, tiling=tiling)
    sim = Simulator(config, lowered.program.dram_bytes, allow_mul=False)
    got = execute(lowered.program, x, sim)
    return lowered, sim.counters, got, layer.reference(x, weights, bias)


layers = st.one_of(
    st.builds(lambda k, s, cin, cout, shift, relu: ConvLayer("conv", cin, cout, k, s, k // 2, shift=shift,
                                                              clamp=(0, 127) if relu else (-128, 127)),
              st.sampled_from([1, 3, 5]), st.sampled_from([1, 2]), st.integers(1, 40), st.integers(1, 40),
              st.integers(0, 14), st.booleans()),
    st.builds(lambda k, cin, cout, shift: ConvLayer("convT", cin, cout, k, 2, k // 2, True, 1, shift=shift),
              st.sampled_from([3, 5]), st.integers(1, 40), st.integers(1, 40), st.integers(6, 14)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers, st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_random_layers_are_bit_exact(layer, h, w, seed):
    lowered, counters, got, want = run_layer(layer, h, w, PYNQ, seed)
    np.testing.assert_array_equal(got, want)
    uops = [i for i in lowered.program.insns if isinstance(i, MemInsn) and i.memory_type == MemType.UOP]
    assert sum(i.x_size for i in uops) <= DEFAULT_UOP_LIMIT
    assert counters.gemm_counter > 0


@pytest.mark.parametrize("config_name", ["zcu104_block32", "ultra96"])
def test_other_configs_are_bit_exact(config_name):
    layer = ConvLayer("convT", 40, 70, 5, 2, 2, True, 1, shift=11)
    _, _, got, want = run_layer(layer, 7, 9, load_config(config_name), 1)
    np.testing.assert_array_equal(got, want)


def test_forced_small_tiles_and_groups_are_bit_exact():
    """Many tiles and channel groups exercise the token hand-offs and the shifted last tile."""
    layer = ConvLayer("conv", 48, 80, 3, 1, 1, shift=10)
    lowered, _, got, want = run_layer(layer, 13, 10, PYNQ, 3, tiling=Tiling(4, 3, 2))
    np.testing.assert_array_equal(got, want)
    assert sum(isinstance(i, GemmInsn) and not i.reset for i in lowered.program.insns) == 4 * 4 * 3


def test_main_decoder_layer_uses_the_gemm_core_well():
    layer = ConvLayer("g_s.1", 128, 128, 5, 2, 2, True, 1, shift=12)
    lowered = lower_conv(layer, 45, 80, load_config("zcu104"))
    timing = estimate(lowered.program.insns, lowered.program.config)
    assert timing.utilization(lowered.useful_macs) >= 0.6


def test_unfittable_layers_raise_schedule_errors():
    with pytest.raises(VTAScheduleError, match="no tiling fits"):
        choose_tiling(ConvLayer("huge", 2048, 16, 5, 1, 2), 8, 8, PYNQ)
    with pytest.raises(VTAScheduleError, match="not a multiple of the stride"):
        lower_conv(ConvLayer("odd", 16, 16, 5, 2, 2, True, 0), 8, 8, PYNQ)
    with pytest.raises(VTAScheduleError, match="LOAD pads at most 15"):
        lower_conv(ConvLayer("pad", 16, 16, 3, 1, 16), 8, 8, PYNQ)
    with pytest.raises(VTAScheduleError, match="empty output"):
        lower_conv(ConvLayer("tiny", 16, 16, 5, 1, 0), 3, 3, PYNQ)


def _shr_amounts(program) -> list[int]:
    return [i.imm for i in program.insns if isinstance(i, AluInsn) and i.alu_opcode == AluOp.SHR and i.use_imm]


@pytest.mark.parametrize("shift, tiling, bias_range", [
    (tuple(range(32)) + (31, 0, 16, 15), None, 1 << 24),               # every shift, 0 and 31 included
    (tuple([13, 14] * 18), Tiling(2, 3, 1), 1 << 16),                   # small per-channel spread, many tiles
    (tuple([17] * 35 + [31]), None, 1 << 24),                           # mostly one value above 15
])
def test_per_channel_shifts_in_one_program(shift, tiling, bias_range):
    layer = ConvLayer("conv", 20, 36, 3, 1, 1, shift=shift)
    lowered, counters, got, want = run_layer(layer, 7, 6, PYNQ, 4, tiling=tiling, bias_range=bias_range)
    np.testing.assert_array_equal(got, want)
    assert all(0 <= n <= 15 for n in _shr_amounts(lowered.program))
    assert counters.instructions["ALU_SHR"] > 0
    assert len(np.unique(want)) > 20 and (np.abs(want) < 127).mean() > 0.2  # not all saturated


def test_uniform_shift_above_15_splits_into_immediates():
    layer = ConvLayer("conv", 16, 16, 1, shift=31)
    lowered, _, got, want = run_layer(layer, 3, 5, PYNQ, 2, bias_range=1 << 31)
    np.testing.assert_array_equal(got, want)
    tile_shifts = _shr_amounts(lowered.program)
    assert set(tile_shifts) == {15, 1} and tile_shifts.count(15) == 2 * tile_shifts.count(1)


@pytest.mark.parametrize("clamp, dtype", [((0, 255), np.uint8), ((0, 32767), np.int16),
                                          ((-32768, 32767), np.int16), ((-300, 200), np.int16)])
def test_uint8_and_16_bit_outputs_are_bit_exact(clamp, dtype):
    layer = ConvLayer("convT", 24, 20, 5, 2, 2, True, 1, shift=tuple(range(3, 23)), clamp=clamp)
    bias = np.where(np.arange(20) % 2, -1, 1).astype(np.int32) << 22  # saturates both ways at small shifts
    lowered, counters, got, want = run_layer(layer, 5, 7, PYNQ, 7, bias=bias)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)
    assert (want == clamp[0]).any() and (want == clamp[1]).any()  # both clamp ends reached
    planes = 2 if dtype == np.int16 else 1
    assert sorted(lowered.program.buffers) == ["input", "output", "output_hi"][:1 + planes]
    assert counters.out_store_nbytes == planes * lowered.program.buffers["output"].nbytes


def test_16_bit_outputs_with_forced_tiles_and_groups():
    layer = ConvLayer("pool", 40, 40, 1, shift=(0, 1) * 20, clamp=(0, 32767))
    _, _, got, want = run_layer(layer, 9, 11, PYNQ, 5, tiling=Tiling(2, 4, 2), bias_range=1 << 17)
    np.testing.assert_array_equal(got, want)


def test_bad_shifts_and_clamps_are_refused():
    with pytest.raises(VTAScheduleError, match=r"shifts must be in \[0, 31\]"):
        lower_conv(ConvLayer("neg", 16, 16, 1, shift=(-1,) * 16), 4, 4, PYNQ)
    with pytest.raises(VTAScheduleError, match="one int per output channel"):
        lower_conv(ConvLayer("short", 16, 16, 1, shift=(3, 4)), 4, 4, PYNQ)
    with pytest.raises(VTAScheduleError, match="needs a 32-bit output"):
        lower_conv(ConvLayer("wide", 16, 16, 1, clamp=(0, 1 << 20)), 4, 4, PYNQ)
