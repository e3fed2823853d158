"""The functional simulator on hand-written instruction streams."""

import numpy as np
import pytest

from compile.vta.config import load_config
from compile.vta.isa import (AluInsn, AluOp, FinishInsn, GemmInsn, InstructionLayout, MemInsn, MemType, Opcode,
                             encode_uops)
from compile.vta.simulator import Simulator
from jaxlic.errors import VTASimulationError

CONFIG = load_config("pynq")
LAYOUT = InstructionLayout(CONFIG)
UOP_ADDR, INP_ADDR, WGT_ADDR, OUT_ADDR = 0, 4096, 8192, 16384


def load(mem, sram, dram, y, x, stride, **kw):
    return MemInsn(opcode=Opcode.LOAD, memory_type=mem, sram_base=sram, dram_base=dram, y_size=y, x_size=x,
                   x_stride=stride, **kw)


def store(sram, dram, y, x, stride, **kw):
    return MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, sram_base=sram, dram_base=dram, y_size=y,
                   x_size=x, x_stride=stride, **kw)


def alu(op, imm=None, n=1, **kw):
    return AluInsn(uop_bgn=1, uop_end=2, iter_out=n, iter_in=1, dst_factor_out=1, src_factor_out=1, alu_opcode=op,
                   use_imm=imm is not None, imm=imm or 0, **kw)


def make_sim(uops):
    sim = Simulator(CONFIG, 1 << 16)
    sim.write(UOP_ADDR, encode_uops(*np.array(uops).T, LAYOUT))
    return sim


