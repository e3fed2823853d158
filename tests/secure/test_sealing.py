"""Sealed blobs: round trips, the byte layout, and every way a bad blob or key must fail."""

from __future__ import annotations

import base64
import json
import logging
import os
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlic.cli import main
from jaxlic.errors import KeyMismatchError, SealError, SecurityError
from jaxlic.secure import keys, sealing
from jaxlic.secure.sealing import open_file, open_sealed, read_header, seal, seal_file, verify_sealed

OWNER = keys.generate_key("ed25519")
ALICE, BOB, EVE = (keys.generate_key("x25519") for _ in range(3))
PAYLOAD = b"parameters \x00\x01\x02" * 3
META = {"kind": "params", "model": "a" * 16}


def _sealed(payload: bytes = PAYLOAD, recipients=(ALICE,), metadata=META) -> bytes:
    return seal(payload, [k.public_key() for k in recipients], OWNER, metadata)


def _resign(body: bytes) -> bytes:
    """What only the real owner could do: sign a modified body."""
    return body + OWNER.sign(body)


def _assert_refused(blob: bytes, error: type[Exception] = SealError) -> None:
    with pytest.raises(error):
        open_sealed(blob, ALICE, OWNER.public_key())


@pytest.mark.parametrize("recipients", [(ALICE,), (ALICE, BOB, EVE)])
def test_round_trip_for_every_recipient(recipients):
    blob = _sealed(recipients=recipients)
    for key in recipients:
        contents = open_sealed(blob, key, OWNER.public_key())
        assert contents.payload == PAYLOAD and contents.metadata == META


@settings(max_examples=25, deadline=None)
@given(
    payload=st.binary(max_size=4096),
    metadata=st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.booleans(),
                             max_size=4),  # metadata integers are limited to 64 bits
)
def test_round_trip_any_payload_and_metadata(payload, metadata):
    contents = open_sealed(_sealed(payload, metadata=metadata), ALICE, OWNER.public_key())
    assert contents.payload == payload and contents.metadata == metadata


def test_layout_matches_the_documented_format():
    blob = _sealed()
    magic, version, header_len = struct.unpack_from(">8sHI", blob)
    assert (magic, version) == (b"\x89JXLSEAL", 1)
    header = json.loads(blob[14 : 14 + header_len])
    (ct_len,) = struct.unpack_from(">Q", blob, 14 + header_len)
    assert ct_len == len(PAYLOAD) + 16
    assert len(blob) == 14 + header_len + 8 + ct_len + 64 == len(PAYLOAD) + header_len + sealing.FIXED_OVERHEAD
    assert header["owner"] == keys.fingerprint(OWNER)
    assert [r["kid"] for r in header["recipients"]] == [keys.fingerprint(ALICE)]
    assert len(base64.b64decode(header["recipients"][0]["wrapped_key"])) == 80
    assert len(base64.b64decode(header["nonce"])) == 12
    assert PAYLOAD not in blob
    OWNER.public_key().verify(blob[-64:], blob[:-64])


def test_sealing_is_randomised():
    assert _sealed() != _sealed()


def test_read_header_shows_public_fields_without_keys():
    header = read_header(_sealed(recipients=(ALICE, BOB)))
    assert header["recipients"] == [keys.fingerprint(ALICE), keys.fingerprint(BOB)]
    assert header["owner"] == keys.fingerprint(OWNER)
    assert header["metadata"] == META and header["payload_size"] == len(PAYLOAD)
    assert verify_sealed(_sealed(), OWNER.public_key())["metadata"] == META


def test_every_flipped_byte_is_refused_before_any_decryption():
    blob = _sealed()
    for mask in (0x01, 0x80, 0xFF):
        for i in range(len(blob)):
            tampered = bytearray(blob)
            tampered[i] ^= mask
            _assert_refused(bytes(tampered))
            # Signature first: even a stranger's key gets SealError, not "not addressed to you".
            with pytest.raises(SealError):
                open_sealed(bytes(tampered), EVE, OWNER.public_key())


def test_every_truncation_and_any_appended_byte_is_refused():
    blob = _sealed()
    for length in range(len(blob)):
        _assert_refused(blob[:length])
        with pytest.raises(SealError):
            read_header(blob[:length])
    _assert_refused(blob + b"\x00")
    with pytest.raises(SealError, match="truncated"):
        read_header(blob[:-1])


