"""The file frame shared by jaxlic's package formats (model and sandwich packages):

    magic (8 bytes) | version u16 | header length u32 | header | body | SHA-256 of all before it

`frame` builds it; `unframe` checks magic, version, length and digest and returns
(header, body), raising PackageError with the file's name and kind.
"""

from __future__ import annotations

import hashlib
import struct

from jaxlic.errors import PackageError

_PREFIX = struct.Struct("<8sHI")
_DIGEST = 32


def frame(magic: bytes, version: int, header: bytes, body: bytes) -> bytes:
    """The framed bytes of one file."""
    framed = _PREFIX.pack(magic, version, len(header)) + header + body
    return framed + hashlib.sha256(framed).digest()


def unframe(data: bytes, magic: bytes, version: int, name: str, kind: str) -> tuple[bytes, bytes]:
    """(header, body) of framed bytes, verified."""
    if len(data) < _PREFIX.size + _DIGEST or data[:8] != magic:
        raise PackageError(f"{name} is not a {kind} (bad magic)")
    _, found, header_len = _PREFIX.unpack_from(data)
    if found != version:
        raise PackageError(f"{name}: {kind} format version {found} is not supported (expected {version})")
    framed, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(framed).digest() != digest:
        raise PackageError(f"{name}: checksum mismatch (truncated or corrupted {kind})")
    end = _PREFIX.size + header_len
    if end > len(framed):
        raise PackageError(f"{name}: header length exceeds the file (corrupted {kind})")
    return framed[_PREFIX.size:end], framed[end:]
