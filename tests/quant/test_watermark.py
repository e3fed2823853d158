"""Quantization-aware watermarking: keys, the decision's false-positive bound, embedding by QAT
through the one train step, verification and tracing from the int8 weights, and bad input."""

import json
import os
import stat

import numpy as np
import pytest

from jaxlic.cli import main
from jaxlic.errors import SecurityError, WatermarkError
from jaxlic.codec import build_tables, compress, decompress, load
from jaxlic.models import model_config
from jaxlic.secure.watermark import (
    CarrierLayout, WatermarkKey, chance_of_at_most, extract, max_errors, read_users, trace,
)

from conftest import WIDTH, image_batch, lively_params

# A key sized for the tiny test model (5,600 carrier weights); the default key needs 7,168.
SIZES = {"owner_bits": 24, "user_bits": 24, "positions_per_bit": 16}
QAW = ["--qat-steps", "45", "--lr", "3e-3", "--strength", "10", "--batch-size", "2", "--crop", "64"]


def test_decision_threshold_bounds_the_false_positive_rate():
    assert max_errors(64) == 13
    assert chance_of_at_most(13, 64) <= 1e-6 < chance_of_at_most(14, 64)
    assert chance_of_at_most(64, 64) == pytest.approx(1.0)
    assert max_errors(8) == -1  # 8 bits cannot reach 1e-6: nothing is ever claimed


def test_key_file_round_trip_is_private_and_never_overwritten(tmp_path):
    key = WatermarkKey.generate(**SIZES)
    path = key.save(tmp_path / "owner.wmkey")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert WatermarkKey.load(path) == key
    with pytest.raises(SecurityError, match="already exists"):
        WatermarkKey.generate().save(path)
    assert WatermarkKey.load(path) == key


@pytest.mark.parametrize("content, message", [
    (b"\x00\xff", "not JSON"), (b"[]", "not a jaxlic watermark key"),
    (json.dumps({"format": "jaxlic-watermark-key", "version": 9}).encode(), "version"),
    (json.dumps({"format": "jaxlic-watermark-key", "version": 1, "secret": "abcd"}).encode(), "malformed|32 bytes"),
])
def test_malformed_key_files_are_refused(tmp_path, content, message):
    (tmp_path / "bad.wmkey").write_bytes(content)
    with pytest.raises(WatermarkError, match=message):
        WatermarkKey.load(tmp_path / "bad.wmkey")


def test_positions_are_distinct_secret_and_reproducible():
    layout = CarrierLayout((("g_s_0", (5, 5, 12, 8)), ("h_s_0", (5, 5, 8, 8))))
    key = WatermarkKey(bytes(32), **SIZES)
    positions, signs = key.carrier_positions(layout)
    assert positions.shape == signs.shape == (48, 16)
    assert len(np.unique(positions)) == positions.size and positions.max() < layout.size
    again, _ = WatermarkKey(bytes(32), **SIZES).carrier_positions(layout)
    other, _ = WatermarkKey(bytes(31) + b"\x01", **SIZES).carrier_positions(layout)
    assert np.array_equal(positions, again) and not np.array_equal(positions, other)
    with pytest.raises(WatermarkError, match="carrier layers hold"):
        WatermarkKey(bytes(32)).carrier_positions(layout)


@pytest.fixture(scope="module")
def float_package(tmp_path_factory):
    config = model_config("bmshj2018-factorized", 3, WIDTH, "simplified")
    package = build_tables(config, lively_params(config))
    path = tmp_path_factory.mktemp("wm") / "float.jxlm"
    package.save(path)
    return path


@pytest.fixture(scope="module")
def marked(float_package, tmp_path_factory):
    """The owner key and two licensee copies: user 5 from the float model, user 9 from user 5's copy
    (a short QAW fine-tune, not training from scratch)."""
    folder = tmp_path_factory.mktemp("marked")
    key_path = WatermarkKey(bytes(range(32)), **SIZES).save(folder / "owner.wmkey")  # fixed: deterministic runs
    assert main(["watermark", "--model", str(float_package), "--key", str(key_path), "--user-id", "5",
                 "--out", str(folder / "alice.jxlm"), *QAW]) == 0
    assert main(["watermark", "--model", str(folder / "alice.jxlm"), "--key", str(key_path), "--user-id", "9",
                 "--out", str(folder / "bob.jxlm"), *QAW]) == 0
    (folder / "users.json").write_text(json.dumps({"alice": 5, "bob": 9, "carol": 200}))
    return folder, key_path