def test_blob_for_another_recipient_is_a_key_mismatch():
    blob = _sealed(recipients=(BOB,))
    with pytest.raises(KeyMismatchError, match=keys.fingerprint(BOB)):
        open_sealed(blob, ALICE, OWNER.public_key())


def test_wrong_owner_key_is_a_bad_signature():
    with pytest.raises(SealError, match=f"claims owner {keys.fingerprint(OWNER)}"):
        open_sealed(_sealed(), ALICE, keys.generate_key("ed25519").public_key())


def test_a_blob_resigned_by_another_owner_is_refused():
    mallory = keys.generate_key("ed25519")
    body = _sealed()[:-64]
    with pytest.raises(SealError, match="signature"):
        open_sealed(body + mallory.sign(body), ALICE, OWNER.public_key())


def test_keys_of_the_wrong_kind_are_key_mismatches():
    blob = _sealed()
    with pytest.raises(KeyMismatchError):
        open_sealed(blob, OWNER, OWNER.public_key())
    with pytest.raises(KeyMismatchError):
        open_sealed(blob, ALICE, ALICE.public_key())
    with pytest.raises(KeyMismatchError):
        seal(PAYLOAD, [OWNER.public_key()], OWNER)
    with pytest.raises(KeyMismatchError):
        seal(PAYLOAD, [ALICE.public_key()], ALICE)
    with pytest.raises(KeyMismatchError, match="at least one recipient"):
        seal(PAYLOAD, [], OWNER)


def test_inner_layers_hold_even_against_a_signed_blob():
    """Decryption is authenticated on its own: an owner-signed but altered blob still fails."""
    blob = _sealed()
    header_len = struct.unpack_from(">I", blob, 10)[0]
    body = bytearray(blob[:-64])
    body[-1] ^= 1  # last ciphertext (tag) byte
    _assert_refused(_resign(bytes(body)))
    body = blob[:-64].replace(b'"params"', b'"paramz"')  # header is the payload's associated data
    assert len(body) == len(blob) - 64
    _assert_refused(_resign(body))
    header = json.loads(blob[14 : 14 + header_len])
    wrapped = bytearray(base64.b64decode(header["recipients"][0]["wrapped_key"]))
    wrapped[40] ^= 1
    body = blob[:-64].replace(header["recipients"][0]["wrapped_key"].encode(), base64.b64encode(wrapped))
    _assert_refused(_resign(body))


@pytest.mark.parametrize(
    "header",
    [
        b"[]",
        b'{"owner":"x"}',
        b'{"metadata":{},"metadata":{},"nonce":"","owner":"","recipients":[]}',
        b"\xff\xfe",
        b'{"metadata":{"a":NaN},"nonce":"AAAAAAAAAAAAAAAA","owner":"' + b"0" * 32 + b'","recipients":[]}',
    ],
)
def test_malformed_headers_are_seal_errors_even_when_signed(header):
    body = struct.pack(">8sHI", sealing.MAGIC, 1, len(header)) + header + struct.pack(">Q", 16) + bytes(16)
    _assert_refused(_resign(body))


def _header_with_metadata(metadata: bytes) -> bytes:
    blob = _sealed()
    header_len = struct.unpack_from(">I", blob, 10)[0]
    header = blob[14 : 14 + header_len].replace(json.dumps(META, separators=(",", ":")).encode(), metadata)
    assert header != blob[14 : 14 + header_len]
    return _resign(struct.pack(">8sHI", sealing.MAGIC, 1, len(header)) + header + blob[14 + header_len : -64])


@pytest.mark.parametrize("metadata", [
    b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError in json before the fix
    b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",  # parses, but deeper than anything metadata needs
    b'{"a":' + b"9" * 5000 + b"}",  # beyond Python's int-from-text limit: ValueError before the fix
    b'{"a":' + b"9" * 30 + b"}",
    b'{"a":1e999}',  # parses as infinity
])
def test_deep_or_huge_metadata_is_a_seal_error_even_when_signed(metadata):
    blob = _header_with_metadata(metadata)
    for read in (read_header, lambda b: verify_sealed(b, OWNER.public_key())):
        with pytest.raises(SealError):
            read(blob)
    _assert_refused(blob)


def test_metadata_that_readers_would_refuse_is_refused_when_sealing():
    deep: dict = {}
    for _ in range(40):
        deep = {"a": deep}
    for metadata in (deep, {"n": 2**70}, {"x": float("inf")}):
        with pytest.raises(SealError):
            _sealed(metadata=metadata)


