"""Cycle model of a VTA program: per-instruction costs plus the overlap the tokens allow.

Assumptions (docs/vta.md explains them):
- GEMM issues one micro-op iteration (a BATCH x BLOCK by BLOCK x BLOCK product) per cycle after
  a fixed pipeline start-up; an ACC reset writes one row per cycle.
- ALU issues one iteration per cycle with an immediate and one every two cycles when it reads a
  second ACC row.
- A DMA (LOAD/STORE) costs a fixed AXI latency, a per-row burst set-up, and ceil(row bytes / bus
  bytes) beats per row at the board clock; padding writes one SRAM element per cycle.
- Each module (load, compute, store) runs its instructions in order; an instruction starts when
  its module is free and every token it pops has been pushed (a push happens when the pushing
  instruction ends). Each module has its own AXI port (no bandwidth sharing); instruction fetch
  is free; host work between layers is not counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from compile.vta.config import VTAConfig
from compile.vta.isa import AluInsn, GemmInsn, Instruction, MemInsn, MemType
from compile.vta.simulator import MODULES, POPS, PUSHES, module_of
from jaxlic.errors import VTASimulationError

GEMM_STARTUP = 10
ALU_STARTUP = 10
DMA_LATENCY = 50
DMA_ROW_SETUP = 4


@dataclass
class Timing:
    """Cycle estimate of one program."""

    cycles: int
    busy: dict[str, int]
    gemm_cycles: int
    macs_per_cycle: int

    def seconds(self, config: VTAConfig) -> float:
        return self.cycles / config.clock_hz

    def utilization(self, useful_macs: int) -> float:
        """Useful MACs over the peak the program's duration allows."""
        return useful_macs / (self.cycles * self.macs_per_cycle) if self.cycles else 0.0


def dma_cycles(config: VTAConfig, rows, row_bytes, pad_elements=0):
    """Cycles of one 2-D DMA of `rows` rows of `row_bytes` bytes plus padding (ints or arrays)."""
    beats = -(-row_bytes // config.bus_bytes_per_cycle)
    return DMA_LATENCY + rows * (DMA_ROW_SETUP + beats) + pad_elements


def alu_cycles(iterations, use_imm: bool):
    """Cycles of one ALU instruction of `iterations` micro-op iterations (int or array)."""
    return ALU_STARTUP + iterations * (1 if use_imm else 2)


def instruction_cycles(insn: Instruction, config: VTAConfig) -> int:
    """Duration of one instruction on its module."""
    if isinstance(insn, MemInsn):
        if insn.x_size == 0:
            return 1
        elem = {MemType.INP: config.inp_elem_bytes, MemType.OUT: config.out_elem_bytes,
                MemType.WGT: config.wgt_elem_bytes, MemType.ACC: config.acc_elem_bytes,
                MemType.ACC_8BIT: config.acc_elem_bytes // 4, MemType.UOP: 4}[insn.memory_type]
        total = (insn.x_pad_0 + insn.x_size + insn.x_pad_1) * (insn.y_pad_0 + insn.y_size + insn.y_pad_1)
        return dma_cycles(config, insn.y_size, insn.x_size * elem, total - insn.x_size * insn.y_size)
    if isinstance(insn, GemmInsn):
        iterations = insn.iter_out * insn.iter_in * (insn.uop_end - insn.uop_bgn)
        return iterations if insn.reset else GEMM_STARTUP + iterations
    if isinstance(insn, AluInsn):
        return alu_cycles(insn.iter_out * insn.iter_in * (insn.uop_end - insn.uop_bgn), insn.use_imm)
    return 1


def estimate(insns: list[Instruction], config: VTAConfig) -> Timing:
    """Cycle estimate of a stream whose tokens are consistent (run the simulator to check that)."""
    queues = {m: [i for i in insns if module_of(i) == m] for m in MODULES}
    heads = dict.fromkeys(MODULES, 0)
    free_at = dict.fromkeys(MODULES, 0)
    busy = dict.fromkeys(MODULES, 0)
    fifos: dict[str, deque[int]] = {name: deque() for name in POPS.values()}
    gemm = 0
    while any(heads[m] < len(queues[m]) for m in MODULES):
        progressed = False
        for module in MODULES:
            while heads[module] < len(queues[module]):
                insn = queues[module][heads[module]]
                pops = [POPS[(module, f)] for f in ("pop_prev", "pop_next") if getattr(insn, f) and (module, f) in POPS]
                if any(not fifos[f] for f in pops):
                    break
                start = max([free_at[module]] + [fifos[f].popleft() for f in pops])
                duration = instruction_cycles(insn, config)
                free_at[module] = start + duration
                busy[module] += duration
                if isinstance(insn, GemmInsn) and not insn.reset:
                    gemm += duration
                for flag in ("push_prev", "push_next"):
                    if getattr(insn, flag) and (module, flag) in PUSHES:
                        fifos[PUSHES[(module, flag)]].append(free_at[module])
                heads[module] += 1
                progressed = True
        if not progressed:
            raise VTASimulationError("token deadlock in the timing model; run the functional simulator for details")
    return Timing(max(free_at.values()), busy, gemm, config.macs_per_cycle)
