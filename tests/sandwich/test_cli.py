"""`jaxlic sandwich train | encode | decode` end to end, and its errors."""

import numpy as np
import pytest
from PIL import Image

from jaxlic.cli import main
from jaxlic.sandwich.io import read_png16, write_png16


@pytest.fixture(scope="module")
def trained(tmp_path_factory, untrained):
    path = tmp_path_factory.mktemp("model") / "half.jxls"
    untrained["half-res"].save(path)
    return path


@pytest.mark.slow
def test_train_writes_a_package_that_encodes(tmp_path):
    assert main(["sandwich", "train", "--scenario", "gray", "--steps", "2", "--batch-size", "2", "--crop", "32",
                 "--features", "4", "8", "--warmup", "0", "--learn-tables", "--out", str(tmp_path)]) == 0
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(tmp_path / "in.png")
    assert main(["sandwich", "encode", "--model", str(tmp_path / "sandwich.jxls"), str(tmp_path / "in.png"),
                 str(tmp_path / "c.jpg")]) == 0
    assert Image.open(tmp_path / "c.jpg").mode == "L"


def test_encode_decode(tmp_path, trained, capsys):
    image = np.random.default_rng(0).integers(0, 256, (21, 30, 3)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    assert main(["sandwich", "encode", "--model", str(trained), "--quality", "80",
                 str(tmp_path / "in.png"), str(tmp_path / "code.jpg")]) == 0
    assert "post-net strength 0," in capsys.readouterr().out  # untrained: a zero residual, the smallest k wins
    code = Image.open(tmp_path / "code.jpg")
    assert (code.format, code.mode, code.size) == ("JPEG", "RGB", (15, 11))  # half resolution, rounded up
    assert main(["sandwich", "decode", "--model", str(trained), str(tmp_path / "code.jpg"), str(tmp_path / "out.png")]) == 0
    out = Image.open(tmp_path / "out.png")
    assert (out.mode, out.size) == ("RGB", (30, 21))
    assert main(["sandwich", "decode", "--model", str(trained), "--bits", "16",
                 str(tmp_path / "code.jpg"), str(tmp_path / "out16.png")]) == 0
    assert read_png16(tmp_path / "out16.png").shape == (21, 30, 3)


def test_high_bit_depth_input_keeps_16_bits(tmp_path, untrained):
    untrained["high-bit-depth"].save(tmp_path / "hbd.jxls")
    wide = np.random.default_rng(2).integers(0, 65536, (16, 24, 3)).astype(np.uint16)
    write_png16(tmp_path / "in16.png", wide)
    assert main(["sandwich", "encode", "--model", str(tmp_path / "hbd.jxls"), "--quality", "100",
                 str(tmp_path / "in16.png"), str(tmp_path / "c.jpg")]) == 0
    assert main(["sandwich", "decode", "--model", str(tmp_path / "hbd.jxls"),
                 str(tmp_path / "c.jpg"), str(tmp_path / "o.png")]) == 0
    assert read_png16(tmp_path / "o.png").dtype == np.uint16  # 16-bit output by default for this scenario


def test_errors_are_one_line_messages(tmp_path, trained, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "plain.jpg")
    assert main(["sandwich", "decode", "--model", str(trained), str(tmp_path / "plain.jpg"), str(tmp_path / "o.png")]) == 2
    assert "no sandwich metadata" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    assert main(["sandwich", "encode", "--model", str(tmp_path / "none.jxls"), str(tmp_path / "plain.jpg"),
                 str(tmp_path / "c.jpg")]) == 2
    assert "cannot read sandwich package" in capsys.readouterr().err
    assert main(["sandwich", "encode", "--model", str(trained), str(tmp_path / "missing.png"), str(tmp_path / "c.jpg")]) == 2
    assert not (tmp_path / "c.jpg").exists()