def test_cli_never_overwrites_inputs_or_keys(tmp_path, capsys):
    for name in ("owner", "alice"):
        assert main(["keygen", "owner" if name == "owner" else "recipient", str(tmp_path / name)]) == 0
    (tmp_path / "m.bin").write_bytes(PAYLOAD)
    seal_args = ["--owner-key", str(tmp_path / "owner.key"), "--to", str(tmp_path / "alice.pub")]
    alice_key = (tmp_path / "alice.key").read_bytes()
    assert main(["seal", str(tmp_path / "m.bin"), "-o", str(tmp_path / "alice.key"), "--force", *seal_args]) == 2
    assert main(["seal", str(tmp_path / "m.bin"), "-o", str(tmp_path / "m.bin"), "--force", *seal_args]) == 2
    assert (tmp_path / "alice.key").read_bytes() == alice_key and (tmp_path / "m.bin").read_bytes() == PAYLOAD
    assert main(["seal", str(tmp_path / "m.bin"), "-o", str(tmp_path / "s"), *seal_args]) == 0
    sealed = (tmp_path / "s").read_bytes()
    open_args = ["--key", str(tmp_path / "alice.key"), "--owner", str(tmp_path / "owner.pub")]
    assert main(["open", str(tmp_path / "s"), "-o", str(tmp_path / "s"), "--force", *open_args]) == 2
    assert (tmp_path / "s").read_bytes() == sealed
    assert main(["open", str(tmp_path / "s"), "-o", str(tmp_path / "out"), *open_args]) == 0
    assert main(["open", str(tmp_path / "s"), "-o", str(tmp_path / "out"), *open_args]) == 2  # exists
    assert main(["open", str(tmp_path / "s"), "-o", str(tmp_path / "out"), "--force", *open_args]) == 0
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and all(line.startswith("jaxlic: error: ") for line in errors)


def test_unknown_magic_and_version_are_named():
    blob = _sealed()
    with pytest.raises(SealError, match="magic"):
        read_header(b"PK\x03\x04" + blob[4:])
    with pytest.raises(SealError, match="version 2"):
        read_header(blob[:8] + b"\x00\x02" + blob[10:])


def test_non_json_metadata_is_refused():
    with pytest.raises(SealError, match="plain JSON"):
        seal(PAYLOAD, [ALICE.public_key()], OWNER, {"x": object()})
    for changed_by_json in ({1: "a"}, {"t": (1, 2)}):
        with pytest.raises(SealError, match="read back unchanged"):
            seal(PAYLOAD, [ALICE.public_key()], OWNER, changed_by_json)


def test_files_are_written_atomically_and_only_after_verification(tmp_path):
    src, sealed, out = tmp_path / "p.bin", tmp_path / "p.sealed", tmp_path / "out.bin"
    src.write_bytes(PAYLOAD)
    seal_file(src, sealed, [ALICE.public_key()], OWNER, META)
    assert open_file(sealed, out, ALICE, OWNER.public_key()).metadata == META
    assert out.read_bytes() == PAYLOAD and os.stat(out).st_mode & 0o777 == 0o600
    blob = bytearray(sealed.read_bytes())
    blob[len(blob) // 2] ^= 1
    sealed.write_bytes(blob)
    out.write_bytes(b"previous")
    for target in (out, tmp_path / "fresh.bin"):
        with pytest.raises(SealError):
            open_file(sealed, target, ALICE, OWNER.public_key())
    assert out.read_bytes() == b"previous" and not (tmp_path / "fresh.bin").exists()
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "p.bin", "p.sealed"]
    with pytest.raises(SealError, match="cannot read"):
        open_file(tmp_path / "missing", out, ALICE, OWNER.public_key())


# --- command line ---------------------------------------------------------------------------


def _secrets_of(path, passphrase: bytes | None = None) -> list[str]:
    """Every textual form of a private key that must never be printed."""
    key = keys.load_private_key(path, passphrase)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pem_body = "".join(path.read_text().splitlines()[1:-1])
    return [raw.hex(), base64.b64encode(raw).decode(), pem_body[:40], pem_body[-40:]]


