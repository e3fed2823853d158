"""Sealed blobs: a payload encrypted for named recipients and signed by its owner.

Format v1 (byte-exact description in docs/sealing.md)::

    magic "\\x89JXLSEAL" | version u16 | header length u32 | header (JSON)
    | ciphertext length u64 | AES-256-GCM(payload, aad=everything before it) | Ed25519 signature

The 256-bit content key is wrapped for each recipient with HPKE (RFC 9180, base mode,
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM). The owner's Ed25519 signature covers
every byte before it; opening checks it first, with a key the caller supplies.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jaxlic.errors import JaxlicError, KeyMismatchError, SealError, SecurityError
from jaxlic.secure.keys import PRIVATE_MODE, fingerprint, write_atomic

MAGIC = b"\x89JXLSEAL"
VERSION = 1
_PREFIX = struct.Struct(">8sHI")  # magic, version, header length
_CT_LEN = struct.Struct(">Q")
NONCE_SIZE = 12
TAG_SIZE = 16
SIGNATURE_SIZE = 64
FIXED_OVERHEAD = _PREFIX.size + _CT_LEN.size + TAG_SIZE + SIGNATURE_SIZE  # plus the header
_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_WRAPPED_KEY_SIZE = 32 + 32 + TAG_SIZE  # HPKE enc || AES-GCM(content key)
_HPKE_INFO = b"jaxlic sealed blob v1 content key\x00"
_HEADER_FIELDS = {"metadata", "nonce", "owner", "recipients"}
# Metadata is plain, shallow JSON: nesting and numbers any reader (or `jaxlic inspect`) handles.
MAX_METADATA_DEPTH = 32
_INT_RANGE = (-(1 << 63), 1 << 64)
_RECIPIENT_FIELDS = {"kid", "wrapped_key"}


@dataclass(frozen=True)
class SealedContents:
    """What a verified, decrypted blob holds."""

    payload: bytes
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _Frame:
    header_end: int  # end of the header = end of the payload's associated data
    ct_start: int
    ct_end: int  # = start of the signature


def _frame(blob: memoryview) -> _Frame:
    """Locate the parts of a blob, checking magic, version and every length against the size."""
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise SealError("not a jaxlic sealed blob (bad magic number)")
    if len(blob) < _PREFIX.size:
        raise SealError(f"sealed blob truncated: {len(blob)} bytes, shorter than its fixed prefix")
    _, version, header_len = _PREFIX.unpack_from(blob)
    if version != VERSION:
        raise SealError(f"sealed blob format version {version} is not supported (this jaxlic reads {VERSION})")
    header_end = _PREFIX.size + header_len
    ct_start = header_end + _CT_LEN.size
    if len(blob) < ct_start + TAG_SIZE + SIGNATURE_SIZE:
        raise SealError(f"sealed blob truncated: {len(blob)} bytes, too short for its {header_len}-byte header")
    (ct_len,) = _CT_LEN.unpack_from(blob, header_end)
    expected = ct_start + ct_len + SIGNATURE_SIZE
    if ct_len < TAG_SIZE or len(blob) != expected:
        what = "truncated" if len(blob) < expected else "corrupt (length fields disagree with its size)"
        raise SealError(f"sealed blob {what}: {len(blob)} bytes, expected {expected}")
    return _Frame(header_end, ct_start, ct_start + ct_len)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):  # parsers disagree on duplicates; refuse them outright
        raise SealError("sealed blob header has a duplicate JSON key")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise SealError(f"sealed blob header holds a non-JSON number {name}")


def _b64(value: Any, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        raw = b""
    if len(raw) != size:
        raise SealError(f"sealed blob header: {what} is not {size} bytes of base64")
    return raw


def _is_kid(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _check_metadata(value: Any, depth: int = 0) -> None:
    """SealError unless `value` is nested at most MAX_METADATA_DEPTH deep and every number is a
    64-bit integer or a finite float."""
    if depth > MAX_METADATA_DEPTH:
        raise SealError(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, dict) or isinstance(value, list):
        for item in value.values() if isinstance(value, dict) else value:
            _check_metadata(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise SealError("metadata holds a number that is not finite")
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value < _INT_RANGE[1]:
        raise SealError("metadata holds an integer beyond 64 bits")


def _parse_header(raw: memoryview) -> dict[str, Any]:
    """Decode and validate the header JSON; every deviation from the schema is a SealError."""
    try:
        header = json.loads(
            bytes(raw).decode("utf-8"), object_pairs_hook=_strict_object, parse_constant=_reject_constant
        )
    except SealError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSON syntax, huge integers
        raise SealError("sealed blob header is not valid UTF-8 JSON (or nests or counts beyond limits)") from None
    if not isinstance(header, dict) or set(header) != _HEADER_FIELDS:
        raise SealError(f"sealed blob header must have exactly the fields {sorted(_HEADER_FIELDS)}")
    recipients = header["recipients"]
    if not _is_kid(header["owner"]) or not isinstance(header["metadata"], dict):
        raise SealError("sealed blob header: malformed owner or metadata")
    _check_metadata(header["metadata"])
    _b64(header["nonce"], NONCE_SIZE, "nonce")
    if not isinstance(recipients, list) or not recipients:
        raise SealError("sealed blob header names no recipients")
    for entry in recipients:
        if not isinstance(entry, dict) or set(entry) != _RECIPIENT_FIELDS or not _is_kid(entry["kid"]):
            raise SealError("sealed blob header: malformed recipient entry")
        _b64(entry["wrapped_key"], _WRAPPED_KEY_SIZE, "wrapped key")
    if len({e["kid"] for e in recipients}) != len(recipients):
        raise SealError("sealed blob header names a recipient twice")
    return header


def _summary(blob: memoryview, frame: _Frame, header: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": VERSION,
        "owner": header["owner"],
        "recipients": [e["kid"] for e in header["recipients"]],
        "metadata": header["metadata"],
        "payload_size": frame.ct_end - frame.ct_start - TAG_SIZE,
        "sealed_size": len(blob),
    }


def _hpke_info(owner_kid: str) -> bytes:
    return _HPKE_INFO + owner_kid.encode("ascii")


def seal(
    payload: bytes,
    recipients: Sequence[X25519PublicKey],
    owner: Ed25519PrivateKey,
    metadata: dict[str, Any] | None = None,
) -> bytes:
    """Encrypt `payload` for each recipient and sign the result with the owner's key."""
    if not isinstance(owner, Ed25519PrivateKey):
        raise KeyMismatchError(f"the owner key must be an Ed25519 private key, got {type(owner).__name__}")
    if not recipients:
        raise KeyMismatchError("sealing needs at least one recipient public key")
    for key in recipients:
        if not isinstance(key, X25519PublicKey):
            raise KeyMismatchError(f"recipient keys must be X25519 public keys, got {type(key).__name__}")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise SealError(f"metadata must be a dict, got {type(metadata).__name__}")
    _check_metadata(metadata)
    owner_kid = fingerprint(owner)
    content_key = AESGCM.generate_key(bit_length=256)
    # The content key is fresh per blob, so a random nonce is belt and braces, not a necessity.
    nonce = os.urandom(NONCE_SIZE)
    by_kid = {fingerprint(key): key for key in recipients}  # the same key twice is one recipient
    header = {
        "owner": owner_kid,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "recipients": [
            {
                "kid": kid,
                "wrapped_key": base64.b64encode(_HPKE.encrypt(content_key, key, _hpke_info(owner_kid))).decode(),
            }
            for kid, key in by_kid.items()
        ],
        "metadata": metadata,
    }
    try:
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise SealError(f"metadata must be plain JSON (str keys; str, number, bool, list, dict): {exc}") from None
    if json.loads(header_bytes)["metadata"] != metadata:  # int keys, tuples: would come back changed
        raise SealError("metadata must be plain JSON: it would not read back unchanged (non-str keys, tuples?)")
    prefix = _PREFIX.pack(MAGIC, VERSION, len(header_bytes)) + header_bytes
    ct_len = len(payload) + TAG_SIZE
    # One allocation of the final size: ciphertext and signature are written in place.
    out = bytearray(len(prefix) + _CT_LEN.size + ct_len + SIGNATURE_SIZE)
    view = memoryview(out)
    view[: len(prefix)] = prefix
    _CT_LEN.pack_into(out, len(prefix), ct_len)
    ct_start = len(prefix) + _CT_LEN.size
    AESGCM(content_key).encrypt_into(nonce, payload, prefix, view[ct_start : ct_start + ct_len])
    view[-SIGNATURE_SIZE:] = owner.sign(view[:-SIGNATURE_SIZE])
    return bytes(out)


