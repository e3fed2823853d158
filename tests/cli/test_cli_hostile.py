"""Careless command lines: inputs never overwritten, existing outputs kept without --force, path
problems as one-line errors (exit 2)."""

import numpy as np
import pytest

from jaxlic.cli import main
from jaxlic.codec import Bitstream
from jaxlic.images import write_image

from small_packages import smooth_image

FACTORIZED = "bmshj2018-factorized"


@pytest.fixture
def files(packages, tmp_path):
    model = tmp_path / "model.jxlm"
    packages[FACTORIZED].save(model)
    image = tmp_path / "x.png"
    write_image(image, smooth_image(np.random.default_rng(2), 20, 24))
    return model, image


def test_cli_never_overwrites_its_inputs(files, capsys):
    model, image = files
    before = model.read_bytes(), image.read_bytes()
    assert main(["compress", str(image), str(image), "--model", str(model), "--force"]) == 2
    assert main(["compress", str(image), str(model), "--model", str(model), "--force"]) == 2
    assert (model.read_bytes(), image.read_bytes()) == before
    assert all(line.startswith("jaxlic: error: ") and "input" in line for line in capsys.readouterr().err.splitlines())


def test_cli_existing_outputs_need_force(files, tmp_path):
    model, image = files
    out = tmp_path / "x.jxlc"
    out.write_bytes(b"keep me")
    assert main(["compress", str(image), str(out), "--model", str(model)]) == 2
    assert out.read_bytes() == b"keep me"
    assert main(["compress", str(image), str(out), "--model", str(model), "--force"]) == 0
    assert Bitstream.from_bytes(out.read_bytes()).height == 20


@pytest.mark.parametrize("problem", ["output is a folder", "parent is a file", "missing input",
                                     "empty folder", "image too large"])
def test_cli_path_problems_are_one_line_errors(files, tmp_path, capsys, problem):
    model, image = files
    (tmp_path / "folder").mkdir()
    args = {
        "output is a folder": ["compress", str(image), str(tmp_path / "folder")],
        "parent is a file": ["compress", str(image), str(image / "x.jxlc")],
        "missing input": ["decompress", str(tmp_path / "missing.jxlc"), str(tmp_path / "y.png")],
        "empty folder": ["decompress", str(tmp_path / "folder"), str(tmp_path / "decoded")],
        "image too large": ["compress", str(image), str(tmp_path / "y.jxlc"), "--max-pixels", "100"],
    }[problem]
    assert main([*args, "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxlic: error: ") and err.count("\n") == 1 and "Traceback" not in err
