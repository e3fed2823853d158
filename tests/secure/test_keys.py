"""Key files: round trips, 0600 from creation, passphrases, kinds and fingerprints."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from jaxlic.errors import KeyMismatchError, SecurityError
from jaxlic.secure import keys


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _raw_public(key) -> bytes:
    return keys.public_key_of(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.mark.parametrize("kind", ["x25519", "ed25519"])
def test_round_trip_keeps_the_key_and_its_kind(tmp_path, kind):
    key = keys.generate_key(kind)
    keys.save_private_key(key, tmp_path / "k.key")
    keys.save_public_key(key, tmp_path / "k.pub")
    loaded = keys.load_private_key(tmp_path / "k.key", kind=kind)
    public = keys.load_public_key(tmp_path / "k.pub", kind=kind)
    assert _raw_public(loaded) == _raw_public(key) == _raw_public(public)
    assert keys.fingerprint(loaded) == keys.fingerprint(public) == keys.fingerprint(key)


def test_private_key_is_0600_even_with_a_permissive_umask(tmp_path, monkeypatch):
    created_modes = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        created_modes.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    old = os.umask(0)
    try:
        keys.save_private_key(keys.generate_key("x25519"), tmp_path / "k.key")
    finally:
        os.umask(old)
    assert created_modes == [0o600]  # created private, not narrowed afterwards
    assert _mode(tmp_path / "k.key") == 0o600
    assert os.listdir(tmp_path) == ["k.key"]  # no temp file left behind


def test_refuses_to_overwrite_a_key_unless_asked(tmp_path):
    path = tmp_path / "k.key"
    keys.save_private_key(keys.generate_key("ed25519"), path)
    before = path.read_bytes()
    with pytest.raises(SecurityError, match="already exists"):
        keys.save_private_key(keys.generate_key("ed25519"), path)
    assert path.read_bytes() == before
    keys.save_private_key(keys.generate_key("ed25519"), path, overwrite=True)
    assert path.read_bytes() != before


def test_passphrase_encrypts_the_private_key(tmp_path):
    key = keys.generate_key("ed25519")
    path = keys.save_private_key(key, tmp_path / "k.key", passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert _raw_public(keys.load_private_key(path, b"correct horse")) == _raw_public(key)
    with pytest.raises(SecurityError, match="wrong passphrase"):
        keys.load_private_key(path, b"wrong")
    with pytest.raises(SecurityError, match="is encrypted"):
        keys.load_private_key(path)
    with pytest.raises(SecurityError, match="empty passphrase"):
        keys.save_private_key(key, tmp_path / "other.key", passphrase=b"")


def test_unencrypted_key_with_a_passphrase_is_a_clear_error(tmp_path):
    path = keys.save_private_key(keys.generate_key("x25519"), tmp_path / "k.key")
    with pytest.raises(SecurityError, match="not encrypted"):
        keys.load_private_key(path, b"unexpected")


def test_refuses_a_private_key_others_can_read(tmp_path):
    path = keys.save_private_key(keys.generate_key("x25519"), tmp_path / "k.key")
    path.chmod(0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        keys.load_private_key(path)


def test_wrong_kind_is_a_key_mismatch(tmp_path):
    keys.save_private_key(keys.generate_key("ed25519"), tmp_path / "owner.key")
    keys.save_public_key(keys.generate_key("ed25519"), tmp_path / "owner.pub")
    with pytest.raises(KeyMismatchError, match="x25519 key is needed"):
        keys.load_private_key(tmp_path / "owner.key", kind="x25519")
    with pytest.raises(KeyMismatchError, match="x25519 key is needed"):
        keys.load_public_key(tmp_path / "owner.pub", kind="x25519")
    with pytest.raises(KeyMismatchError):
        keys.generate_key("rsa")


def test_keys_of_other_algorithms_are_refused(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keys.write_atomic(tmp_path / "rsa.key", pem, mode=0o600)
    with pytest.raises(KeyMismatchError, match="RSAPrivateKey"):
        keys.load_private_key(tmp_path / "rsa.key")
    with pytest.raises(KeyMismatchError):
        keys.fingerprint(rsa_key)


def test_unreadable_or_garbage_key_files_are_typed_errors(tmp_path):
    with pytest.raises(SecurityError, match="cannot read"):
        keys.load_public_key(tmp_path / "missing.pub")
    keys.write_atomic(tmp_path / "junk.key", b"-----BEGIN PRIVATE KEY-----\nnope\n", mode=0o600)
    with pytest.raises(SecurityError):
        keys.load_private_key(tmp_path / "junk.key")
    keys.write_atomic(tmp_path / "junk.pub", b"not a key")
    with pytest.raises(SecurityError, match="not a PEM public key"):
        keys.load_public_key(tmp_path / "junk.pub")


def test_fingerprint_is_stable_distinct_and_domain_separated():
    a, b = keys.generate_key("x25519"), keys.generate_key("x25519")
    fp = keys.fingerprint(a)
    assert len(fp) == 32 and int(fp, 16) >= 0
    assert fp == keys.fingerprint(a.public_key())
    assert fp != keys.fingerprint(b)
    # The same 32 raw bytes read as an Ed25519 key get a different id.
    assert keys.fingerprint(Ed25519PublicKey.from_public_bytes(_raw_public(a))) != fp


def test_public_key_file_holds_no_private_material(tmp_path):
    key = keys.generate_key("x25519")
    path = keys.save_public_key(key, tmp_path / "k.pub")
    private_raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert b"PRIVATE" not in path.read_bytes()
    assert private_raw not in path.read_bytes()
    assert private_raw.hex() not in repr(key)  # the library's repr shows no key material either


def test_write_atomic_leaves_nothing_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def boom(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(SecurityError, match="No space left"):
        keys.write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]