def _claimed_owner(view: memoryview, frame: _Frame) -> str:
    """The owner an unverified header claims, for error messages only (never trusted)."""
    try:
        return _parse_header(view[_PREFIX.size : frame.header_end])["owner"]
    except SealError:
        return "unreadable"


def _verified(blob: bytes, owner: Ed25519PublicKey) -> tuple[memoryview, _Frame, dict[str, Any]]:
    """Check framing and the owner's signature, and only then parse the header."""
    if not isinstance(owner, Ed25519PublicKey):
        raise KeyMismatchError(f"the owner key must be an Ed25519 public key, got {type(owner).__name__}")
    view = memoryview(blob)
    frame = _frame(view)
    try:
        owner.verify(view[frame.ct_end :], view[: frame.ct_end])
    except InvalidSignature:
        raise SealError(
            f"signature does not verify with owner key {fingerprint(owner)} (the blob claims owner "
            f"{_claimed_owner(view, frame)}): it was tampered with or sealed by someone else"
        ) from None
    header = _parse_header(view[_PREFIX.size : frame.header_end])
    if header["owner"] != fingerprint(owner):
        raise SealError(f"sealed blob header names owner {header['owner']}, but {fingerprint(owner)} signed it")
    return view, frame, header


def verify_sealed(blob: bytes, owner: Ed25519PublicKey) -> dict[str, Any]:
    """The public header of a blob after checking the owner's signature (no private key needed)."""
    view, frame, header = _verified(blob, owner)
    return _summary(view, frame, header)


