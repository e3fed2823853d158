"""VTA devices for the board runtime: the functional simulator here, the board's VTA through PYNQ there.

A device has `write(addr, data)`, `read(addr, nbytes) -> uint8 array`, `load_program(program)` and
`run(insns)`; addresses are the program's DRAM byte offsets (0 = the program's first byte).
`compile.vta.simulator.Simulator` is the simulator device; `PynqDevice` drives a board; the
`FakeRegisterDevice` stands in for a board in tests.

Facts of apache/tvm-vta this driver follows (read there, not copied):
- Each of the four modules (fetch, load, compute, store) is an HLS block with an AXI-lite register
  file of 0x1000 bytes (VTA_IP_REG_MAP_RANGE) at the board's base address (config/pkg_config.py);
  offset 0x0 is the HLS block control register: bit 0 ap_start, bit 1 ap_done, bit 7 auto-restart.
- Register offsets (config/pkg_config.py): fetch instruction count 0x10, instruction address 0x18;
  load inputs 0x10, weights 0x18; compute done (write) 0x10, done (read) 0x18, micro-ops 0x20,
  biases 0x28; store outputs 0x10. The five DRAM pointers are HLS `m_axi offset=slave` ports, so an
  instruction's DRAM field indexes elements from that pointer (hardware/xilinx/src/vta.cc).
- Run protocol (src/pynq/pynq_driver.cc `VTADevice::Run`, constants in src/pynq/pynq_driver.h):
  write the instruction count, the instruction stream's physical address, 0 to the five DRAM
  pointers (instructions carry absolute physical element indices); write VTA_START (0x1) to fetch,
  then VTA_AUTORESTART (0x81) to load, compute and store; poll fetch's ap_done, then compute's done
  register until it reads VTA_DONE (1), up to a bounded wait; write VTA_AUTORESTART_DISABLE (0x0)
  to load, compute and store; a timeout is an error.
- The compute module clears `done` on every instruction and sets it on FINISH (vta.cc `compute`).
- Buffers are physically contiguous (cma_alloc; at most VTA_MAX_XFER = 32 MiB each, include/vta/
  driver.h); the host flushes the CPU cache before the device reads and invalidates it before it
  reads results (VTAFlushCache / VTAInvalidateCache).
- tvm-vta builds the PYNQ driver for the pynq, ultra96 and zcu104 targets (config/pkg_config.py).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from compile.vta.config import INSN_BYTES, UOP_BYTES, VTAConfig
from compile.vta.isa import (Instruction, InstructionLayout, MemInsn, MemType, decode_instructions,
                             encode_instructions, replace)
from compile.vta.program import Program
from compile.vta.simulator import Simulator
from jaxlic.errors import VTADeviceError, VTAError

PYNQ_TARGETS = ("pynq", "ultra96", "zcu104")
REG_MAP_RANGE = 0x1000
PAGE = 4096
CONTROL = 0x00
AP_START, AP_DONE, AP_IDLE, AUTO_RESTART = 0x1, 0x2, 0x4, 0x80
VTA_START, VTA_AUTORESTART, VTA_AUTORESTART_DISABLE, VTA_DONE = 0x1, 0x81, 0x0, 0x1
FETCH_INSN_COUNT, FETCH_INSN_ADDR = 0x10, 0x18
COMPUTE_DONE_RD = 0x18
# The DRAM pointer register each memory type is addressed through, in the order tvm-vta writes them.
POINTER_OF = {MemType.INP: ("load", 0x10), MemType.WGT: ("load", 0x18), MemType.UOP: ("compute", 0x20),
              MemType.ACC: ("compute", 0x28), MemType.ACC_8BIT: ("compute", 0x28), MemType.OUT: ("store", 0x10)}
DRAM_POINTERS = list(dict.fromkeys(POINTER_OF.values()))
WORKERS = ("load", "compute", "store")


def _round_up(n: int, grain: int) -> int:
    return -(-n // grain) * grain


def element_bytes(config: VTAConfig) -> dict[MemType, int]:
    """Bytes of one DRAM element of each memory type (the unit of an instruction's DRAM field)."""
    return {MemType.UOP: UOP_BYTES, MemType.WGT: config.wgt_elem_bytes, MemType.INP: config.inp_elem_bytes,
            MemType.ACC: config.acc_elem_bytes, MemType.OUT: config.out_elem_bytes,
            MemType.ACC_8BIT: config.batch * config.block}


def relocate(insns: list[Instruction], config: VTAConfig, phys_base: int) -> list[Instruction]:
    """The stream with every DRAM field moved from element indices of byte 0 to a region at `phys_base`.

    A LOAD/STORE's `dram_base` becomes phys_base / element size + index; a negative base moves a
    stream back. Raises VTADeviceError when the base is not a multiple of every element size or an
    index would fall below physical address 0.
    """
    sizes = element_bytes(config)
    misaligned = sorted(t.name for t, size in sizes.items() if phys_base % size)
    if misaligned:
        raise VTADeviceError(f"region base 0x{phys_base:x} is not a multiple of the {misaligned} element sizes "
                             f"({max(sizes.values())} B alignment needed)")
    moved = []
    for index, insn in enumerate(insns):
        if isinstance(insn, MemInsn):
            dram_base = insn.dram_base + phys_base // sizes[insn.memory_type]
            if dram_base < 0:
                raise VTADeviceError(f"instruction {index}: DRAM element {dram_base} of {insn.memory_type.name} "
                                     "lies below physical address 0")
            insn = replace(insn, dram_base=dram_base)
        moved.append(insn)
    return moved


def _import_pynq():
    try:
        import pynq
    except ImportError:
        raise VTADeviceError("device 'pynq' needs the `pynq` package, which exists on PYNQ board images "
                             "(pip install pynq on the board); on this machine use device 'sim'") from None
    return pynq


class PynqDevice:
    """The board's VTA driven through tvm-vta's PYNQ register protocol (see the module docstring).

    One physically contiguous region holds the program's DRAM image (program byte 0 at physical
    `phys_base`) followed by the instruction stream. `load_program` allocates it (again, larger,
    when a program has more instructions), so it comes before `write`, as in `run_program`.
    `mmio_factory(base, length)` and `allocate(shape=, dtype=)` default to `pynq.MMIO` and
    `pynq.allocate`; `timeout_s` bounds the wait for compute's done register.
    """

    def __init__(self, config: VTAConfig, dram_bytes: int, mmio_factory: Callable | None = None,
                 allocate: Callable | None = None, timeout_s: float = 10.0) -> None:
        if config.target not in PYNQ_TARGETS:
            raise VTADeviceError(f"config {config.name!r} targets {config.target!r}; the PYNQ driver serves "
                                 f"{PYNQ_TARGETS} (tvm-vta's pynq driver stack)")
        if mmio_factory is None or allocate is None:
            pynq = _import_pynq()
            mmio_factory, allocate = mmio_factory or pynq.MMIO, allocate or pynq.allocate
        self.config, self.dram_bytes, self.timeout_s = config, dram_bytes, timeout_s
        self.layout = InstructionLayout(config)
        self.registers = {name: mmio_factory(base, REG_MAP_RANGE) for name, base in config.board.registers.items()}
        self._allocate = allocate
        self._insn_offset = _round_up(dram_bytes, PAGE)
        self.buffer = self.memory = self.phys_base = None
        self.insn_capacity = 0

    def load_program(self, program: Program) -> None:
        """Allocate the region if needed and place the program's static segments in it."""
        if program.config != self.config:
            raise VTADeviceError(f"program built for config {program.config.name!r}, the device runs "
                                 f"{self.config.name!r}")
        if program.dram_bytes > self.dram_bytes:
            raise VTADeviceError(f"program needs {program.dram_bytes} B of DRAM, the device was opened with "
                                 f"{self.dram_bytes}")
        if self.buffer is None or len(program.insns) > self.insn_capacity:
            self.close()
            self.insn_capacity = len(program.insns)
            nbytes = self._insn_offset + _round_up(self.insn_capacity * INSN_BYTES, PAGE)
            self.buffer = self._allocate(shape=(nbytes,), dtype=np.uint8)
            self.memory = np.asarray(self.buffer)
            self.phys_base = int(self.buffer.physical_address)
        for segment in program.segments:
            self.write(segment.addr, segment.data)

    def _require_region(self) -> None:
        if self.memory is None:
            raise VTADeviceError("no region yet: call load_program before write/read/run")

    def _span(self, addr: int, nbytes: int) -> slice:
        self._require_region()
        if addr < 0 or addr + nbytes > self.dram_bytes:
            raise VTADeviceError(f"access of {nbytes} B at 0x{addr:x} is outside the {self.dram_bytes}-B DRAM")
        return slice(addr, addr + nbytes)

    def write(self, addr: int, data: bytes | np.ndarray) -> None:
        """Copy bytes into the region at a program byte address (flushed by `run`)."""
        raw = np.frombuffer(data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes(), np.uint8)
        self.memory[self._span(addr, raw.size)] = raw

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        """A copy of region bytes at a program byte address (invalidated by `run`)."""
        return self.memory[self._span(addr, nbytes)].copy()

    def run(self, insns: list[Instruction]) -> None:
        """Relocate, encode and place the stream, flush, start VTA and wait for done, invalidate."""
        self._require_region()
        if len(insns) > self.insn_capacity:
            raise VTADeviceError(f"{len(insns)} instructions exceed the {self.insn_capacity} the region was sized for "
                                 "(load_program sizes it)")
        stream = encode_instructions(relocate(insns, self.config, self.phys_base), self.layout)
        self.memory[self._insn_offset:self._insn_offset + len(stream)] = np.frombuffer(stream, np.uint8)
        self.buffer.flush()
        self._launch(self.phys_base + self._insn_offset, len(insns))
        self.buffer.invalidate()

    def _launch(self, insn_addr: int, count: int) -> None:
        fetch, compute = self.registers["fetch"], self.registers["compute"]
        fetch.write(FETCH_INSN_COUNT, count)
        fetch.write(FETCH_INSN_ADDR, insn_addr)
        for module, offset in DRAM_POINTERS:
            self.registers[module].write(offset, 0)
        fetch.write(CONTROL, VTA_START)
        for module in WORKERS:
            self.registers[module].write(CONTROL, VTA_AUTORESTART)
        deadline = time.monotonic() + self.timeout_s
        for register, offset, flag in ((fetch, CONTROL, AP_DONE), (compute, COMPUTE_DONE_RD, VTA_DONE)):
            while not register.read(offset) & flag and time.monotonic() < deadline:
                time.sleep(0)
        done = compute.read(COMPUTE_DONE_RD) == VTA_DONE
        for module in WORKERS:
            self.registers[module].write(CONTROL, VTA_AUTORESTART_DISABLE)
        if not done:
            raise VTADeviceError(f"VTA did not finish {count} instructions within {self.timeout_s} s (compute's done "
                                 f"register stayed 0): is the {self.config.bitstream_name} bitstream loaded, and does "
                                 "the stream pass `jaxlic-compile simulate`?")

    def close(self) -> None:
        """Free the contiguous region (a later load_program allocates a new one)."""
        if self.buffer is not None:
            self.buffer.freebuffer()
        self.buffer = self.memory = self.phys_base = None
        self.insn_capacity = 0


def open_device(kind: str, config: VTAConfig, dram_bytes: int) -> Simulator | PynqDevice:
    """A device of `kind` "sim" (the functional simulator) or "pynq" (the board, needs `pynq`)."""
    if kind == "sim":
        return Simulator(config, dram_bytes)
    if kind == "pynq":
        return PynqDevice(config, dram_bytes)
    raise VTADeviceError(f"unknown VTA device {kind!r}: use 'sim' or 'pynq'")


class FakeRegisterDevice:
    """A register-level fake of a VTA board, for testing drivers without one.

    `mmio(base, length)` (a `pynq.MMIO` stand-in) opens the AXI-lite register file of the module at
    a config base address; `allocate(shape, dtype)` (a `pynq.allocate` stand-in) hands out
    page-aligned buffers of a physical memory starting at `phys_base`. Buffers model a
    non-coherent cache: the host sees its own copy until `flush()`, and memory reaches the host on
    `invalidate()`. When fetch is started and load, compute and store run in auto-restart, fetch
    latches its count and address registers, the stream is decoded from memory and run on a
    Simulator whose DRAM is that memory (addresses translated back), and compute's done register
    is set. Like a board, a failed run hangs (done stays 0) instead of raising; `fault` says why.
    """

    def __init__(self, config: VTAConfig, memory_bytes: int = 1 << 26, phys_base: int = 0x1000_0000) -> None:
        self.config, self.phys_base = config, phys_base
        self.sim = Simulator(config, memory_bytes)
        self.names = {base: name for name, base in config.board.registers.items()}
        self.registers: dict[str, dict[int, int]] = {name: {} for name in self.names.values()}
        self.buffers: list[_FakeBuffer] = []
        self.top = 0
        self.fault: VTAError | None = None
        self.runs = 0
        self._latched = (0, 0)

    def mmio(self, base_addr: int, length: int = REG_MAP_RANGE) -> _FakeMMIO:
        """The register file of the module at `base_addr`."""
        if base_addr not in self.names or length > REG_MAP_RANGE:
            raise VTADeviceError(f"no VTA register file of {length} B at 0x{base_addr:08X}; the modules are at "
                                 f"{[hex(base) for base in self.names]}")
        return _FakeMMIO(self, self.names[base_addr])

    def allocate(self, shape, dtype=np.uint32) -> _FakeBuffer:
        """A physically contiguous, page-aligned buffer."""
        cpu = np.zeros(shape, dtype)
        offset = _round_up(self.top, PAGE)
        if offset + cpu.nbytes > self.sim.dram.size:
            raise VTADeviceError(f"fake memory exhausted: {cpu.nbytes} B asked, {self.sim.dram.size - offset} B left")
        self.top = offset + cpu.nbytes
        self.buffers.append(_FakeBuffer(self, cpu, offset))
        return self.buffers[-1]

    def write_register(self, module: str, offset: int, value: int) -> None:
        """An AXI-lite write; writes to a control register may start the device."""
        registers = self.registers[module]
        registers[offset] = value & 0xFFFFFFFF
        if offset != CONTROL:
            return
        fetch = self.registers["fetch"]
        if module == "fetch" and value & AP_START:
            self._latched = (fetch.get(FETCH_INSN_COUNT, 0), fetch.get(FETCH_INSN_ADDR, 0))
        running = [self.registers[m].get(CONTROL, 0) & (AP_START | AUTO_RESTART) == AP_START | AUTO_RESTART
                   for m in WORKERS]
        if fetch.get(CONTROL, 0) & AP_START and all(running):
            self._run(*self._latched)

    def _run(self, count: int, insn_addr: int) -> None:
        self.registers["fetch"][CONTROL] = AP_DONE | AP_IDLE
        self.registers["compute"][COMPUTE_DONE_RD] = 0
        try:
            offset = insn_addr - self.phys_base
            if offset < 0 or offset + count * INSN_BYTES > self.sim.dram.size:
                raise VTADeviceError(f"fetch of {count} instructions at 0x{insn_addr:x} leaves the fake memory")
            insns = decode_instructions(self.sim.dram[offset:offset + count * INSN_BYTES].tobytes(),
                                        self.sim.layout)
            pointers = {f"{m}+0x{o:x}": self.registers[m].get(o, 0) for m, o in DRAM_POINTERS}
            if any(pointers.values()):
                raise VTADeviceError(f"DRAM pointer registers {pointers} are not 0: the stream's absolute "
                                     "addresses would be shifted")
            self.sim.run(relocate(insns, self.config, -self.phys_base))
        except VTAError as exc:
            self.fault = exc
            return
        self.fault = None
        self.runs += 1
        self.registers["compute"][COMPUTE_DONE_RD] = VTA_DONE


class _FakeMMIO:
    """One module's register file, with `pynq.MMIO`'s read/write."""

    def __init__(self, device: FakeRegisterDevice, module: str) -> None:
        self.device, self.module = device, module

    def read(self, offset: int, length: int = 4) -> int:
        return self.device.registers[self.module].get(offset, 0)

    def write(self, offset: int, value: int) -> None:
        self.device.write_register(self.module, offset, int(value))


class _FakeBuffer:
    """A contiguous buffer with `pynq`'s physical_address, flush, invalidate and freebuffer."""

    def __init__(self, device: FakeRegisterDevice, cpu: np.ndarray, offset: int) -> None:
        self.device, self.cpu, self.offset = device, cpu, offset
        self.physical_address = device.phys_base + offset

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.cpu

    def _memory(self) -> np.ndarray:
        return self.device.sim.dram[self.offset:self.offset + self.cpu.nbytes]

    def flush(self) -> None:
        self._memory()[:] = self.cpu.reshape(-1).view(np.uint8)

    def invalidate(self) -> None:
        self.cpu.reshape(-1).view(np.uint8)[:] = self._memory()

    def freebuffer(self) -> None:
        self.device.buffers.remove(self)
