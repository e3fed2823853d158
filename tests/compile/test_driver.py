"""Board drivers: relocation, the PYNQ register protocol against the register-level fake, devices."""

import importlib.util

import numpy as np
import pytest

from compile.vta.config import load_config
from compile.vta.driver import (CONTROL, DRAM_POINTERS, FETCH_INSN_COUNT, FakeRegisterDevice, PynqDevice,
                                element_bytes, open_device, relocate)
from compile.vta.isa import FinishInsn, MemInsn, replace
from compile.vta.packing import pack_activation
from compile.vta.schedule import ConvLayer, Tiling, lower_conv
from compile.vta.simulator import Simulator, run_program
from jaxlic.errors import VTADeviceError, VTASimulationError

PYNQ = load_config("pynq")
PHYS = 0x1000_0000
CASES = {  # a multi-tile, multi-group direct conv (token hand-offs) and a transposed conv on a 32-lane core
    "conv-pynq": ("pynq", ConvLayer("conv", 48, 80, 3, 1, 1, shift=10), 13, 10, Tiling(4, 3, 2)),
    "convT-zcu104_block32": ("zcu104_block32", ConvLayer("convT", 40, 70, 5, 2, 2, True, 1, shift=11), 7, 9, None),
}


def lowered_case(name, seed=0):
    config_name, layer, h, w, tiling = CASES[name]
    config = load_config(config_name)
    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, (layer.kernel, layer.kernel, layer.in_channels, layer.out_channels),
                           dtype=np.int8)
    bias = rng.integers(-20000, 20000, layer.out_channels).astype(np.int32)
    program = lower_conv(layer, h, w, config, weights, bias, tiling=tiling).program
    inputs = [pack_activation(rng.integers(-128, 128, (1, h, w, layer.in_channels), dtype=np.int8), config.block)
              for _ in range(2)]
    return config, program, inputs


def fake_device(config, program, mmio_factory=None, allocate=None):
    fake = FakeRegisterDevice(config, phys_base=PHYS)
    device = PynqDevice(config, program.dram_bytes, mmio_factory or fake.mmio, allocate or fake.allocate,
                        timeout_s=0.05)
    return fake, device


def run_on(device, program, x):
    device.load_program(program)
    device.write(program.buffers["input"].addr, x)
    device.run(program.insns)
    return device.read(0, program.dram_bytes)


def tampered_mmio(fake, drop, late=False):
    """An MMIO factory that loses the write to (module, offset), or (late) delivers it after fetch's START."""
    held = []

    class MMIO:
        def __init__(self, base, length):
            self.inner, self.module = fake.mmio(base, length), fake.names[base]

        def read(self, offset):
            return self.inner.read(offset)

        def write(self, offset, value):
            if (self.module, offset) == drop:
                held.extend([(self.inner, offset, value)] if late else [])
                return
            self.inner.write(offset, value)
            if (self.module, offset) == ("fetch", CONTROL):
                for inner, held_offset, held_value in held:
                    inner.write(held_offset, held_value)

    return MMIO


def test_relocate_moves_each_dram_field_by_its_element_size():
    config, program, _ = lowered_case("convT-zcu104_block32")
    sizes = element_bytes(config)
    moved = relocate(program.insns, config, PHYS)
    assert len(moved) == len(program.insns)
    kinds = set()
    for old, new in zip(program.insns, moved):
        if isinstance(old, MemInsn):
            kinds.add(old.memory_type)
            assert new.dram_base * sizes[old.memory_type] == PHYS + old.dram_base * sizes[old.memory_type]
            assert replace(new, dram_base=old.dram_base) == old
        else:
            assert new == old
    assert len(kinds) == 5  # UOP, WGT, INP and ACC loads, OUT stores
    assert relocate(moved, config, -PHYS) == program.insns