def read_header(blob: bytes) -> dict[str, Any]:
    """The public header of a blob WITHOUT verifying it: for display only, never for decisions."""
    view = memoryview(blob)
    frame = _frame(view)
    return _summary(view, frame, _parse_header(view[_PREFIX.size : frame.header_end]))


def open_sealed(blob: bytes, recipient: X25519PrivateKey, owner: Ed25519PublicKey) -> SealedContents:
    """Verify the owner's signature, unwrap the content key, decrypt: all or nothing."""
    if not isinstance(recipient, X25519PrivateKey):
        raise KeyMismatchError(f"the recipient key must be an X25519 private key, got {type(recipient).__name__}")
    view, frame, header = _verified(blob, owner)
    kid = fingerprint(recipient)
    entry = next((e for e in header["recipients"] if e["kid"] == kid), None)
    if entry is None:
        kids = ", ".join(e["kid"] for e in header["recipients"])
        raise KeyMismatchError(f"this blob is sealed for {kids}, not for key {kid}")
    wrapped_key = _b64(entry["wrapped_key"], _WRAPPED_KEY_SIZE, "wrapped key")
    nonce = _b64(header["nonce"], NONCE_SIZE, "nonce")
    try:
        content_key = _HPKE.decrypt(wrapped_key, recipient, _hpke_info(header["owner"]))
        # One-shot decrypt: the tag is checked before any plaintext is returned (no decrypt_into).
        payload = AESGCM(content_key).decrypt(nonce, view[frame.ct_start : frame.ct_end], view[: frame.header_end])
    except (InvalidTag, ValueError):
        raise SealError("sealed blob does not decrypt: its key wrap or payload is corrupt") from None
    return SealedContents(payload=payload, metadata=header["metadata"])


def _read(path: str | os.PathLike, error: type[JaxlicError]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


def seal_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    recipients: Sequence[X25519PublicKey],
    owner: Ed25519PrivateKey,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Seal the file `src` into `dst`, written atomically."""
    return write_atomic(dst, seal(_read(src, SecurityError), recipients, owner, metadata))


def open_file(
    src: str | os.PathLike, dst: str | os.PathLike, recipient: X25519PrivateKey, owner: Ed25519PublicKey
) -> SealedContents:
    """Open the sealed file `src` into `dst` (mode 0600), written only after full verification."""
    contents = open_sealed(_read(src, SealError), recipient, owner)
    write_atomic(dst, contents.payload, mode=PRIVATE_MODE)
    return contents
