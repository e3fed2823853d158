"""Deployment bundles (.jxvb): one file with all a board needs to decode one model at one resolution.

Layout (the frame of `jaxlic.framing`, so any flipped byte fails the SHA-256 at the end)::

    magic "JXVBNDL\\0" | version u16 | header length u32 | header (JSON) | members | SHA-256

The header holds the public manifest (versions, fingerprints, board, VTA config, shapes, per-layer
placement and cycles) and the member index (name, offset, size, SHA-256). Members:
- `host/<target>.so` (or `.tar`): TVM host libraries. They hold code only: the weights are
  parameters that the runtime passes in, so a library never carries the model.
- `payload.bin` or, when sealed, `payload.sealed`: the payload frame (magic "JXVBPAY\\0") with the
  integer model package (coding tables and integer graph) and the VTA programs (which embed the
  packed weights). Sealed payloads are encrypted to the board's X25519 key and signed by the
  owner's Ed25519 key (`jaxlic.secure`).
The payload records the SHA-256 of the manifest and of every host library, so for a sealed bundle
the owner's signature covers the whole bundle: nothing outside the payload is trusted until the
payload verifies and those digests match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxlic.errors import BundleError, PackageError
from jaxlic.framing import frame, unframe
from jaxlic.secure.sealing import open_sealed, seal

MAGIC = b"JXVBNDL\0"
PAYLOAD_MAGIC = b"JXVBPAY\0"
VERSION = 1
FORMAT = "jaxlic-vta-bundle"
PLAIN, SEALED = "payload.bin", "payload.sealed"
MANIFEST_DIGEST = "manifest.json"  # the name the payload's digest table gives the manifest


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def _canonical(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Payload:
    """The secret part of a bundle: the integer model package and the VTA programs."""

    package: bytes
    programs: dict[str, bytes]
    digests: dict[str, str] = field(default_factory=dict)  # member name -> SHA-256 of what is outside

    def to_bytes(self) -> bytes:
        """The framed payload."""
        names = sorted(self.programs)
        header = {"package": len(self.package), "programs": [[n, len(self.programs[n])] for n in names],
                  "digests": self.digests}
        body = self.package + b"".join(self.programs[n] for n in names)
        return frame(PAYLOAD_MAGIC, VERSION, json.dumps(header, sort_keys=True).encode(), body)

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "Payload":
        """Parse a framed payload; BundleError when it is not one."""
        try:
            raw, body = unframe(data, PAYLOAD_MAGIC, VERSION, name, "bundle payload")
            header = json.loads(raw)
            offset = int(header["package"])
            package, programs = body[:offset], {}
            for entry_name, size in header["programs"]:
                programs[str(entry_name)] = body[offset:offset + int(size)]
                offset += int(size)
            digests = {str(k): str(v) for k, v in header["digests"].items()}
        except PackageError as exc:
            raise BundleError(str(exc)) from None
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise BundleError(f"{name}: malformed bundle payload header ({exc!r})") from None
        if offset != len(body) or len(package) != int(header["package"]):
            raise BundleError(f"{name}: the bundle payload's sizes do not add up (corrupted)")
        return cls(package, programs, digests)


@dataclass
class Bundle:
    """A read bundle: manifest, host libraries and the (possibly sealed) payload bytes."""

    manifest: dict[str, Any]
    libraries: dict[str, bytes]
    payload_blob: bytes
    name: str = "<bundle>"

    @property
    def sealed(self) -> bool:
        return bool(self.manifest.get("sealed"))

    def open_payload(self, key=None, owner=None) -> Payload:
        """Verify and (for sealed bundles) decrypt the payload in memory, then check that the
        manifest and host libraries are the ones it was built with."""
        if self.sealed:
            if key is None or owner is None:
                raise BundleError(f"{self.name} is sealed: give the board's private key and the owner's public key")
            blob = open_sealed(self.payload_blob, key, owner).payload
        else:
            if key is not None:
                raise BundleError(f"{self.name} is not sealed; it needs no key (was a sealed bundle replaced?)")
            blob = self.payload_blob
        payload = Payload.from_bytes(blob, self.name)
        outside = {MANIFEST_DIGEST: sha256(_canonical(self.manifest)),
                   **{name: sha256(data) for name, data in self.libraries.items()}}
        if payload.digests != outside:
            changed = sorted(k for k in outside.keys() | payload.digests.keys()
                             if outside.get(k) != payload.digests.get(k))
            raise BundleError(f"{self.name}: {', '.join(changed)} differ from what the payload was built with "
                              "(tampered or mixed bundles)")
        return payload


def write_bundle(path: str | Path, manifest: dict, libraries: dict[str, bytes], payload: Payload,
                 seal_to=None, owner_key=None) -> Path:
    """Write a bundle atomically; sealed when both the recipient's public key and the owner's
    private key are given."""
    from jaxlic.images import atomic_path

    if (seal_to is None) != (owner_key is None):
        raise BundleError("sealing needs both the board's public key (--seal-to) and the owner's key (--owner-key)")
    manifest = {**manifest, "format": FORMAT, "version": VERSION, "sealed": seal_to is not None}
    payload.digests = {MANIFEST_DIGEST: sha256(_canonical(manifest)),
                       **{name: sha256(data) for name, data in libraries.items()}}
    blob = payload.to_bytes()
    if seal_to is not None:
        blob = seal(blob, [seal_to], owner_key, {"bundle": manifest.get("name", ""), "board": manifest.get("board", "")})
    members = [*sorted(libraries.items()), (SEALED if seal_to is not None else PLAIN, blob)]
    index, offset = [], 0
    for name, data in members:
        index.append({"name": name, "offset": offset, "nbytes": len(data), "sha256": sha256(data)})
        offset += len(data)
    header = json.dumps({"manifest": manifest, "members": index}, sort_keys=True).encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(frame(MAGIC, VERSION, header, b"".join(data for _, data in members)))
    return Path(path)


def read_bundle(path: str | Path) -> Bundle:
    """Read and check a bundle file; BundleError when it is not one, is corrupt or foreign."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc.strerror}") from None
    try:
        raw, body = unframe(data, MAGIC, VERSION, name, "jaxlic VTA bundle")
    except PackageError as exc:
        raise BundleError(str(exc)) from None
    try:
        header = json.loads(raw)
        manifest, members = header["manifest"], {}
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{name}: not a {FORMAT} (its manifest names {manifest.get('format')!r})")
        end = 0
        for entry in header["members"]:
            start, size = int(entry["offset"]), int(entry["nbytes"])
            if start != end or size < 0:
                raise BundleError(f"{name}: member table is inconsistent (corrupted bundle)")
            member = body[start:start + size]
            if sha256(member) != entry["sha256"]:
                raise BundleError(f"{name}: member {entry['name']} fails its SHA-256 (corrupted bundle)")
            members[str(entry["name"])] = member
            end = start + size
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{name}: malformed bundle header ({exc!r})") from None
    if end != len(body):
        raise BundleError(f"{name}: {len(body) - end} bytes after the last member (corrupted bundle)")
    payload_name = SEALED if manifest.get("sealed") else PLAIN
    if payload_name not in members:
        raise BundleError(f"{name}: no {payload_name} member")
    blob = members.pop(payload_name)
    libraries = {k: v for k, v in members.items() if k.startswith("host/")}
    if len(libraries) != len(members):
        raise BundleError(f"{name}: unknown members {sorted(set(members) - set(libraries))}")
    return Bundle(manifest, libraries, blob, name)
