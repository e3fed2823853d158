"""VTA instruction set: 128-bit instructions and 32-bit micro-ops, encoder, decoder, disassembler.

Field widths that depend on the SRAM depths (micro-op begin/end, loop factors, micro-op indices)
are derived from the config, so one encoder serves every configuration. Bit positions follow
the C bit-fields of tvm-vta's hw_spec.h (GCC/AAPCS packing of uint64_t fields): fields are laid
out back to back from bit 0 of the first little-endian 64-bit word, and a field that would
straddle bit 64 starts the second word instead. So a GEMM/ALU instruction keeps its first loop
factors in word 0 when 2 * uop index bits + acc index bits <= 27 (small micro-op buffers).

SHR reads its operand (immediate or ACC lane) as a signed 5-bit number on the FPGA, so the
encoder refuses SHR immediates outside [-16, 15]; STORE has no padding, so pad fields on a
STORE are refused by the encoder and the decoder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Union

import numpy as np

from compile.vta.config import INSN_BYTES, VTAConfig
from jaxlic.errors import VTAEncodingError


class Opcode(IntEnum):
    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class MemType(IntEnum):
    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4
    ACC_8BIT = 5


class AluOp(IntEnum):
    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4


OPCODE_BITS = 3
MEMTYPE_BITS = 3
ALU_OPCODE_BITS = 3
DRAM_ADDR_BITS = 32
MEM_SIZE_BITS = 16
PAD_BITS = 4
LOOP_ITER_BITS = 14
ALU_IMM_BITS = 16
WORD_BITS = 64
# The HLS ALU reads a shift amount as ap_int<LOG_ACC_WIDTH>: 16..31 would be left shifts.
SHR_MIN, SHR_MAX = -16, 15


@dataclass(frozen=True, kw_only=True)
class _Insn:
    """Dependency flags shared by every instruction (meaning depends on the executing module)."""

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False


@dataclass(frozen=True, kw_only=True)
class MemInsn(_Insn):
    """LOAD or STORE: a 2-D strided copy between DRAM and one SRAM, with zero padding on LOAD."""

    opcode: Opcode
    memory_type: MemType
    sram_base: int
    dram_base: int
    y_size: int
    x_size: int
    x_stride: int
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0


@dataclass(frozen=True, kw_only=True)
class GemmInsn(_Insn):
    """GEMM over a two-level loop nest of micro-ops (or an ACC reset with reset=True)."""

    reset: bool = False
    uop_bgn: int
    uop_end: int
    iter_out: int
    iter_in: int
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0


@dataclass(frozen=True, kw_only=True)
class AluInsn(_Insn):
    """Element-wise ALU op on ACC rows: dst = op(dst, imm or ACC[src])."""

    reset: bool = False
    uop_bgn: int
    uop_end: int
    iter_out: int
    iter_in: int
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    alu_opcode: AluOp
    use_imm: bool = False
    imm: int = 0


@dataclass(frozen=True, kw_only=True)
class FinishInsn(_Insn):
    """FINISH: the compute module raises `done`."""


Instruction = Union[MemInsn, GemmInsn, AluInsn, FinishInsn]


@dataclass(frozen=True)
class Field:
    """One bit field: `name` of the dataclass, in 64-bit `word`, starting at bit `lo`."""

    name: str
    word: int
    lo: int
    width: int
    signed: bool = False


def _pack(names_widths: list[tuple[str, int, bool]]) -> list[Field]:
    """C bit-field layout of 64-bit fields over two words: back to back, a field that would
    straddle bit 64 starts word 1 (as GCC and the ARM AAPCS pack uint64_t bit-fields)."""
    fields, position = [], 0
    for name, width, signed in names_widths:
        if position // WORD_BITS != (position + width - 1) // WORD_BITS:
            position = -(-position // WORD_BITS) * WORD_BITS
        fields.append(Field(name, position // WORD_BITS, position % WORD_BITS, width, signed))
        position += width
    if position > 2 * WORD_BITS:
        raise VTAEncodingError(f"fields {[f.name for f in fields]} need more than {2 * WORD_BITS} bits")
    return fields


_HEADER = [("opcode", OPCODE_BITS, False), ("pop_prev", 1, False), ("pop_next", 1, False),
           ("push_prev", 1, False), ("push_next", 1, False)]


class InstructionLayout:
    """Bit layouts of every instruction kind and of the micro-op, derived from a config."""

    def __init__(self, config: VTAConfig) -> None:
        self.config = config
        uop, inp, wgt, acc = (config.uop_index_bits, config.inp_index_bits,
                              config.wgt_index_bits, config.acc_index_bits)
        loop = [("reset", 1, False), ("uop_bgn", uop, False), ("uop_end", uop + 1, False),
                ("iter_out", LOOP_ITER_BITS, False), ("iter_in", LOOP_ITER_BITS, False)]
        self.mem = _pack(_HEADER + [
            ("memory_type", MEMTYPE_BITS, False), ("sram_base", 16, False), ("dram_base", DRAM_ADDR_BITS, False),
            ("y_size", MEM_SIZE_BITS, False), ("x_size", MEM_SIZE_BITS, False), ("x_stride", MEM_SIZE_BITS, False),
            ("y_pad_0", PAD_BITS, False), ("y_pad_1", PAD_BITS, False), ("x_pad_0", PAD_BITS, False),
            ("x_pad_1", PAD_BITS, False)])
        self.gemm = _pack(_HEADER + loop + [
            ("dst_factor_out", acc, False), ("dst_factor_in", acc, False), ("src_factor_out", inp, False),
            ("src_factor_in", inp, False), ("wgt_factor_out", wgt, False), ("wgt_factor_in", wgt, False)])
        self.alu = _pack(_HEADER + loop + [
            ("dst_factor_out", acc, False), ("dst_factor_in", acc, False), ("src_factor_out", acc, False),
            ("src_factor_in", acc, False), ("alu_opcode", ALU_OPCODE_BITS, False), ("use_imm", 1, False),
            ("imm", ALU_IMM_BITS, True)])
        self.finish = _pack(_HEADER)
        self.uop = _pack([("dst", acc, False), ("src", acc, False), ("wgt", wgt, False)])
        uop_bits = sum(f.width for f in self.uop)
        if uop_bits > 32:
            raise VTAEncodingError(f"micro-op fields need {uop_bits} bits, more than 32")
        if inp > acc:
            raise VTAEncodingError(f"the micro-op src field ({acc} bits) cannot address all {1 << inp} INP rows")

    def fields_of(self, insn: Instruction) -> list[Field]:
        """The field list that encodes `insn`."""
        if isinstance(insn, MemInsn):
            return self.mem
        if isinstance(insn, GemmInsn):
            return self.gemm
        if isinstance(insn, AluInsn):
            return self.alu
        return self.finish


def _opcode_of(insn: Instruction) -> Opcode:
    if isinstance(insn, MemInsn):
        return insn.opcode
    return Opcode.GEMM if isinstance(insn, GemmInsn) else Opcode.ALU if isinstance(insn, AluInsn) else Opcode.FINISH


def _field_value(insn: Instruction, field: Field, index: int) -> int:
    value = int(_opcode_of(insn)) if field.name == "opcode" else int(getattr(insn, field.name))
    low, high = (-(1 << (field.width - 1)), (1 << (field.width - 1)) - 1) if field.signed else (0, (1 << field.width) - 1)
    if not low <= value <= high:
        raise VTAEncodingError(f"instruction {index} ({type(insn).__name__}): field {field.name}={value} "
                               f"does not fit {field.width} bits [{low}, {high}]")
    return value & ((1 << field.width) - 1)


def encode_instruction(insn: Instruction, layout: InstructionLayout, index: int = 0) -> bytes:
    """One instruction as 16 little-endian bytes; raises VTAEncodingError on an oversize field."""
    if isinstance(insn, MemInsn) and insn.opcode not in (Opcode.LOAD, Opcode.STORE):
        raise VTAEncodingError(f"instruction {index}: a memory instruction must be LOAD or STORE, got {insn.opcode!r}")
    if isinstance(insn, MemInsn) and insn.opcode == Opcode.STORE:
        _check_store(insn, index)
    if isinstance(insn, AluInsn) and insn.alu_opcode == AluOp.SHR and insn.use_imm and not SHR_MIN <= insn.imm <= SHR_MAX:
        raise VTAEncodingError(f"instruction {index}: SHR by {insn.imm}: the FPGA reads the shift as a signed 5-bit "
                               f"number, so only [{SHR_MIN}, {SHR_MAX}] shift as written; split larger shifts")
    words = [0, 0]
    for field in layout.fields_of(insn):
        words[field.word] |= _field_value(insn, field, index) << field.lo
    return words[0].to_bytes(8, "little") + words[1].to_bytes(8, "little")


def _check_store(insn: MemInsn, index: int) -> None:
    if insn.memory_type != MemType.OUT:
        raise VTAEncodingError(f"instruction {index}: STORE supports memory type OUT only, got {insn.memory_type.name}")
    if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1:
        raise VTAEncodingError(f"instruction {index}: STORE has no padding (pad fields must be 0)")


def encode_instructions(insns: list[Instruction], layout: InstructionLayout) -> bytes:
    """A whole instruction stream as bytes (16 per instruction)."""
    return b"".join(encode_instruction(insn, layout, i) for i, insn in enumerate(insns))


def _extract(words: tuple[int, int], field: Field) -> int:
    raw = (words[field.word] >> field.lo) & ((1 << field.width) - 1)
    if field.signed and raw >> (field.width - 1):
        raw -= 1 << field.width
    return raw


def _used_mask(fields: list[Field]) -> tuple[int, int]:
    masks = [0, 0]
    for field in fields:
        masks[field.word] |= ((1 << field.width) - 1) << field.lo
    return masks[0], masks[1]


def decode_instruction(data: bytes, layout: InstructionLayout, index: int = 0) -> Instruction:
    """Decode 16 bytes; raises VTAEncodingError for unknown opcodes, types or stray bits."""
    words = (int.from_bytes(data[:8], "little"), int.from_bytes(data[8:16], "little"))
    opcode_value = words[0] & ((1 << OPCODE_BITS) - 1)
    try:
        opcode = Opcode(opcode_value)
    except ValueError:
        raise VTAEncodingError(f"instruction {index}: unknown opcode {opcode_value} (corrupt stream?)") from None
    kind, fields = {Opcode.LOAD: (MemInsn, layout.mem), Opcode.STORE: (MemInsn, layout.mem),
                    Opcode.GEMM: (GemmInsn, layout.gemm), Opcode.ALU: (AluInsn, layout.alu),
                    Opcode.FINISH: (FinishInsn, layout.finish)}[opcode]
    masks = _used_mask(fields)
    if words[0] & ~masks[0] or words[1] & ~masks[1]:
        raise VTAEncodingError(f"instruction {index} ({opcode.name}): unused bits are set (corrupt stream?)")
    values = {f.name: _extract(words, f) for f in fields if f.name != "opcode"}
    for flag in ("pop_prev", "pop_next", "push_prev", "push_next", "reset", "use_imm"):
        if flag in values:
            values[flag] = bool(values[flag])
    try:
        if kind is MemInsn:
            values["opcode"], values["memory_type"] = opcode, MemType(values["memory_type"])
        if kind is AluInsn:
            values["alu_opcode"] = AluOp(values["alu_opcode"])
    except ValueError as exc:
        raise VTAEncodingError(f"instruction {index} ({opcode.name}): {exc} (corrupt stream?)") from None
    insn = kind(**values)
    if isinstance(insn, MemInsn) and insn.opcode == Opcode.STORE:
        _check_store(insn, index)
    if isinstance(insn, (GemmInsn, AluInsn)) and insn.uop_end < insn.uop_bgn:
        raise VTAEncodingError(f"instruction {index}: uop_end {insn.uop_end} < uop_bgn {insn.uop_bgn}")
    return insn


def decode_instructions(data: bytes, layout: InstructionLayout) -> list[Instruction]:
    """Decode a stream; its length must be a multiple of 16 bytes."""
    if len(data) % INSN_BYTES:
        raise VTAEncodingError(f"instruction stream of {len(data)} bytes is not a multiple of {INSN_BYTES}")
    return [decode_instruction(data[i:i + INSN_BYTES], layout, i // INSN_BYTES)
            for i in range(0, len(data), INSN_BYTES)]


def encode_uops(dst: np.ndarray, src: np.ndarray, wgt: np.ndarray, layout: InstructionLayout) -> np.ndarray:
    """Vectorized micro-op encoding to uint32 words; raises VTAEncodingError on oversize indices."""
    arrays = [np.asarray(a, np.int64).ravel() for a in (dst, src, wgt)]
    if len({a.size for a in arrays}) != 1:
        raise VTAEncodingError("micro-op dst/src/wgt arrays differ in length")
    word = np.zeros(arrays[0].size, np.uint64)
    for field, values in zip(layout.uop, arrays):
        bad = (values < 0) | (values >= 1 << field.width)
        if bad.any():
            i = int(np.argmax(bad))
            raise VTAEncodingError(f"micro-op {i}: {field.name}={values[i]} does not fit {field.width} bits")
        word |= values.astype(np.uint64) << np.uint64(field.lo)
    return word.astype(np.uint32)


def decode_uops(words: np.ndarray, layout: InstructionLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized micro-op decoding: (dst, src, wgt) index arrays (int64)."""
    words = np.asarray(words, np.uint32).astype(np.int64)
    dst, src, wgt = ((words >> f.lo) & ((1 << f.width) - 1) for f in layout.uop)
    return dst, src, wgt


