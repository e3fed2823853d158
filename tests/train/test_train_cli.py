"""`jaxlic train` from the command line: a zoo model, a fine-tune from a package, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxlic.cli import main
from jaxlic.codec import compress, decompress, load
from jaxlic.errors import ConfigError
from jaxlic.models import MSE_LAMBDAS
from jaxlic.train.loop import TrainConfig

TINY = ["--batch-size", "1", "--crop", "32", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def base(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    assert main(["train", "--width", "0.0625", "--quality", "3", "--steps", "2", "--data", str(images),
                 "--out", str(out), *TINY]) == 0
    return out / "model.jxlm"


def test_fine_tune_from_a_package_keeps_its_architecture(base, images, tmp_path):
    out = tmp_path / "q1"
    assert main(["train", "--init", str(base), "--quality", "1", "--steps", "1", "--decay", "constant",
                 "--data", str(images), "--out", str(out), *TINY]) == 0
    before, after = load(base), load(out / "model.jxlm")
    assert (after.config.N, after.config.M, after.config.width) == (before.config.N, before.config.M, 0.0625)
    assert (after.config.quality, after.config.lmbda) == (1, MSE_LAMBDAS[0])


def test_fine_tune_refuses_a_conflicting_architecture(base, images, tmp_path, capsys):
    assert main(["train", "--init", str(base), "--width", "0.5", "--steps", "1", "--data", str(images),
                 "--out", str(tmp_path / "x"), *TINY]) == 2
    assert "--width 0.5 (the package has 0.0625)" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"learning_rate": 0.0}, {"clip_norm": -1.0}, {"warmup": -1}, {"decay": "linear"}])
def test_bad_optimizer_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


@pytest.mark.slow
def test_a_context_model_trains_into_a_package_that_codes(images, tmp_path):
    """elic2022 (a context model) trains and writes a package whose bitstreams round-trip."""
    assert main(["train", "--model", "elic2022", "--width", "0.125", "--steps", "1", "--batch-size", "2",
                 "--crop", "64", "--data", str(images), "--out", str(tmp_path / "elic")]) == 0
    package = load(tmp_path / "elic" / "model.jxlm")
    image = np.asarray(Image.open(images / "0.png"))
    assert decompress(package, compress(package, image)).shape == image.shape
