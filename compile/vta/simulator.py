"""Functional, bit-exact VTA simulator with dependency tokens, deadlock detection and counters.

Instructions are dispatched to the load, compute and store modules as on the FPGA; each module
runs its head instruction whenever the tokens it pops are available (and the FIFOs it pushes to
have room), until FINISH has executed. Data paths are vectorized with NumPy: a GEMM gathers all
its loop iterations at once and multiplies the operand rows that share a weight block with one
matmul (float32 is exact for int8 dot products of up to 2^10 lanes).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from compile.vta.config import VTAConfig
from compile.vta.isa import (AluInsn, AluOp, FinishInsn, GemmInsn, Instruction, InstructionLayout, MemInsn,
                             MemType, Opcode, decode_uops, disassemble_one)
from compile.vta.program import Program
from jaxlic.errors import VTASimulationError

TOKEN_FIFO_DEPTH = 8
MODULES = ("load", "compute", "store")
# (module, flag) -> FIFO popped or pushed; FIFO names are "producer->consumer".
POPS = {("load", "pop_next"): "cmp->ld", ("compute", "pop_prev"): "ld->cmp",
        ("compute", "pop_next"): "st->cmp", ("store", "pop_prev"): "cmp->st"}
PUSHES = {("load", "push_next"): "ld->cmp", ("compute", "push_prev"): "cmp->ld",
          ("compute", "push_next"): "cmp->st", ("store", "push_prev"): "st->cmp"}
MUL_WARNING = "ALU MUL is simulator-only: VTA FPGA designs have no element-wise multiply"


@dataclass
class Counters:
    """What VTA's profiler reports, plus instruction counts."""

    inp_load_nbytes: int = 0
    wgt_load_nbytes: int = 0
    acc_load_nbytes: int = 0
    uop_load_nbytes: int = 0
    out_store_nbytes: int = 0
    gemm_counter: int = 0
    alu_counter: int = 0
    instructions: Counter = field(default_factory=Counter)

    def merge(self, other: Counters) -> None:
        """Add another run's counts into this one."""
        for name in ("inp_load_nbytes", "wgt_load_nbytes", "acc_load_nbytes", "uop_load_nbytes",
                     "out_store_nbytes", "gemm_counter", "alu_counter"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.instructions.update(other.instructions)

    def as_dict(self) -> dict[str, int]:
        data = {k: v for k, v in vars(self).items() if k != "instructions"}
        data.update({f"insn_{k}": v for k, v in sorted(self.instructions.items())})
        return data


def module_of(insn: Instruction) -> str:
    """Which module executes `insn` (the routing rule of the fetch stage)."""
    if isinstance(insn, MemInsn):
        if insn.opcode == Opcode.STORE:
            return "store"
        if insn.memory_type in (MemType.INP, MemType.WGT):
            return "load"
    return "compute"


def _wrap32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64).astype(np.int32)