def test_load_padding_layout():
    sim = make_sim([[0, 0, 0]])
    data = np.arange(1, 4 * 5 * 16 + 1, dtype=np.int64).astype(np.int8).reshape(4, 5, 16)  # 4 rows of 5 elements
    sim.write(INP_ADDR, data)
    sim.run([load(MemType.INP, 3, INP_ADDR // 16 + 6, 2, 3, 5, y_pad_0=1, y_pad_1=2, x_pad_0=1, x_pad_1=0),
             FinishInsn()])
    got = sim.inp[3:3 + 4 * 5].reshape(5, 4, 16)
    want = np.zeros((5, 4, 16), np.int8)
    want[1, 1:] = data[1, 1:4]
    want[2, 1:] = data[2, 1:4]
    np.testing.assert_array_equal(got, want)
    assert sim.counters.inp_load_nbytes == 6 * 16


def test_gemm_alu_store_tile_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (4, 16), dtype=np.int8)          # 4 input rows
    w = rng.integers(-128, 128, (2, 16, 16), dtype=np.int8)      # 2 weight blocks (out, in)
    # uop 0: acc[r] += inp[r] @ w0^T ; uop 1: acc[r] += inp[r+1] @ w1^T (loop over r) ; uop 2: ALU on acc rows
    sim = make_sim([[0, 0, 0], [0, 1, 1], [0, 0, 0]])
    sim.write(INP_ADDR, x)
    sim.write(WGT_ADDR, w)
    program = [
        load(MemType.UOP, 0, UOP_ADDR // 4, 1, 3, 3),
        load(MemType.INP, 0, INP_ADDR // 16, 1, 4, 4, push_next=True),
        load(MemType.WGT, 0, WGT_ADDR // 256, 1, 2, 2, push_next=True),
        GemmInsn(reset=True, uop_bgn=0, uop_end=1, iter_out=3, iter_in=1, dst_factor_out=1, pop_prev=True),
        GemmInsn(uop_bgn=0, uop_end=2, iter_out=3, iter_in=1, dst_factor_out=1, src_factor_out=1, pop_prev=True),
        AluInsn(uop_bgn=2, uop_end=3, iter_out=3, iter_in=1, dst_factor_out=1, alu_opcode=AluOp.ADD, use_imm=True,
                imm=1 << 9),
        AluInsn(uop_bgn=2, uop_end=3, iter_out=3, iter_in=1, dst_factor_out=1, alu_opcode=AluOp.SHR, use_imm=True,
                imm=10, push_next=True),
        store(0, OUT_ADDR // 16, 1, 3, 3, pop_prev=True, push_prev=True),
        FinishInsn(pop_next=True),
    ]
    counters = sim.run(program)
    acc = x[:3].astype(np.int64) @ w[0].T.astype(np.int64) + x[1:].astype(np.int64) @ w[1].T.astype(np.int64)
    want = ((acc + 512) >> 10).astype(np.int8)  # STORE truncates to the low 8 bits
    np.testing.assert_array_equal(sim.read(OUT_ADDR, 48).view(np.int8).reshape(3, 16), want)
    assert counters.gemm_counter == 6 and counters.alu_counter == 6 and counters.out_store_nbytes == 48
    assert counters.wgt_load_nbytes == 512 and counters.uop_load_nbytes == 12


def test_alu_ops_and_program_order_hazards():
    sim = make_sim([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    sim.acc[0] = np.arange(-8, 8) * 1000
    sim.acc[1] = 3
    sim.acc[2] = -2
    start = sim.acc[0].astype(np.int64)
    # uop 1 is dst 0 / src 1; with iter_out=2 and dst factor 0 the same row is updated twice, in order.
    sim.run([load(MemType.UOP, 0, 0, 1, 3, 3),
             AluInsn(uop_bgn=1, uop_end=2, iter_out=2, iter_in=1, src_factor_out=1, alu_opcode=AluOp.SHR),
             AluInsn(uop_bgn=1, uop_end=2, iter_out=1, iter_in=1, alu_opcode=AluOp.MAX, use_imm=True, imm=-3),
             FinishInsn()])
    want = np.maximum((start >> 3) << 2, -3)
    np.testing.assert_array_equal(sim.acc[0], want)


def test_mul_is_flagged_and_can_be_refused():
    program = [AluInsn(uop_bgn=0, uop_end=1, iter_out=1, iter_in=1, alu_opcode=AluOp.MUL, use_imm=True, imm=3),
               FinishInsn()]
    sim = make_sim([[0, 0, 0]])
    sim.acc[0] = 5
    with pytest.warns(UserWarning, match="simulator-only"):
        sim.run(program)
    assert (sim.acc[0] == 15).all() and sim.warnings
    strict = Simulator(CONFIG, 1 << 16, allow_mul=False)
    with pytest.raises(VTASimulationError, match="refused"):
        strict.run(program)


@pytest.mark.parametrize("program, message", [
    ([GemmInsn(uop_bgn=0, uop_end=1, iter_out=1, iter_in=1, pop_prev=True), FinishInsn()], "deadlock"),
    ([load(MemType.INP, 0, 0, 1, 1, 1, push_next=True)] * 9 + [FinishInsn()], "deadlock"),
    ([store(0, 0, 1, 1, 1, pop_prev=True), FinishInsn(pop_next=True)], "deadlock"),
    ([load(MemType.INP, 2040, 0, 1, 9, 9), FinishInsn()], "INP rows up to 2048"),
    ([load(MemType.INP, 0, 5000, 1, 9, 9), FinishInsn()], "past the end of DRAM"),
    ([load(MemType.WGT, 0, 0, 1, 1, 1, x_pad_0=1), FinishInsn()], "cannot be padded"),
    ([GemmInsn(uop_bgn=0, uop_end=1, iter_out=3, iter_in=1, dst_factor_out=2047), FinishInsn()], "ACC index 4094"),
    ([GemmInsn(uop_bgn=0, uop_end=1, iter_out=3, iter_in=1, wgt_factor_out=1023), FinishInsn()], "WGT index 2046"),
    ([load(MemType.INP, 0, 0, 1, 1, 1)], "0 FINISH"),
    ([load(MemType.INP, 0, 0, 1, 1, 1, pop_prev=True), FinishInsn()], "no previous stage"),
])
def test_bad_streams_fail_clearly(program, message):
    with pytest.raises(VTASimulationError, match=message):
        make_sim([[0, 0, 0]]).run(program)


def test_shr_reads_its_operand_as_signed_5_bits():
    """As the HLS ALU (ap_int<5> shift): 16..31 shift left by 32 - n, 32 shifts by 0, per lane too."""
    sim = make_sim([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    sim.acc[0] = 1 << 10
    sim.acc[1] = [3, 15, 16, 20, 31, 32, -1, -16, 0, 1, 2, 4, 5, 22, 7, 8]
    sim.run([load(MemType.UOP, 0, 0, 1, 3, 3),
             AluInsn(uop_bgn=1, uop_end=2, iter_out=1, iter_in=1, alu_opcode=AluOp.SHR), FinishInsn()])
    # amount: 3 15 -16 -12 -1 0 -1 -16 0 1 2 4 5 -10 7 8 (22 -> 2^10 << 10 = 2^20; -16 -> 2^26)
    want = [1 << 7, 0, 1 << 26, 1 << 22, 1 << 11, 1 << 10, 1 << 11, 1 << 26, 1 << 10, 1 << 9, 1 << 8, 1 << 6,
            1 << 5, 1 << 20, 1 << 3, 1 << 2]
    np.testing.assert_array_equal(sim.acc[0], want)
    sim.acc[0] = 1 << 20  # left shifts drop the bits past 32
    sim.run([AluInsn(uop_bgn=1, uop_end=2, iter_out=1, iter_in=1, alu_opcode=AluOp.SHR), FinishInsn()])
    assert sim.acc[0][3] == 0 and sim.acc[0][13] == 1 << 30


def test_padded_store_is_refused():
    with pytest.raises(VTASimulationError, match="STORE has no padding"):
        make_sim([[0, 0, 0]]).run([store(0, 0, 1, 1, 1, y_pad_1=1), FinishInsn()])


def test_acc_8bit_load_sign_extends_and_counts_acc_bytes():
    """tvm-vta's profiler counts the ACC SRAM bytes an 8-bit load writes (4 per lane)."""
    sim = make_sim([[0, 0, 0]])
    data = np.arange(-40, 56, dtype=np.int8).reshape(6, 16)
    sim.write(INP_ADDR, data)
    counters = sim.run([load(MemType.ACC_8BIT, 2, INP_ADDR // 16, 2, 3, 3), FinishInsn()])
    np.testing.assert_array_equal(sim.acc[2:8], data.astype(np.int32))
    assert counters.acc_load_nbytes == 6 * CONFIG.acc_elem_bytes == 6 * 64
