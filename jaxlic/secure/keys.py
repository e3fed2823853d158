"""Key pairs for sealing: X25519 (recipients) and Ed25519 (owners), as PEM files.

Private keys are written atomically and created with mode 0600 (never widened and then
narrowed), optionally encrypted with a passphrase; they are never printed or logged.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from jaxlic.errors import KeyMismatchError, SecurityError
from jaxlic.images import atomic_path

KeyKind = Literal["x25519", "ed25519"]
PrivateKey = X25519PrivateKey | Ed25519PrivateKey
PublicKey = X25519PublicKey | Ed25519PublicKey

_PRIVATE_TYPES: dict[str, type] = {"x25519": X25519PrivateKey, "ed25519": Ed25519PrivateKey}
_PUBLIC_TYPES: dict[str, type] = {"x25519": X25519PublicKey, "ed25519": Ed25519PublicKey}
_FINGERPRINT_DOMAIN = b"jaxlic key fingerprint v1\x00"
PRIVATE_MODE = 0o600


def generate_key(kind: KeyKind) -> PrivateKey:
    """A fresh private key: "x25519" for a recipient, "ed25519" for an owner (signer)."""
    if kind not in _PRIVATE_TYPES:
        raise KeyMismatchError(f"unknown key kind {kind!r}; use 'x25519' or 'ed25519'")
    return _PRIVATE_TYPES[kind].generate()


def key_kind(key: PrivateKey | PublicKey) -> KeyKind:
    """"x25519" or "ed25519" for a private or public key; KeyMismatchError for anything else."""
    for kind in ("x25519", "ed25519"):
        if isinstance(key, (_PRIVATE_TYPES[kind], _PUBLIC_TYPES[kind])):
            return kind
    raise KeyMismatchError(f"expected an X25519 or Ed25519 key, got {type(key).__name__}")


def public_key_of(key: PrivateKey | PublicKey) -> PublicKey:
    """The public half of a key (the key itself when it is already public)."""
    key_kind(key)
    return key.public_key() if isinstance(key, (X25519PrivateKey, Ed25519PrivateKey)) else key


def fingerprint(key: PrivateKey | PublicKey) -> str:
    """A 128-bit key id (32 hex digits) of the public key, domain-separated by kind; safe to print."""
    kind = key_kind(key)
    raw = public_key_of(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(_FINGERPRINT_DOMAIN + kind.encode() + b"\x00" + raw).hexdigest()[:32]


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o644, overwrite: bool = True) -> Path:
    """Write `data` to `path` via a temp file in the same folder and os.replace: never partial.

    The temp file is created with `mode` (minus the umask) from the start, so a private file
    is never readable by others, not even for an instant.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise SecurityError(f"{path} already exists; refusing to overwrite it (use --force to replace it)")
    try:
        with atomic_path(path, mode) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise SecurityError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def save_private_key(
    key: PrivateKey, path: str | os.PathLike, passphrase: bytes | None = None, overwrite: bool = False
) -> Path:
    """Write a private key as PKCS#8 PEM with mode 0600, encrypted when a passphrase is given."""
    if not isinstance(key, (X25519PrivateKey, Ed25519PrivateKey)):
        raise KeyMismatchError(f"expected an X25519 or Ed25519 private key, got {type(key).__name__}")
    if passphrase is not None and not passphrase:
        raise SecurityError("an empty passphrase protects nothing; give a non-empty one or none")
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return write_atomic(path, pem, mode=PRIVATE_MODE, overwrite=overwrite)


def save_public_key(key: PrivateKey | PublicKey, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the public half of a key as SubjectPublicKeyInfo PEM (world-readable is fine)."""
    pem = public_key_of(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return write_atomic(path, pem, overwrite=overwrite)


def _read_key_file(path: Path, private: bool = False) -> bytes:
    try:
        with open(path, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            # Like ssh: a private key others can read must be treated as already leaked.
            if private and os.name == "posix" and mode & 0o077:
                raise SecurityError(
                    f"{path} is readable by other users (mode {mode:04o}); run `chmod 600 {path}`"
                )
            return f.read()
    except OSError as exc:
        raise SecurityError(f"cannot read key file {path}: {exc.strerror}") from None


def _check_kind(key: PrivateKey | PublicKey, kind: KeyKind | None, path: Path) -> None:
    if kind is not None and key_kind(key) != kind:
        raise KeyMismatchError(f"{path} holds an {key_kind(key)} key, but an {kind} key is needed here")


def load_private_key(
    path: str | os.PathLike, passphrase: bytes | None = None, kind: KeyKind | None = None
) -> PrivateKey:
    """Read a PEM private key; refuses files others can read, wrong passphrases and wrong kinds."""
    path = Path(path)
    data = _read_key_file(path, private=True)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        hint = "is encrypted: give its passphrase" if not passphrase else "is not encrypted: give no passphrase"
        raise SecurityError(f"private key {path} {hint}") from None
    except ValueError:
        # Same message for a wrong passphrase and a damaged file: OpenSSL cannot tell them apart.
        raise SecurityError(f"cannot load private key {path}: wrong passphrase or not a PEM private key") from None
    except UnsupportedAlgorithm:
        raise KeyMismatchError(f"{path} holds a private key of an unsupported kind") from None
    key_kind(key)
    _check_kind(key, kind, path)
    return key


def load_public_key(path: str | os.PathLike, kind: KeyKind | None = None) -> PublicKey:
    """Read a PEM public key, checking its kind when one is asked for."""
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(_read_key_file(path))
    except ValueError:
        raise SecurityError(f"cannot load public key {path}: not a PEM public key") from None
    except UnsupportedAlgorithm:
        raise KeyMismatchError(f"{path} holds a public key of an unsupported kind") from None
    key_kind(key)
    _check_kind(key, kind, path)
    return key
