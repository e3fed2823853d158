"""Lowered convolutions run bit-exactly on the simulator, within the SRAM and micro-op limits."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compile.vta.config import load_config
from compile.vta.isa import GemmInsn, MemInsn, MemType
from compile.vta.packing import pack_activation, unpack_activation
from compile.vta.perf import estimate
from compile.vta.schedule import DEFAULT_UOP_LIMIT, ConvLayer, Tiling, choose_tiling, lower_conv
from compile.vta.simulator import run_program
from jaxlic.errors import VTAScheduleError

PYNQ = load_config("pynq")


def run_layer(layer, h, w, config, seed, tiling=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, h, w, layer.in_channels), dtype=np.int8)
    weights = rng.integers(-128, 128, (layer.kernel, layer.kernel, layer.in_channels, layer.out_channels),
                           dtype=np.int8)
    bias = rng.integers(-20000, 20000, layer.out_channels).astype(np.int32)
    lowered = lower_conv(layer, h, w, config, weights, bias, tiling=tiling)
    sim, counters = run_program(lowered.program, {"input": pack_activation(x, config.block)}, allow_mul=False)
    out = lowered.program.buffers["output"]
    oh, ow = lowered.out_shape
    packed = sim.read(out.addr, out.nbytes).view(np.int8).reshape(1, -1, oh, ow, config.block)
    return lowered, counters, unpack_activation(packed, layer.out_channels), layer.reference(x, weights, bias)


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
