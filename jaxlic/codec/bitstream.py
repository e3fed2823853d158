"""The bitstream container.

    magic "JXLC" | version u8 | model fingerprint 8 B | height u16 | width u16 |
    stream count u8 | stream lengths (LEB128 varints) | streams | CRC-32 of all before (u32)

The checksum makes any corruption a clear error instead of a garbage image; the fingerprint
makes decoding with another model a ModelMismatchError.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from jaxlic.errors import BitstreamError, ImageError, ModelMismatchError

MAGIC = b"JXLC"
VERSION = 1
MAX_SIDE = 65535
_FIXED = struct.Struct("<4sB8sHHB")


@dataclass(frozen=True)
class Bitstream:
    """A parsed bitstream: which model made it, the image size, and the coded streams."""

    fingerprint: bytes
    height: int
    width: int
    streams: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            raise ImageError(f"image sides must be 1..{MAX_SIDE}, got {self.height}x{self.width}")
        head = _FIXED.pack(MAGIC, VERSION, self.fingerprint, self.height, self.width, len(self.streams))
        lengths = b"".join(_varint(len(s)) for s in self.streams)
        body = head + lengths + b"".join(self.streams)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, expected_fingerprint: bytes | None = None) -> "Bitstream":
        """Parse and verify; BitstreamError for anything malformed, ModelMismatchError for a
        stream made by a different model."""
        if len(data) == 0:
            raise BitstreamError("empty bitstream")
        if len(data) < _FIXED.size + 4 or data[:4] != MAGIC:
            raise BitstreamError("not a jaxlic bitstream (bad magic or too short)")
        magic, version, fingerprint, height, width, count = _FIXED.unpack_from(data)
        if version != VERSION:
            raise BitstreamError(f"bitstream format version {version} is not supported (expected {VERSION})")
        body, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
        if zlib.crc32(body) != crc:
            raise BitstreamError("bitstream checksum mismatch: truncated or corrupted")
        if expected_fingerprint is not None and fingerprint != expected_fingerprint:
            raise ModelMismatchError(
                f"bitstream was made by model {fingerprint.hex()}, not by this model "
                f"({expected_fingerprint.hex()}); decode it with the package that encoded it"
            )
        pos, lengths = _FIXED.size, []
        for _ in range(count):
            length, pos = _read_varint(body, pos)
            lengths.append(length)
        if pos + sum(lengths) != len(body) or height == 0 or width == 0:
            raise BitstreamError("bitstream stream lengths do not add up")
        streams = []
        for length in lengths:
            streams.append(body[pos : pos + length])
            pos += length
        return cls(fingerprint, height, width, tuple(streams))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise BitstreamError("bitstream header is truncated")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