def test_cli_end_to_end_never_shows_private_keys(tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("JAXLIC_TEST_PASS", "s3cret passphrase")
    d = tmp_path
    assert main(["keygen", "owner", str(d / "owner"), "--passphrase-env", "JAXLIC_TEST_PASS"]) == 0
    monkeypatch.delenv("JAXLIC_TEST_PASS")
    assert main(["keygen", "recipient", str(d / "alice")]) == 0
    assert main(["keygen", "recipient", str(d / "bob")]) == 0
    assert all(os.stat(d / f"{n}.key").st_mode & 0o777 == 0o600 for n in ("owner", "alice", "bob"))
    (d / "params.bin").write_bytes(PAYLOAD)
    assert main(["keygen", "recipient", str(d / "alice")]) == 2  # no silent overwrite
    assert main(["seal", str(d / "params.bin"), "-o", str(d / "params.sealed"), "--owner-key", str(d / "owner.key"),
                 "--to", str(d / "alice.pub"), "--to", str(d / "bob.pub"), "--meta", "kind=params"]) == 2  # no pass
    monkeypatch.setenv("JAXLIC_TEST_PASS", "s3cret passphrase")
    assert main(["seal", str(d / "params.bin"), "-o", str(d / "params.sealed"), "--owner-key", str(d / "owner.key"),
                 "--to", str(d / "alice.pub"), "--to", str(d / "bob.pub"), "--meta", "kind=params",
                 "--passphrase-env", "JAXLIC_TEST_PASS"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(d / "params.sealed"), "--owner", str(d / "owner.pub")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["signature"] == "valid" and shown["metadata"] == {"kind": "params"}
    assert shown["recipients"] == [keys.fingerprint(keys.load_public_key(d / f"{n}.pub")) for n in ("alice", "bob")]
    for name in ("alice", "bob"):
        out = d / f"{name}.bin"
        assert main(["open", str(d / "params.sealed"), "-o", str(out), "--key", str(d / f"{name}.key"),
                     "--owner", str(d / "owner.pub")]) == 0
        assert out.read_bytes() == PAYLOAD
    # Failures: a key that is not a recipient, the owner's key in the wrong role, a tampered blob.
    assert main(["keygen", "recipient", str(d / "eve")]) == 0
    assert main(["open", str(d / "params.sealed"), "-o", str(d / "eve.bin"), "--key", str(d / "eve.key"),
                 "--owner", str(d / "owner.pub")]) == 2
    assert main(["open", str(d / "params.sealed"), "-o", str(d / "eve.bin"), "--key", str(d / "alice.key"),
                 "--owner", str(d / "alice.pub")]) == 2
    tampered = bytearray((d / "params.sealed").read_bytes())
    tampered[-100] ^= 1
    (d / "tampered.sealed").write_bytes(tampered)
    assert main(["open", str(d / "tampered.sealed"), "-o", str(d / "t.bin"), "--key", str(d / "alice.key"),
                 "--owner", str(d / "owner.pub")]) == 2
    assert main(["inspect", str(d / "tampered.sealed"), "--owner", str(d / "owner.pub")]) == 2
    assert not (d / "eve.bin").exists() and not (d / "t.bin").exists()
    captured = capsys.readouterr()
    assert "jaxlic: error:" in captured.err and "not for key" in captured.err
    logged = captured.out + captured.err + caplog.text
    secrets = _secrets_of(d / "owner.key", b"s3cret passphrase")
    secrets += [s for name in ("alice", "bob", "eve") for s in _secrets_of(d / f"{name}.key")]
    assert all(secret not in logged for secret in secrets)
    assert "s3cret" not in logged


def test_cli_errors_for_missing_files_are_typed(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.sealed")]) == 2
    assert main(["open", str(tmp_path / "x"), "-o", str(tmp_path / "y"), "--key", str(tmp_path / "no.key"),
                 "--owner", str(tmp_path / "no.pub")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_seal_refuses_an_owner_key_as_recipient(tmp_path):
    keys.save_private_key(OWNER, tmp_path / "owner.key")
    keys.save_public_key(OWNER, tmp_path / "owner.pub")
    (tmp_path / "p.bin").write_bytes(PAYLOAD)
    assert main(["seal", str(tmp_path / "p.bin"), "-o", str(tmp_path / "p.sealed"), "--owner-key",
                 str(tmp_path / "owner.key"), "--to", str(tmp_path / "owner.pub")]) == 2
    assert not (tmp_path / "p.sealed").exists()
    with pytest.raises(SecurityError):
        seal_file(tmp_path / "missing", tmp_path / "p.sealed", [ALICE.public_key()], OWNER)
