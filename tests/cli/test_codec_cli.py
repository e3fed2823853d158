"""The codec and evaluation commands, end to end through `jaxlic.cli.main`."""

import json

import numpy as np
import pytest

from jaxlic.cli import main
from jaxlic.eval.results import load_results
from jaxlic.images import read_image, write_image

from small_packages import smooth_image


@pytest.fixture
def files(packages, tmp_path):
    package_path = tmp_path / "model.jxlm"
    packages["bmshj2018-hyperprior"].save(package_path)
    images = tmp_path / "images"
    rng = np.random.default_rng(3)
    for name, size in [("a", (170, 180)), ("sub/b", (165, 200))]:
        write_image(images / f"{name}.png", smooth_image(rng, *size))
    return package_path, images


def test_compress_decompress_folder(files, tmp_path, capsys):
    package_path, images = files
    assert main(["compress", str(images), str(tmp_path / "bits"), "--model", str(package_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "bits").rglob("*.jxlc")) == ["a.jxlc", "b.jxlc"]
    assert main(["decompress", str(tmp_path / "bits"), str(tmp_path / "out"), "--model", str(package_path)]) == 0
    assert read_image(tmp_path / "out" / "sub" / "b.png").shape == (165, 200, 3)
    capsys.readouterr()
    assert main(["info", str(tmp_path / "bits" / "a.jxlc")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "bitstream" and (info["height"], info["width"]) == (170, 180)
    assert main(["info", str(package_path)]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["arch"] == "bmshj2018-hyperprior"


def test_eval_writes_compressai_style_results(files, tmp_path, capsys):
    package_path, images = files
    out = tmp_path / "results.json"
    assert main(["eval", "--model", str(package_path), "--data", str(images), "--out", str(out)]) == 0
    record = load_results(out)[0]
    assert set(record["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert [r["name"] for r in record["per_image"]] == ["a", "sub/b"]  # path under the folder, no suffix


def test_errors_are_one_line_messages(files, tmp_path, capsys):
    package_path, _ = files
    (tmp_path / "junk.jxlc").write_bytes(b"JXLC" + b"\0" * 30)
    assert main(["decompress", str(tmp_path / "junk.jxlc"), str(tmp_path / "x.png"), "--model", str(package_path)]) == 2
    assert capsys.readouterr().err.startswith("jaxlic: error: bitstream")
    assert not (tmp_path / "x.png").exists()
    assert main(["compress", str(tmp_path / "junk.jxlc"), str(tmp_path / "y.jxlc"), "--model", str(package_path)]) == 2
    assert not (tmp_path / "y.jxlc").exists()
    assert main(["info", str(tmp_path / "junk.jxlc")]) == 2


def test_models_lists_the_zoo(capsys):
    assert main(["models", "--model", "mbt2018-mean"]) == 0
    out = capsys.readouterr().out
    assert "mbt2018-mean" in out and "0.1800" in out