def test_relocate_refuses_misaligned_bases_and_addresses_below_zero():
    config, program, _ = lowered_case("conv-pynq")
    with pytest.raises(VTADeviceError, match="not a multiple"):
        relocate(program.insns, config, PHYS + 64)  # 64-B aligned: ACC fits, WGT (256 B) does not
    with pytest.raises(VTADeviceError, match="below physical address 0"):
        relocate(program.insns, config, -PHYS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pynq_driver_on_the_fake_board_equals_the_simulator(case):
    config, program, inputs = lowered_case(case)
    fake, device = fake_device(config, program)
    for module, offset in DRAM_POINTERS:  # stale pointers from a previous user: the driver must zero them
        fake.mmio(config.board.registers[module]).write(offset, 0xDEAD0000)
    for x in inputs:  # two runs on one device: the done register and the region are reused
        sim, _ = run_program(program, {"input": x})
        got = run_on(device, program, x)
        np.testing.assert_array_equal(got, sim.read(0, program.dram_bytes))
        out = program.buffers["output"]
        assert got[out.addr:out.addr + out.nbytes].any()
    assert fake.runs == 2 and fake.fault is None
    assert device.phys_base == PHYS


@pytest.mark.parametrize("drop", [("fetch", CONTROL), ("store", CONTROL), ("compute", CONTROL)])
def test_a_module_left_unstarted_times_out(drop):
    config, program, inputs = lowered_case("conv-pynq")
    fake = FakeRegisterDevice(config, phys_base=PHYS)
    _, device = fake_device(config, program, tampered_mmio(fake, drop), fake.allocate)
    with pytest.raises(VTADeviceError, match="did not finish"):
        run_on(device, program, inputs[0])
    assert fake.runs == 0


def test_count_written_after_start_runs_nothing_and_times_out():
    config, program, inputs = lowered_case("conv-pynq")
    fake = FakeRegisterDevice(config, phys_base=PHYS)
    _, device = fake_device(config, program, tampered_mmio(fake, ("fetch", FETCH_INSN_COUNT), late=True),
                            fake.allocate)
    with pytest.raises(VTADeviceError, match="did not finish"):
        run_on(device, program, inputs[0])
    assert isinstance(fake.fault, VTASimulationError) and "0 FINISH" in str(fake.fault)
    assert fake.registers["fetch"][FETCH_INSN_COUNT] == len(program.insns)  # written, but after fetch latched it


def test_a_stream_without_finish_times_out():
    config, program, inputs = lowered_case("conv-pynq")
    fake, device = fake_device(config, program)
    device.load_program(program)
    assert isinstance(program.insns[-1], FinishInsn)
    with pytest.raises(VTADeviceError, match="did not finish"):
        device.run(program.insns[:-1])
    assert "FINISH" in str(fake.fault)


def test_cache_maintenance_is_what_makes_data_visible():
    config, program, inputs = lowered_case("conv-pynq")
    fake = FakeRegisterDevice(config, phys_base=PHYS)

    def allocate_without(method):
        def allocate(**kwargs):
            buffer = fake.allocate(**kwargs)
            setattr(buffer, method, lambda: None)
            return buffer
        return allocate

    _, device = fake_device(config, program, fake.mmio, allocate_without("flush"))
    with pytest.raises(VTADeviceError, match="did not finish"):  # the device fetches zeros, not the stream
        run_on(device, program, inputs[0])
    _, device = fake_device(config, program, fake.mmio, allocate_without("invalidate"))
    got = run_on(device, program, inputs[0])
    out = program.buffers["output"]
    assert fake.fault is None and not got[out.addr:out.addr + out.nbytes].any()  # stale host copy


def test_device_guards():
    config, program, inputs = lowered_case("conv-pynq")
    fake, device = fake_device(config, program)
    with pytest.raises(VTADeviceError, match="load_program"):
        device.write(0, b"\0")
    device.load_program(program)
    assert len(fake.buffers) == 1
    with pytest.raises(VTADeviceError, match="outside"):
        device.read(program.dram_bytes - 4, 8)
    with pytest.raises(VTADeviceError, match="exceed"):
        device.run(program.insns + [FinishInsn()])
    other = lowered_case("convT-zcu104_block32")[1]
    with pytest.raises(VTADeviceError, match="built for config"):
        device.load_program(other)
    device.close()
    assert fake.buffers == []
    with pytest.raises(VTADeviceError, match="targets 'de10nano'"):
        PynqDevice(load_config("de10nano"), 4096, fake.mmio, fake.allocate)
    with pytest.raises(VTADeviceError, match="no VTA register file"):
        fake.mmio(0x4000_0000)


def test_open_device():
    assert isinstance(open_device("sim", PYNQ, 1 << 16), Simulator)
    with pytest.raises(VTADeviceError, match="unknown VTA device"):
        open_device("fpga", PYNQ, 1 << 16)
    if importlib.util.find_spec("pynq") is None:
        with pytest.raises(VTADeviceError, match="pip install pynq"):
            open_device("pynq", PYNQ, 1 << 16)