def test_qaw_embeds_the_message_in_the_int8_weights(marked):
    folder, key_path = marked
    key = WatermarkKey.load(key_path)
    for name, user in (("alice", 5), ("bob", 9)):
        package = load(folder / f"{name}.jxlm")
        result = extract(package, key)
        assert result.bit_error_rate(user) == 0.0 and result.is_owner
        assert result.false_positive_probability <= 1e-6
        pixels = (image_batch(1, 48)[0] * 255).round().astype(np.uint8)
        assert decompress(package, compress(package, pixels)).shape == pixels.shape  # still a working codec


def test_verify_and_trace_commands(marked, float_package, tmp_path, capsys):
    folder, key_path = marked
    users = str(folder / "users.json")
    assert main(["verify", "--model", str(folder / "alice.jxlm"), "--key", str(key_path)]) == 0
    assert "watermark FOUND" in capsys.readouterr().out
    for name in ("alice", "bob"):
        assert main(["trace", "--model", str(folder / f"{name}.jxlm"), "--key", str(key_path), "--users", users]) == 0
        assert f"the copy of {name}" in capsys.readouterr().out
    # An integer package of the same model that was never marked: not the owner's, no user.
    assert main(["quantize", "--model", str(float_package), "--out", str(tmp_path / "plain.jxlm"),
                 "--weight-rounding", "nearest"]) == 0
    capsys.readouterr()
    assert main(["verify", "--model", str(tmp_path / "plain.jxlm"), "--key", str(key_path)]) == 1
    assert "not found" in capsys.readouterr().out
    assert main(["trace", "--model", str(tmp_path / "plain.jxlm"), "--key", str(key_path), "--users", users]) == 1
    assert "traced to no user" in capsys.readouterr().out


def test_a_wrong_key_finds_nothing(marked):
    folder, _ = marked
    result = extract(load(folder / "alice.jxlm"), WatermarkKey.generate(**SIZES))
    assert not result.is_owner
    assert trace(load(folder / "alice.jxlm"), WatermarkKey.generate(**SIZES), {"alice": 5}).user is None


def test_bad_input_is_refused_with_typed_errors(marked, float_package, tmp_path, capsys):
    folder, key_path = marked
    with pytest.raises(WatermarkError, match="no integer weights"):
        extract(load(float_package), WatermarkKey.load(key_path))
    for content in ("[1, 2]", '{"a": 0}', '{"a": 3, "b": 3}', "{"):
        (tmp_path / "users.json").write_text(content)
        with pytest.raises(WatermarkError):
            read_users(tmp_path / "users.json")
    out = tmp_path / "never.jxlm"
    # A user id the key cannot carry fails before training, and writes nothing.
    assert main(["watermark", "--model", str(float_package), "--key", str(key_path), "--user-id", str(1 << 24),
                 "--out", str(out), *QAW]) == 2
    assert "does not fit" in capsys.readouterr().err and not out.exists()
    # The default key needs more carrier weights than the tiny model has.
    assert main(["keygen", "watermark", str(tmp_path / "big")]) == 0
    assert stat.S_IMODE(os.stat(tmp_path / "big.wmkey").st_mode) == 0o600
    assert main(["keygen", "watermark", str(tmp_path / "big")]) == 2  # never overwritten
    assert main(["watermark", "--model", str(float_package), "--key", str(tmp_path / "big.wmkey"),
                 "--out", str(out), *QAW]) == 2
    assert "carrier layers hold" in capsys.readouterr().err and not out.exists()
    # A sealing key where a watermark key belongs.
    assert main(["keygen", "owner", str(tmp_path / "owner")]) == 0
    assert main(["verify", "--model", str(folder / "alice.jxlm"), "--key", str(tmp_path / "owner.key")]) == 2
    assert "not a jaxlic watermark key" in capsys.readouterr().err
