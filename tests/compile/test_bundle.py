"""Bundle files: round trips, sealing to a board and an owner, tampering, foreign files."""

import hashlib
import json

import numpy as np
import pytest

from compile.bundle import MAGIC, Payload, read_bundle, write_bundle
from jaxlic.errors import BundleError, KeyMismatchError, SealError
from jaxlic.framing import frame
from jaxlic.secure.keys import generate_key, public_key_of

BOARD, OTHER_BOARD = generate_key("x25519"), generate_key("x25519")
OWNER, OTHER_OWNER = generate_key("ed25519"), generate_key("ed25519")
MANIFEST = {"name": "test", "board": "sim", "resolution": [32, 16]}
LIBS = {"host/x86_64.so": b"\x7fELF library code"}


def _payload() -> Payload:
    return Payload(b"package bytes" * 10, {"g_s_0": b"program 0", "g_s_2": b"program 1"})


@pytest.fixture
def sealed(tmp_path):
    return write_bundle(tmp_path / "b.jxvb", MANIFEST, LIBS, _payload(), public_key_of(BOARD), OWNER)


def test_plain_round_trip(tmp_path):
    path = write_bundle(tmp_path / "b.jxvb", MANIFEST, LIBS, _payload())
    bundle = read_bundle(path)
    assert not bundle.sealed and bundle.libraries == LIBS and bundle.manifest["board"] == "sim"
    payload = bundle.open_payload()
    assert payload.package == _payload().package and payload.programs == _payload().programs


def test_sealed_opens_only_for_its_board_and_owner(sealed):
    bundle = read_bundle(sealed)
    assert bundle.sealed and _payload().package not in sealed.read_bytes()
    assert bundle.open_payload(BOARD, public_key_of(OWNER)).programs == _payload().programs
    with pytest.raises(KeyMismatchError):
        bundle.open_payload(OTHER_BOARD, public_key_of(OWNER))
    with pytest.raises(SealError):
        bundle.open_payload(BOARD, public_key_of(OTHER_OWNER))
    with pytest.raises(BundleError, match="sealed"):
        bundle.open_payload()


def test_a_plain_bundle_is_refused_when_keys_are_given(tmp_path):
    bundle = read_bundle(write_bundle(tmp_path / "b.jxvb", MANIFEST, LIBS, _payload()))
    with pytest.raises(BundleError, match="not sealed"):
        bundle.open_payload(BOARD, public_key_of(OWNER))


def test_one_key_without_the_other_is_refused(tmp_path):
    with pytest.raises(BundleError, match="both"):
        write_bundle(tmp_path / "b.jxvb", MANIFEST, LIBS, _payload(), public_key_of(BOARD), None)
    assert not (tmp_path / "b.jxvb").exists()


def test_100_tampered_copies_are_refused(sealed, tmp_path):
    data = sealed.read_bytes()
    rng = np.random.default_rng(0)
    for i, position in enumerate(rng.choice(len(data), 100, replace=False)):
        copy = bytearray(data)
        copy[position] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"t{i}.jxvb"
        path.write_bytes(bytes(copy))
        with pytest.raises((BundleError, SealError, KeyMismatchError)):
            read_bundle(path).open_payload(BOARD, public_key_of(OWNER))


def _reframed(data: bytes, edit) -> bytes:
    """A bundle whose header was edited and whose outer checksum was recomputed (a deliberate forger)."""
    header_len = int.from_bytes(data[10:14], "little")
    header = json.loads(data[14:14 + header_len])
    body = data[14 + header_len:-32]
    header, body = edit(header, body)
    return frame(MAGIC, 1, json.dumps(header).encode(), body)


def test_a_forged_manifest_or_library_is_refused_even_with_valid_checksums(sealed, tmp_path):
    data = sealed.read_bytes()

    def board(header, body):
        header["manifest"]["board"] = "zcu104"
        return header, body

    def library(header, body):
        lib = header["members"][0]
        new = b"\x7fELF evil code!!!"
        lib["nbytes"], lib["sha256"] = len(new), hashlib.sha256(new).hexdigest()
        rest = body[len(LIBS["host/x86_64.so"]):]
        header["members"][1]["offset"] = len(new)
        return header, new + rest

    for edit in (board, library):
        path = tmp_path / f"{edit.__name__}.jxvb"
        path.write_bytes(_reframed(data, edit))
        with pytest.raises(BundleError, match="differ"):
            read_bundle(path).open_payload(BOARD, public_key_of(OWNER))


def test_foreign_truncated_and_missing_files_are_bundle_errors(sealed, tmp_path):
    cases = {"foreign": b"PK\x03\x04 a zip file, not a bundle" * 4, "truncated": sealed.read_bytes()[:-100],
             "empty": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BundleError):
            read_bundle(tmp_path / name)
    with pytest.raises(BundleError, match="cannot read"):
        read_bundle(tmp_path / "missing.jxvb")
