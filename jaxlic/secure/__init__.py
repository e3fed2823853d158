"""Security: sealed (encrypted and signed) parameter blobs, keys, and weight watermarks."""

from jaxlic.secure.keys import (
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from jaxlic.secure.sealing import (
    SealedContents,
    open_file,
    open_sealed,
    read_header,
    seal,
    seal_file,
    verify_sealed,
)

__all__ = [
    "SealedContents",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "open_file",
    "open_sealed",
    "read_header",
    "save_private_key",
    "save_public_key",
    "seal",
    "seal_file",
    "verify_sealed",
]