def _flags(insn: Instruction) -> str:
    names = [n for n in ("pop_prev", "pop_next", "push_prev", "push_next") if getattr(insn, n)]
    return f"  [{' '.join(names)}]" if names else ""


def disassemble_one(insn: Instruction) -> str:
    """One instruction as a line of assembly-like text."""
    if isinstance(insn, MemInsn):
        pads = f" pad(y {insn.y_pad_0},{insn.y_pad_1} x {insn.x_pad_0},{insn.x_pad_1})" if (
            insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1) else ""
        text = (f"{insn.opcode.name:<6} {insn.memory_type.name:<8} sram={insn.sram_base:<5d} "
                f"dram=0x{insn.dram_base:08x} y={insn.y_size} x={insn.x_size} stride={insn.x_stride}{pads}")
    elif isinstance(insn, (GemmInsn, AluInsn)):
        loops = (f"uop[{insn.uop_bgn}:{insn.uop_end}] out={insn.iter_out}(dst+{insn.dst_factor_out} "
                 f"src+{insn.src_factor_out}")
        inner = f"in={insn.iter_in}(dst+{insn.dst_factor_in} src+{insn.src_factor_in}"
        if isinstance(insn, GemmInsn):
            loops += f" wgt+{insn.wgt_factor_out})"
            inner += f" wgt+{insn.wgt_factor_in})"
            head = "GEMM   reset" if insn.reset else "GEMM  "
        else:
            loops += ")"
            inner += ")"
            operand = f"imm={insn.imm}" if insn.use_imm else "src"
            head = f"ALU    {insn.alu_opcode.name:<3} {operand}" + (" reset" if insn.reset else "")
        text = f"{head} {loops} {inner}"
    else:
        text = "FINISH"
    return text + _flags(insn)


def disassemble(insns: list[Instruction]) -> str:
    """A numbered listing of an instruction stream."""
    return "\n".join(f"{i:6d}  {disassemble_one(insn)}" for i, insn in enumerate(insns))


def replace(insn: Instruction, **changes: object) -> Instruction:
    """A copy of `insn` with some fields changed (e.g. dependency flags)."""
    return dataclasses.replace(insn, **changes)
