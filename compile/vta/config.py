"""VTA configurations: the vta_config.json fields plus the board facts the JSON lacks.

A config file is a vta_config.json (upper-case keys, all log2) with one extra "board" section
(see vta_configs/README.md). `load_config` validates every field and derives the geometry that
the encoder, scheduler, simulator and performance model share.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxlic.errors import VTAConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "vta_configs"

KNOWN_TARGETS = ("pynq", "ultra96", "zcu104", "de10nano", "sim", "tsim", "intelfocl")
# (low, high) inclusive ranges of the log2 fields this toolchain supports, with the reason.
HW_FIELDS: dict[str, tuple[int, int, str]] = {
    "LOG_INP_WIDTH": (3, 3, "jaxlic lowers int8 activations only"),
    "LOG_WGT_WIDTH": (3, 3, "jaxlic lowers int8 weights only"),
    "LOG_ACC_WIDTH": (5, 5, "accumulators are int32"),
    "LOG_BATCH": (0, 0, "jaxlic schedules batch-1 GEMM cores only"),
    "LOG_BLOCK": (1, 6, "BLOCK must be 2..64"),
    "LOG_UOP_BUFF_SIZE": (2, 20, "bytes, log2"),
    "LOG_INP_BUFF_SIZE": (4, 24, "bytes, log2"),
    "LOG_WGT_BUFF_SIZE": (4, 26, "bytes, log2"),
    "LOG_ACC_BUFF_SIZE": (4, 24, "bytes, log2"),
}
BOARD_FIELDS = ("part", "clock_mhz", "axi_bus_bits", "registers", "host_cpu", "host_target")
OPTIONAL_BOARD_FIELDS = ("hypothetical", "note")
REGISTER_BLOCKS = ("fetch", "load", "compute", "store")
AXI_WIDTHS = (32, 64, 128, 256, 512, 1024)
UOP_BYTES = 4
INSN_BYTES = 16
SRAM_ADDR_BITS = 16


@dataclass(frozen=True)
class BoardFacts:
    """What the vta_config.json does not say: FPGA part, clock, bus, registers, host CPU."""

    part: str
    clock_mhz: float
    axi_bus_bits: int
    registers: dict[str, int]
    host_cpu: str
    host_target: str
    hypothetical: bool = False
    note: str = ""


@dataclass(frozen=True)
class VTAConfig:
    """A validated VTA hardware configuration and its derived geometry."""

    name: str
    target: str
    hw_ver: str
    log_inp_width: int
    log_wgt_width: int
    log_acc_width: int
    log_batch: int
    log_block: int
    log_uop_buff_size: int
    log_inp_buff_size: int
    log_wgt_buff_size: int
    log_acc_buff_size: int
    board: BoardFacts

    @property
    def batch(self) -> int:
        return 1 << self.log_batch

    @property
    def block(self) -> int:
        """BLOCK_IN = BLOCK_OUT: lanes of the GEMM core."""
        return 1 << self.log_block

    @property
    def inp_elem_bytes(self) -> int:
        return self.batch * self.block * (1 << self.log_inp_width) // 8

    @property
    def wgt_elem_bytes(self) -> int:
        return self.block * self.block * (1 << self.log_wgt_width) // 8

    @property
    def acc_elem_bytes(self) -> int:
        return self.batch * self.block * (1 << self.log_acc_width) // 8

    @property
    def out_elem_bytes(self) -> int:
        return self.inp_elem_bytes

    @property
    def uop_depth(self) -> int:
        return (1 << self.log_uop_buff_size) // UOP_BYTES

    @property
    def inp_depth(self) -> int:
        return (1 << self.log_inp_buff_size) // self.inp_elem_bytes

    @property
    def wgt_depth(self) -> int:
        return (1 << self.log_wgt_buff_size) // self.wgt_elem_bytes

    @property
    def acc_depth(self) -> int:
        return (1 << self.log_acc_buff_size) // self.acc_elem_bytes

    @property
    def uop_index_bits(self) -> int:
        return int(math.log2(self.uop_depth))

    @property
    def inp_index_bits(self) -> int:
        return int(math.log2(self.inp_depth))

    @property
    def wgt_index_bits(self) -> int:
        return int(math.log2(self.wgt_depth))

    @property
    def acc_index_bits(self) -> int:
        return int(math.log2(self.acc_depth))

    @property
    def macs_per_cycle(self) -> int:
        return self.batch * self.block * self.block

    @property
    def clock_hz(self) -> float:
        return self.board.clock_mhz * 1e6

    @property
    def bus_bytes_per_cycle(self) -> int:
        return self.board.axi_bus_bits // 8

    @property
    def bitstream_name(self) -> str:
        """The hardware build name, e.g. 1x16_i8w8a32_15_15_18_17."""
        return (f"{self.batch}x{self.block}_i{1 << self.log_inp_width}w{1 << self.log_wgt_width}"
                f"a{1 << self.log_acc_width}_{self.log_uop_buff_size}_{self.log_inp_buff_size}"
                f"_{self.log_wgt_buff_size}_{self.log_acc_buff_size}")

    def to_json(self) -> dict[str, Any]:
        """The config in its file format (round-trips through `config_from_dict`)."""
        data: dict[str, Any] = {"TARGET": self.target, "HW_VER": self.hw_ver}
        for key in HW_FIELDS:
            data[key] = getattr(self, key.lower())
        board = {
            "part": self.board.part,
            "clock_mhz": self.board.clock_mhz,
            "axi_bus_bits": self.board.axi_bus_bits,
            "registers": {k: f"0x{v:08X}" for k, v in self.board.registers.items()},
            "host_cpu": self.board.host_cpu,
            "host_target": self.board.host_target,
        }
        if self.board.hypothetical:
            board["hypothetical"] = True
        if self.board.note:
            board["note"] = self.board.note
        data["board"] = board
        return data


def _fail(source: str, message: str) -> VTAConfigError:
    return VTAConfigError(f"{source}: {message} (see vta_configs/README.md for the format)")


def _parse_board(source: str, board: Any) -> BoardFacts:
    if not isinstance(board, dict):
        raise _fail(source, "missing or non-object 'board' section (clock, bus width, registers, host CPU)")
    unknown = set(board) - set(BOARD_FIELDS) - set(OPTIONAL_BOARD_FIELDS)
    if unknown:
        raise _fail(source, f"unknown board field(s) {sorted(unknown)}; allowed: {list(BOARD_FIELDS + OPTIONAL_BOARD_FIELDS)}")
    missing = [k for k in BOARD_FIELDS if k not in board]
    if missing:
        raise _fail(source, f"board section lacks {missing}")
    for key in ("part", "host_cpu", "host_target"):
        if not isinstance(board[key], str) or not board[key].strip():
            raise _fail(source, f"board.{key} must be a non-empty string, got {board[key]!r}")
    clock = board["clock_mhz"]
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not 1 <= clock <= 2000:
        raise _fail(source, f"board.clock_mhz must be a number of MHz in [1, 2000], got {clock!r}")
    bus = board["axi_bus_bits"]
    if bus not in AXI_WIDTHS or isinstance(bus, bool):
        raise _fail(source, f"board.axi_bus_bits must be one of {AXI_WIDTHS}, got {bus!r}")
    regs = board["registers"]
    if not isinstance(regs, dict) or set(regs) != set(REGISTER_BLOCKS):
        raise _fail(source, f"board.registers must map exactly {list(REGISTER_BLOCKS)} to hex base addresses")
    parsed = {}
    for name in REGISTER_BLOCKS:
        value = regs[name]
        if not isinstance(value, str) or not re.fullmatch(r"0x[0-9A-Fa-f]{1,8}", value):
            raise _fail(source, f"board.registers.{name} must be a hex string like '0x43C00000', got {value!r}")
        parsed[name] = int(value, 16)
    hypothetical = board.get("hypothetical", False)
    if not isinstance(hypothetical, bool):
        raise _fail(source, f"board.hypothetical must be true or false, got {hypothetical!r}")
    note = board.get("note", "")
    if not isinstance(note, str):
        raise _fail(source, "board.note must be a string")
    return BoardFacts(board["part"], float(clock), bus, parsed, board["host_cpu"],
                      board["host_target"], hypothetical, note)


def config_from_dict(data: Any, name: str = "config", source: str | None = None) -> VTAConfig:
    """Validate a parsed config file and derive its geometry; raises VTAConfigError."""
    source = source or name
    if not isinstance(data, dict):
        raise _fail(source, f"a VTA config must be a JSON object, got {type(data).__name__}")
    allowed = {"TARGET", "HW_VER", "board", *HW_FIELDS}
    unknown = set(data) - allowed
    if unknown:
        raise _fail(source, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = sorted(allowed - set(data))
    if missing:
        raise _fail(source, f"missing field(s) {missing}")
    target = data["TARGET"]
    if target not in KNOWN_TARGETS:
        raise _fail(source, f"TARGET must be one of {KNOWN_TARGETS}, got {target!r}")
    hw_ver = data["HW_VER"]
    if not isinstance(hw_ver, str) or not re.fullmatch(r"\d+\.\d+\.\d+", hw_ver):
        raise _fail(source, f"HW_VER must look like '0.0.2', got {hw_ver!r}")
    values = {}
    for key, (low, high, why) in HW_FIELDS.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, f"{key} must be an integer (log2), got {value!r}")
        if not low <= value <= high:
            raise _fail(source, f"{key}={value} is outside [{low}, {high}] ({why})")
        values[key.lower()] = value
    config = VTAConfig(name=name, target=target, hw_ver=hw_ver, board=_parse_board(source, data["board"]),
                       **values)
    _check_geometry(config, source)
    return config


def _check_geometry(config: VTAConfig, source: str) -> None:
    for memory, size_key, elem in (("INP", "log_inp_buff_size", config.inp_elem_bytes),
                                   ("WGT", "log_wgt_buff_size", config.wgt_elem_bytes),
                                   ("ACC", "log_acc_buff_size", config.acc_elem_bytes),
                                   ("UOP", "log_uop_buff_size", UOP_BYTES)):
        size = 1 << getattr(config, size_key)
        if size < 2 * elem:
            raise _fail(source, f"{memory} buffer of {size} B holds fewer than two {elem}-B elements")
        if size // elem > 1 << SRAM_ADDR_BITS:
            raise _fail(source, f"{memory} buffer depth {size // elem} exceeds the 16-bit SRAM address of LOAD/STORE")
    from compile.vta.isa import InstructionLayout  # local: isa imports this module
    from jaxlic.errors import VTAEncodingError

    try:
        InstructionLayout(config)
    except VTAEncodingError as exc:
        raise _fail(source, f"buffer sizes give index fields that do not fit the ISA: {exc}") from exc


def available_configs() -> list[str]:
    """Names of the configs shipped in vta_configs/."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> VTAConfig:
    """Load a config by shipped name (e.g. 'pynq') or by file path; raises VTAConfigError."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise VTAConfigError(f"no VTA config {str(name_or_path)!r}: give a file path or one of {available_configs()}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(str(path), f"not valid JSON: {exc}") from exc
    return config_from_dict(data, name=path.stem, source=str(path))
