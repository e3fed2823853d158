"""Instruction and micro-op encoding: hand-written golden bit patterns and round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import json

from compile.vta.config import CONFIG_DIR, available_configs, config_from_dict, load_config
from compile.vta.isa import (AluInsn, AluOp, FinishInsn, GemmInsn, InstructionLayout, MemInsn, MemType, Opcode,
                             decode_instructions, decode_uops, disassemble, encode_instruction,
                             encode_instructions, encode_uops)
from jaxlic.errors import VTAEncodingError

LAYOUT = InstructionLayout(load_config("pynq"))


def words(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[:8], "little"), int.from_bytes(data[8:], "little")


# Golden values computed by hand from the bit positions in docs/vta.md (default 1x16 config).
GOLDEN = [
    (MemInsn(opcode=Opcode.LOAD, memory_type=MemType.INP, sram_base=5, dram_base=0x100, y_size=3, x_size=4,
             x_stride=10, y_pad_0=1, y_pad_1=2, x_pad_0=3, x_pad_1=4, pop_next=True, push_next=True),
     0x0000000400001550, 0x4321000A00040003),
    (GemmInsn(uop_bgn=1, uop_end=3, iter_out=2, iter_in=5, dst_factor_out=7, dst_factor_in=1, src_factor_out=9,
              src_factor_in=1, wgt_factor_in=3, pop_prev=True, push_prev=True),
     0x000A00100060012A, 0x00C0000202400807),
    (AluInsn(uop_bgn=0, uop_end=1, iter_out=4, iter_in=1, dst_factor_out=1, alu_opcode=AluOp.ADD, use_imm=True,
             imm=-5),
     0x0002002000200004, 0xFFFBA00000000001),
    (FinishInsn(), 0x3, 0x0),
    (MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, sram_base=0x7FF, dram_base=0xFFFFFFFF, y_size=1,
             x_size=2, x_stride=2, pop_prev=True, push_prev=True),
     (0x7FF << 10) | (0xFFFFFFFF << 26) | (4 << 7) | 0x29, 0x0000000200020001),
]


@pytest.mark.parametrize("insn, word0, word1", GOLDEN)
def test_golden_bit_patterns(insn, word0, word1):
    encoded = encode_instruction(insn, LAYOUT)
    assert words(encoded) == (word0, word1)
    assert decode_instructions(encoded, LAYOUT) == [insn]


def test_golden_uop():
    word = encode_uops(np.array([5]), np.array([9]), np.array([1023]), LAYOUT)
    assert word.dtype == np.uint32 and int(word[0]) == 0xFFC04805
    assert [int(a[0]) for a in decode_uops(word, LAYOUT)] == [5, 9, 1023]


def test_field_widths_follow_config():
    big = InstructionLayout(load_config("zcu104_block32"))
    assert {f.name: f.width for f in big.gemm}["uop_end"] == 14
    assert [f.width for f in big.uop] == [11, 11, 10]


def _insn_strategy(config):
    ub, inp, wgt, acc = config.uop_index_bits, config.inp_index_bits, config.wgt_index_bits, config.acc_index_bits
    u = lambda bits: st.integers(0, (1 << bits) - 1)  # noqa: E731
    flags = dict(pop_prev=st.booleans(), pop_next=st.booleans(), push_prev=st.booleans(), push_next=st.booleans())
    mem = st.builds(MemInsn, opcode=st.just(Opcode.LOAD), memory_type=st.sampled_from(list(MemType)),
                    sram_base=u(16), dram_base=u(32), y_size=u(16), x_size=u(16), x_stride=u(16), y_pad_0=u(4),
                    y_pad_1=u(4), x_pad_0=u(4), x_pad_1=u(4), **flags)
    store = st.builds(MemInsn, opcode=st.just(Opcode.STORE), memory_type=st.just(MemType.OUT), sram_base=u(16),
                      dram_base=u(32), y_size=u(16), x_size=u(16), x_stride=u(16), **flags)
    gemm = st.builds(GemmInsn, reset=st.booleans(), uop_bgn=u(ub), uop_end=u(ub + 1), iter_out=u(14),
                     iter_in=u(14), dst_factor_out=u(acc), dst_factor_in=u(acc), src_factor_out=u(inp),
                     src_factor_in=u(inp), wgt_factor_out=u(wgt), wgt_factor_in=u(wgt), **flags).filter(
        lambda g: g.uop_end >= g.uop_bgn)
    alu = st.builds(AluInsn, reset=st.booleans(), uop_bgn=u(ub), uop_end=u(ub + 1), iter_out=u(14), iter_in=u(14),
                    dst_factor_out=u(acc), dst_factor_in=u(acc), src_factor_out=u(acc), src_factor_in=u(acc),
                    alu_opcode=st.sampled_from(list(AluOp)), use_imm=st.booleans(),
                    imm=st.integers(-(1 << 15), (1 << 15) - 1), **flags).filter(
        lambda g: g.uop_end >= g.uop_bgn and (g.alu_opcode != AluOp.SHR or not g.use_imm or -16 <= g.imm <= 15))
    return st.one_of(mem, store, gemm, alu, st.builds(FinishInsn))


@pytest.mark.parametrize("name", available_configs())
def test_round_trip_on_every_config(name):
    config = load_config(name)
    layout = InstructionLayout(config)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(_insn_strategy(config), min_size=1, max_size=8))
    def round_trip(insns):
        assert decode_instructions(encode_instructions(insns, layout), layout) == insns

    round_trip()
    rng = np.random.default_rng(0)
    dst = rng.integers(0, config.acc_depth, 500)
    src = rng.integers(0, config.acc_depth, 500)
    wgt = rng.integers(0, config.wgt_depth, 500)
    for got, want in zip(decode_uops(encode_uops(dst, src, wgt, layout), layout), (dst, src, wgt)):
        np.testing.assert_array_equal(got, want)


def test_oversize_fields_are_rejected():
    with pytest.raises(VTAEncodingError, match="iter_out=16384 does not fit 14 bits"):
        encode_instruction(GemmInsn(uop_bgn=0, uop_end=1, iter_out=1 << 14, iter_in=1), LAYOUT)
    with pytest.raises(VTAEncodingError, match="imm=40000"):
        encode_instruction(AluInsn(uop_bgn=0, uop_end=1, iter_out=1, iter_in=1, alu_opcode=AluOp.ADD,
                                   use_imm=True, imm=40000), LAYOUT)
    with pytest.raises(VTAEncodingError, match="y_pad_0=16"):
        encode_instruction(MemInsn(opcode=Opcode.LOAD, memory_type=MemType.INP, sram_base=0, dram_base=0,
                                   y_size=1, x_size=1, x_stride=1, y_pad_0=16), LAYOUT)
    with pytest.raises(VTAEncodingError, match="wgt=1024"):
        encode_uops(np.array([0]), np.array([0]), np.array([1024]), LAYOUT)
    with pytest.raises(VTAEncodingError, match="STORE supports memory type OUT only"):
        encode_instruction(MemInsn(opcode=Opcode.STORE, memory_type=MemType.ACC, sram_base=0, dram_base=0,
                                   y_size=1, x_size=1, x_stride=1), LAYOUT)


def _config_with(**fields):
    data = json.loads((CONFIG_DIR / "sim.json").read_text()) | fields
    return config_from_dict(data, "small-uop")


def test_small_uop_buffers_follow_c_bitfield_packing():
    """hw_spec.h packs uint64_t bit-fields: with 2 * uop bits + acc bits <= 27, dst_factor_out
    still fits word 0 (after 8 header bits, uop_bgn, uop_end and two 14-bit loop counts)."""
    config = _config_with(LOG_UOP_BUFF_SIZE=10)  # 256 micro-ops: 8 index bits; ACC 2048 rows: 11 bits
    layout = InstructionLayout(config)
    gemm = {f.name: (f.word, f.lo) for f in layout.gemm}
    assert gemm["dst_factor_out"] == (0, 37 + 2 * 8) and gemm["dst_factor_in"] == (1, 0)
    alu = {f.name: (f.word, f.lo) for f in layout.alu}
    assert alu["dst_factor_out"] == (0, 53) and alu["src_factor_out"] == (1, 11) and alu["imm"] == (1, 37)
    insn = GemmInsn(uop_bgn=3, uop_end=4, iter_out=1, iter_in=1, dst_factor_out=5, dst_factor_in=6)
    word0 = 2 | 3 << 8 | 4 << 16 | 1 << 25 | 1 << 39 | 5 << 53
    assert words(encode_instruction(insn, layout)) == (word0, 6)
    assert decode_instructions(encode_instruction(insn, layout), layout) == [insn]
    # The shipped configs (2 * 13 + 11 = 37) keep every loop factor in word 1.
    assert {f.name: f.word for f in LAYOUT.gemm}["dst_factor_out"] == 1


def test_shr_immediates_are_limited_to_signed_5_bits():
    shr = lambda imm: AluInsn(uop_bgn=0, uop_end=1, iter_out=1, iter_in=1, alu_opcode=AluOp.SHR,  # noqa: E731
                              use_imm=True, imm=imm)
    for imm in (-16, 0, 15):
        assert decode_instructions(encode_instruction(shr(imm), LAYOUT), LAYOUT) == [shr(imm)]
    for imm in (16, 31, -17):
        with pytest.raises(VTAEncodingError, match="signed 5-bit"):
            encode_instruction(shr(imm), LAYOUT)
    # The decoder reads what a foreign stream holds; the simulator then shows what the FPGA does.
    raw = (4 | 1 << 21).to_bytes(8, "little") + (3 << 44 | 1 << 47 | 20 << 48).to_bytes(8, "little")
    assert decode_instructions(raw, LAYOUT)[0].imm == 20


def test_padded_stores_are_refused():
    padded = MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, sram_base=0, dram_base=0, y_size=1, x_size=1,
                     x_stride=1, x_pad_1=2)
    with pytest.raises(VTAEncodingError, match="STORE has no padding"):
        encode_instruction(padded, LAYOUT)
    with pytest.raises(VTAEncodingError, match="STORE has no padding"):
        decode_instructions((1 | 4 << 7).to_bytes(8, "little") + (2 << 60).to_bytes(8, "little"), LAYOUT)


@pytest.mark.parametrize("data, message", [
    ((7).to_bytes(16, "little"), "unknown opcode 7"),
    ((3 | 1 << 40).to_bytes(16, "little"), "unused bits"),
    ((0 | 6 << 7).to_bytes(16, "little"), "6 is not a valid MemType"),
    ((4 | 1 << 21).to_bytes(8, "little") + (7 << 44).to_bytes(8, "little"), "7 is not a valid AluOp"),
    ((2 | 5 << 8 | 2 << 21).to_bytes(16, "little"), "uop_end 2 < uop_bgn 5"),
    (b"\x00" * 17, "not a multiple of 16"),
])
def test_corrupt_streams_are_rejected(data, message):
    with pytest.raises(VTAEncodingError, match=message):
        decode_instructions(data, LAYOUT)


def test_disassembler_lists_every_instruction():
    text = disassemble([g[0] for g in GOLDEN])
    lines = text.splitlines()
    assert len(lines) == len(GOLDEN)
    assert "LOAD   INP" in lines[0] and "pad(y 1,2 x 3,4)" in lines[0] and "[pop_next push_next]" in lines[0]
    assert lines[2].split()[1:4] == ["ALU", "ADD", "imm=-5"] and lines[3].endswith("FINISH")