class Simulator:
    """One VTA device: DRAM, the four SRAMs and the token FIFOs; `counters` describe the last run."""

    def __init__(self, config: VTAConfig, dram_bytes: int, allow_mul: bool = True) -> None:
        self.config = config
        self.layout = InstructionLayout(config)
        self.allow_mul = allow_mul
        grain = max(config.wgt_elem_bytes, config.acc_elem_bytes, 4096)
        self.dram = np.zeros(-(-dram_bytes // grain) * grain, np.uint8)
        c = config
        self.dram_views = {
            MemType.INP: self.dram.view(np.int8).reshape(-1, c.batch, c.block),
            MemType.OUT: self.dram.view(np.int8).reshape(-1, c.batch, c.block),
            MemType.WGT: self.dram.view(np.int8).reshape(-1, c.block, c.block),
            MemType.ACC: self.dram.view("<i4").reshape(-1, c.batch * c.block),
            MemType.ACC_8BIT: self.dram.view(np.int8).reshape(-1, c.batch * c.block),
            MemType.UOP: self.dram.view("<u4"),
        }
        self.inp = np.zeros((c.inp_depth, c.batch, c.block), np.int8)
        self.wgt = np.zeros((c.wgt_depth, c.block, c.block), np.int8)
        self.acc = np.zeros((c.acc_depth, c.batch * c.block), np.int32)
        self.uop = np.zeros(c.uop_depth, np.uint32)
        self.counters = Counters()
        self.warnings: list[str] = []

    # ---- host side -------------------------------------------------------------------------
    def write(self, addr: int, data: bytes | np.ndarray) -> None:
        """Copy bytes into DRAM at a byte address."""
        raw = np.frombuffer(data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes(), np.uint8)
        if addr < 0 or addr + raw.size > self.dram.size:
            raise VTASimulationError(f"host write of {raw.size} B at 0x{addr:x} is outside the {self.dram.size}-B DRAM")
        self.dram[addr:addr + raw.size] = raw

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        """A copy of DRAM bytes at a byte address."""
        if addr < 0 or addr + nbytes > self.dram.size:
            raise VTASimulationError(f"host read of {nbytes} B at 0x{addr:x} is outside the {self.dram.size}-B DRAM")
        return self.dram[addr:addr + nbytes].copy()

    def load_program(self, program: Program) -> None:
        """Place the program's static segments (weights, biases, micro-ops) in DRAM."""
        if program.config != self.config:
            raise VTASimulationError(f"program built for config {program.config.name!r}, simulator runs {self.config.name!r}")
        for segment in program.segments:
            self.write(segment.addr, segment.data)

    # ---- execution -------------------------------------------------------------------------
    def run(self, insns: list[Instruction]) -> Counters:
        """Execute a stream until FINISH; raises VTASimulationError on deadlock or bad access."""
        queues: dict[str, list[tuple[int, Instruction]]] = {m: [] for m in MODULES}
        for index, insn in enumerate(insns):
            queues[module_of(insn)].append((index, insn))
        heads = dict.fromkeys(MODULES, 0)
        tokens = dict.fromkeys(list(POPS.values()), 0)
        finished = 0
        self.counters = Counters()
        while True:
            progressed = False
            for module in MODULES:
                queue = queues[module]
                while heads[module] < len(queue):
                    index, insn = queue[heads[module]]
                    pops = self._flags(module, insn, index, POPS)
                    pushes = self._flags(module, insn, index, PUSHES)
                    if any(tokens[f] == 0 for f in pops) or any(tokens[f] >= TOKEN_FIFO_DEPTH for f in pushes):
                        break
                    for fifo in pops:
                        tokens[fifo] -= 1
                    self._execute(insn, index)
                    finished += isinstance(insn, FinishInsn)
                    for fifo in pushes:
                        tokens[fifo] += 1
                    heads[module] += 1
                    progressed = True
            if all(heads[m] == len(queues[m]) for m in MODULES):
                break
            if not progressed:
                raise VTASimulationError(self._deadlock_report(queues, heads, tokens, finished))
        if finished != 1:
            raise VTASimulationError(f"the stream executed {finished} FINISH instructions; it needs exactly one")
        if any(tokens.values()):
            left = ", ".join(f"{k}={v}" for k, v in tokens.items() if v)
            raise VTASimulationError(f"tokens left in the FIFOs at the end ({left}) would desynchronize the next stream")
        return self.counters

    def _flags(self, module: str, insn: Instruction, index: int, table: dict) -> list[str]:
        fifos = []
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            if getattr(insn, flag):
                if (module, flag) not in POPS and (module, flag) not in PUSHES:
                    raise VTASimulationError(f"instruction {index} ({disassemble_one(insn)}): the {module} module "
                                             f"has no {'previous' if 'prev' in flag else 'next'} stage for {flag}")
                if (module, flag) in table:
                    fifos.append(table[(module, flag)])
        return fifos

    @staticmethod
    def _deadlock_report(queues: dict, heads: dict, tokens: dict, finished: int) -> str:
        lines = ["deadlock: no module can make progress (inconsistent dependency tokens)"]
        for module in MODULES:
            if heads[module] < len(queues[module]):
                index, insn = queues[module][heads[module]]
                lines.append(f"  {module} blocked at instruction {index}: {disassemble_one(insn)}")
        lines.append("  tokens: " + ", ".join(f"{k}={v}" for k, v in tokens.items())
                     + f"; FINISH executed: {bool(finished)}")
        return "\n".join(lines)

    def _execute(self, insn: Instruction, index: int) -> None:
        try:
            if isinstance(insn, MemInsn):
                self.counters.instructions[f"{insn.opcode.name}_{insn.memory_type.name}"] += 1
                (self._store if insn.opcode == Opcode.STORE else self._load)(insn)
            elif isinstance(insn, GemmInsn):
                self.counters.instructions["GEMM"] += 1
                self._gemm(insn)
            elif isinstance(insn, AluInsn):
                self.counters.instructions[f"ALU_{insn.alu_opcode.name}"] += 1
                self._alu(insn)
            else:
                self.counters.instructions["FINISH"] += 1
        except VTASimulationError as exc:
            raise VTASimulationError(f"instruction {index} ({disassemble_one(insn)}): {exc}") from None

    # ---- data paths ------------------------------------------------------------------------
    def _sram(self, memory_type: MemType) -> np.ndarray:
        return {MemType.INP: self.inp, MemType.WGT: self.wgt, MemType.ACC: self.acc,
                MemType.ACC_8BIT: self.acc, MemType.UOP: self.uop}[memory_type]

    def _dram_rows(self, insn: MemInsn, view: np.ndarray) -> np.ndarray:
        rows = insn.dram_base + (np.arange(insn.y_size)[:, None] * insn.x_stride + np.arange(insn.x_size)).ravel()
        if rows.size and rows.max() >= view.shape[0]:
            raise VTASimulationError(f"DRAM element {rows.max()} is past the end of DRAM ({view.shape[0]} elements "
                                     f"of {insn.memory_type.name})")
        return rows

    def _load(self, insn: MemInsn) -> None:
        if insn.x_size == 0:
            return
        if insn.memory_type == MemType.OUT:
            raise VTASimulationError("LOAD of memory type OUT does not exist")
        padded = insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1
        if padded and insn.memory_type in (MemType.WGT, MemType.UOP):
            raise VTASimulationError(f"{insn.memory_type.name} loads cannot be padded (the FPGA pads INP and ACC only)")
        if insn.memory_type == MemType.UOP and insn.y_size != 1:
            raise VTASimulationError(f"UOP loads are 1-D: y_size must be 1, got {insn.y_size}")
        if insn.memory_type == MemType.ACC_8BIT and "ACC_8BIT" not in self.warnings:
            self.warnings.append("ACC_8BIT")
        sram = self._sram(insn.memory_type)
        x_total = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        y_total = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        end = insn.sram_base + x_total * y_total
        if end > sram.shape[0]:
            raise VTASimulationError(f"LOAD writes {insn.memory_type.name} rows up to {end - 1}, the SRAM has "
                                     f"{sram.shape[0]}")
        view = self.dram_views[insn.memory_type]
        rows = self._dram_rows(insn, view)
        region = sram[insn.sram_base:end]
        if padded:
            region[...] = 0
        target = ((np.arange(insn.y_size)[:, None] + insn.y_pad_0) * x_total + insn.x_pad_0
                  + np.arange(insn.x_size)).ravel()
        data = view[rows]
        region[target] = data.reshape(region[target].shape)
        # tvm-vta's profiler counts the ACC SRAM bytes written, also for 8-bit ACC loads.
        nbytes = rows.size * self.config.acc_elem_bytes if insn.memory_type == MemType.ACC_8BIT else data.nbytes
        name = {MemType.INP: "inp", MemType.WGT: "wgt", MemType.UOP: "uop"}.get(insn.memory_type, "acc")
        setattr(self.counters, f"{name}_load_nbytes", getattr(self.counters, f"{name}_load_nbytes") + nbytes)

    def _store(self, insn: MemInsn) -> None:
        if insn.x_size == 0:
            return
        if insn.memory_type != MemType.OUT:
            raise VTASimulationError(f"STORE supports memory type OUT only, got {insn.memory_type.name}")
        if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1:
            raise VTASimulationError("STORE has no padding (pad fields must be 0)")
        count = insn.x_size * insn.y_size
        if insn.sram_base + count > self.acc.shape[0]:
            raise VTASimulationError(f"STORE reads OUT rows up to {insn.sram_base + count - 1}, the SRAM has "
                                     f"{self.acc.shape[0]}")
        view = self.dram_views[MemType.OUT]
        rows = self._dram_rows(insn, view)
        # OUT holds the low 8 bits of the accumulator: truncation, not saturation.
        view[rows] = self.acc[insn.sram_base:insn.sram_base + count].astype(np.int8).reshape(view[rows].shape)
        self.counters.out_store_nbytes += count * self.config.out_elem_bytes

    def _loop_indices(self, insn: GemmInsn | AluInsn) -> tuple[np.ndarray, ...]:
        """(iter_out, iter_in, uops) index arrays of dst, src and (GEMM) wgt."""
        if insn.uop_end > self.uop.shape[0] or insn.uop_end < insn.uop_bgn:
            raise VTASimulationError(f"micro-ops [{insn.uop_bgn}, {insn.uop_end}) outside the {self.uop.shape[0]}-entry buffer")
        dst, src, wgt = decode_uops(self.uop[insn.uop_bgn:insn.uop_end], self.layout)
        out = np.arange(insn.iter_out)[:, None, None]
        inner = np.arange(insn.iter_in)[None, :, None]
        result = [dst + out * insn.dst_factor_out + inner * insn.dst_factor_in,
                  src + out * insn.src_factor_out + inner * insn.src_factor_in]
        if isinstance(insn, GemmInsn):
            result.append(wgt + out * insn.wgt_factor_out + inner * insn.wgt_factor_in)
        return tuple(result)

    @staticmethod
    def _check_range(name: str, indices: np.ndarray, depth: int) -> None:
        if indices.size and indices.max() >= depth:
            raise VTASimulationError(f"{name} index {int(indices.max())} is outside the {depth}-row SRAM")

    def _gemm(self, insn: GemmInsn) -> None:
        dst, src, wgt = self._loop_indices(insn)
        self._check_range("ACC", dst, self.acc.shape[0])
        if insn.reset:
            self.acc[dst.ravel()] = 0
            return
        self._check_range("INP", src, self.inp.shape[0])
        self._check_range("WGT", wgt, self.wgt.shape[0])
        self.counters.gemm_counter += dst.size
        if dst.size == 0:
            return
        # Loops whose wgt factor is 0 reuse one weight block: batch them into one matmul per block.
        batch_axes = [a for a, f in ((0, insn.wgt_factor_out), (1, insn.wgt_factor_in)) if f == 0]
        group_axes = [a for a in (0, 1, 2) if a not in batch_axes]
        order = group_axes + batch_axes
        dst, src, wgt = (np.transpose(a, order) for a in np.broadcast_arrays(dst, src, wgt))
        groups = int(np.prod([dst.shape[i] for i in range(len(group_axes))]))
        dst, src = dst.reshape(groups, -1), src.reshape(groups, -1)
        wgt = wgt.reshape(groups, -1)[:, 0]
        block, batch = self.config.block, self.config.batch
        x = self.inp[src].reshape(groups, -1, block).astype(np.float32)           # (G, B*batch, in)
        w = self.wgt[wgt].astype(np.float32)                                     # (G, out, in)
        y = np.matmul(x, w.transpose(0, 2, 1)).reshape(-1, batch * block)        # (G*B, batch*out)
        lanes = batch * block
        flat = (dst.reshape(-1, 1) * lanes + np.arange(lanes)).ravel()
        sums = np.bincount(flat, weights=y.ravel(), minlength=self.acc.size)
        touched = np.unique(dst)
        update = sums.reshape(-1, lanes)[touched]
        self.acc[touched] = _wrap32(self.acc[touched].astype(np.int64) + update.astype(np.int64))

    def _alu(self, insn: AluInsn) -> None:
        if insn.reset:
            raise VTASimulationError("ALU instructions cannot carry reset_reg")
        if insn.alu_opcode == AluOp.MUL:
            if not self.allow_mul:
                raise VTASimulationError(MUL_WARNING + " (refused: the simulator runs with allow_mul=False)")
            if MUL_WARNING not in self.warnings:
                self.warnings.append(MUL_WARNING)
                warnings.warn(MUL_WARNING, stacklevel=3)
        dst, src = (a.ravel() for a in np.broadcast_arrays(*self._loop_indices(insn)))
        depth = self.acc.shape[0]
        self._check_range("ACC", dst, depth)
        if not insn.use_imm:
            self._check_range("ACC", src, depth)
        self.counters.alu_counter += dst.size
        if dst.size == 0:
            return
        if self._alu_has_hazard(dst, None if insn.use_imm else src):
            for d, s in zip(dst, src):  # rare: repeated or read-after-write rows need program order
                self._alu_apply(insn, np.array([d]), np.array([s]))
        else:
            self._alu_apply(insn, dst, src)

    def _alu_has_hazard(self, dst: np.ndarray, src: np.ndarray | None) -> bool:
        written_at = np.full(self.acc.shape[0], -1, np.int64)
        written_at[dst] = np.arange(dst.size)
        if np.unique(dst).size != dst.size:
            return True
        if src is None:
            return False
        at = written_at[src]
        return bool(np.any((at >= 0) & (at < np.arange(src.size))))

    def _alu_apply(self, insn: AluInsn, dst: np.ndarray, src: np.ndarray) -> None:
        a = self.acc[dst].astype(np.int64)
        b = np.int64(insn.imm) if insn.use_imm else self.acc[src].astype(np.int64)
        op = insn.alu_opcode
        if op == AluOp.MIN:
            result = np.minimum(a, b)
        elif op == AluOp.MAX:
            result = np.maximum(a, b)
        elif op == AluOp.ADD:
            result = a + b
        elif op == AluOp.MUL:
            result = a * b
        else:  # SHR as the HLS design: the operand's low 5 bits as a signed amount; negative shifts left
            b = ((np.broadcast_to(b, a.shape) & 31) ^ 16) - 16
            right = a >> b.clip(0)
            left = _wrap32(a << (-b).clip(0)).astype(np.int64)
            result = np.where(b >= 0, right, left)
        self.acc[dst] = _wrap32(result)


def run_program(program: Program, inputs: dict[str, np.ndarray] | None = None, allow_mul: bool = True,
                simulator: Simulator | None = None) -> tuple[Simulator, Counters]:
    """Load a program and its input buffers into a (new) simulator and run it."""
    sim = simulator or Simulator(program.config, program.dram_bytes, allow_mul=allow_mul)
    sim.load_program(program)
    for name, array in (inputs or {}).items():
        buffer = program.buffers[name]
        if np.asarray(array).nbytes != buffer.nbytes:
            raise VTASimulationError(f"input {name!r} has {np.asarray(array).nbytes} B, the buffer {buffer.nbytes} B")
        sim.write(buffer.addr, array)
    return sim, sim.run(program.insns)
