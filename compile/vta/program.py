"""A VTA program: instruction stream plus the DRAM image it runs on, and its file format.

File format (little-endian): magic b"JXVTAPRG", u32 version, u32 header length, a UTF-8 JSON
header (config, DRAM size, segment and buffer tables, free-form metadata), the instruction
stream (16 B per instruction), then the raw segment bytes in header order.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compile.vta.config import INSN_BYTES, VTAConfig, config_from_dict
from compile.vta.isa import Instruction, InstructionLayout, decode_instructions, encode_instructions
from jaxlic.errors import VTAConfigError, VTAEncodingError

MAGIC = b"JXVTAPRG"
VERSION = 1
_HEAD = struct.Struct("<8sII")


@dataclass(frozen=True)
class Segment:
    """Static DRAM content (packed weights, biases, micro-ops) at a byte address."""

    name: str
    addr: int
    data: bytes


@dataclass(frozen=True)
class Buffer:
    """A DRAM region the host fills or reads (activations), at a byte address."""

    name: str
    addr: int
    nbytes: int


class DramAllocator:
    """Bump allocator of physical DRAM; every region is aligned to the largest element size."""

    def __init__(self, config: VTAConfig, base: int = 0) -> None:
        self.align = max(4096, config.wgt_elem_bytes, config.acc_elem_bytes)
        self.top = base

    def alloc(self, nbytes: int) -> int:
        """Reserve `nbytes`; returns the byte address."""
        addr = -(-self.top // self.align) * self.align
        self.top = addr + nbytes
        return addr

    @property
    def size(self) -> int:
        return -(-self.top // self.align) * self.align


@dataclass
class Program:
    """Instructions plus the DRAM image (segments) and named activation buffers they address."""

    config: VTAConfig
    insns: list[Instruction]
    segments: list[Segment]
    buffers: dict[str, Buffer]
    dram_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The program file's bytes (see the module docstring)."""
        stream = encode_instructions(self.insns, InstructionLayout(self.config))
        header = {
            "config": self.config.to_json(), "config_name": self.config.name, "dram_bytes": self.dram_bytes,
            "instructions": len(self.insns),
            "segments": [{"name": s.name, "addr": s.addr, "nbytes": len(s.data)} for s in self.segments],
            "buffers": [{"name": b.name, "addr": b.addr, "nbytes": b.nbytes} for b in self.buffers.values()],
            "meta": self.meta,
        }
        blob = json.dumps(header).encode()
        return b"".join([_HEAD.pack(MAGIC, VERSION, len(blob)), blob, stream, *(s.data for s in self.segments)])

    def save(self, path: str | Path) -> None:
        """Write the program file."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "program") -> Program:
        """Parse program bytes; raises VTAEncodingError (naming `name`) when they are not one or are corrupt."""
        if len(data) < _HEAD.size or data[:8] != MAGIC:
            raise VTAEncodingError(f"{name}: not a jaxlic VTA program (bad magic); make one with `jaxlic-compile lower`")
        _, version, header_len = _HEAD.unpack_from(data)
        if version != VERSION:
            raise VTAEncodingError(f"{name}: program format version {version}, this jaxlic reads {VERSION}")
        try:
            header = json.loads(data[_HEAD.size:_HEAD.size + header_len])
            offset = _HEAD.size + header_len
            config = config_from_dict(header["config"], header["config_name"], f"{name} (embedded config)")
            n_insn = int(header["instructions"])
            stream = data[offset:offset + n_insn * INSN_BYTES]
            offset += n_insn * INSN_BYTES
            segments = []
            for entry in header["segments"]:
                end = offset + int(entry["nbytes"])
                segments.append(Segment(entry["name"], int(entry["addr"]), bytes(data[offset:end])))
                offset = end
            buffers = {b["name"]: Buffer(b["name"], int(b["addr"]), int(b["nbytes"])) for b in header["buffers"]}
            dram_bytes, meta = int(header["dram_bytes"]), header["meta"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise VTAEncodingError(f"{name}: corrupt program header ({exc!r})") from None
        except VTAConfigError as exc:
            raise VTAEncodingError(f"{name}: {exc}") from None
        if len(stream) != n_insn * INSN_BYTES or offset != len(data):
            raise VTAEncodingError(f"{name}: truncated or padded program ({len(data)} bytes, header expects {offset})")
        for region in [*segments, *buffers.values()]:
            size = len(region.data) if isinstance(region, Segment) else region.nbytes
            if region.addr < 0 or region.addr + size > dram_bytes:
                raise VTAEncodingError(f"{name}: region {region.name!r} lies outside the {dram_bytes}-byte DRAM")
        insns = decode_instructions(stream, InstructionLayout(config))
        return cls(config, insns, segments, buffers, dram_bytes, meta)

    @classmethod
    def load(cls, path: str | Path) -> Program:
        """Read a program file; raises VTAEncodingError when it is not one or is corrupt."""
        return cls.from_bytes(Path(path).read_bytes(), str(path))


def as_bytes(array: np.ndarray) -> bytes:
    """Little-endian bytes of a NumPy array (C order)."""
    array = np.ascontiguousarray(array)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
