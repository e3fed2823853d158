"""Shipped reference models: half-precision shipping, the manifest check, NAME:QUALITY names on
the command line, sandwiches shipped by NAME."""

import json

import jax
import numpy as np
import pytest

import jaxlic
import jaxlic.pretrained
from jaxlic.cli import main
from jaxlic.errors import PackageError
from jaxlic.pretrained import (available, half_precision, load_model, load_pretrained, manifest,
                               ship, spec_of)
from jaxlic.sandwich.model import Sandwich, SandwichPackage, sandwich_config
from small_packages import smooth_image


@pytest.fixture
def shipped(packages, tmp_path):
    entry = ship(packages["bmshj2018-hyperprior"], "tiny-hyperprior", 2, tmp_path, note="test")
    return tmp_path, entry


def test_a_shipped_package_loads_as_the_half_precision_model(packages, shipped, rng):
    directory, entry = shipped
    package = load_pretrained("tiny-hyperprior", 2, directory)
    expected = half_precision(packages["bmshj2018-hyperprior"])
    assert package.fingerprint.hex() == entry["fingerprint"] == expected.fingerprint.hex()
    assert entry["note"] == "test" and available(directory) == ["tiny-hyperprior:2"]
    for leaf in jax.tree_util.tree_leaves(package.params["g_s_0"]):
        leaf = np.asarray(leaf)
        assert leaf.dtype == np.float32 and np.array_equal(leaf.astype(np.float16).astype(np.float32), leaf)
    image = smooth_image(rng, 40, 56)
    data = jaxlic.compress(package, image)
    assert np.array_equal(jaxlic.decompress(package, data), jaxlic.decompress(expected, data))


def test_half_precision_keeps_the_prior_exact(packages):
    package = packages["bmshj2018-hyperprior"]
    rounded = half_precision(package)
    for a, b in zip(jax.tree_util.tree_leaves(package.params["entropy_bottleneck"]),
                    jax.tree_util.tree_leaves(rounded.params["entropy_bottleneck"])):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_file_that_differs_from_its_manifest_is_refused(shipped):
    directory, entry = shipped
    record = json.loads((directory / "manifest.json").read_text())
    record["packages"][0]["sha256"] = "0" * 64
    (directory / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(PackageError, match="does not match its manifest"):
        load_pretrained("tiny-hyperprior", 2, directory)
    (directory / entry["file"]).write_bytes(b"not xz")
    with pytest.raises(PackageError, match="cannot be read"):
        load_pretrained("tiny-hyperprior", 2, directory)


def test_unknown_names_list_what_ships(shipped):
    directory, _ = shipped
    with pytest.raises(PackageError, match="tiny-hyperprior:2"):
        load_pretrained("tiny-hyperprior", 7, directory)
    with pytest.raises(PackageError, match="cannot name a shipped model"):
        ship(None, "Bad Name", 1, directory)
    with pytest.raises(PackageError, match="cannot name a shipped model"):
        ship(None, "no-quality", None, directory)


def test_load_model_takes_a_path_or_a_shipped_name(packages, tmp_path):
    path = tmp_path / "m.jxlm"
    packages["bmshj2018-factorized"].save(path)
    assert load_model(path).fingerprint == packages["bmshj2018-factorized"].fingerprint
    with pytest.raises(PackageError, match="no package file or shipped model"):
        load_model("no-such-model:1")
    with pytest.raises(PackageError, match="cannot read model package"):
        load_model(tmp_path / "missing.jxlm")


@pytest.mark.slow  # compiles the sandwich's networks (about 10 s)
def test_a_sandwich_ships_by_name_and_round_trips(tmp_path, rng):
    config = sandwich_config("half-res", features=(4, 8), mlp_hidden=4, mlp_depth=1)
    package = SandwichPackage(config, Sandwich(config).init(0))
    entry = ship(package, "tiny-sandwich", None, tmp_path)
    assert (entry["kind"], entry["file"], entry["scenario"]) == ("sandwich", "tiny-sandwich.jxls.xz", "half-res")
    assert available(tmp_path) == ["tiny-sandwich"]
    loaded = load_pretrained("tiny-sandwich", directory=tmp_path)
    assert isinstance(loaded, SandwichPackage) and loaded.fingerprint == entry["fingerprint"]
    image = rng.integers(0, 256, (20, 28, 3)).astype(np.uint8)
    assert np.array_equal(loaded.decode(loaded.encode(image, 60)), half_precision(package).decode(
        half_precision(package).encode(image, 60)))
    with pytest.raises(PackageError, match="cannot name a shipped sandwich"):
        ship(package, "tiny-sandwich", 3, tmp_path)


def test_the_command_line_takes_shipped_names(packages, shipped, tmp_path, monkeypatch, rng, capsys):
    directory, _ = shipped
    monkeypatch.setattr(jaxlic.pretrained, "SHIPPED", directory)
    from PIL import Image

    Image.fromarray(smooth_image(rng, 24, 40)).save(tmp_path / "in.png")
    assert main(["compress", "--model", "tiny-hyperprior:2", str(tmp_path / "in.png"), str(tmp_path / "in.jxl")]) == 0
    assert main(["decompress", "--model", "tiny-hyperprior:2", str(tmp_path / "in.jxl"), str(tmp_path / "out.png")]) == 0
    assert main(["compress", "--model", "tiny-hyperprior:9", str(tmp_path / "in.png"), str(tmp_path / "x.jxl")]) == 2
    assert "no package file or shipped model tiny-hyperprior:9; shipped: tiny-hyperprior:2" in capsys.readouterr().err
    assert main(["models", "--shipped"]) == 0
    assert "tiny-hyperprior:2" in capsys.readouterr().out


@pytest.mark.parametrize("entry", manifest(), ids=spec_of)
def test_every_shipped_model_matches_its_manifest(entry):
    package = load_pretrained(entry["name"], entry["quality"])
    fingerprint = package.fingerprint
    assert (fingerprint if isinstance(fingerprint, str) else fingerprint.hex()) == entry["fingerprint"]
    if entry["kind"] == "model":
        assert (package.integer is not None) == entry["integer"]
    else:
        assert package.config.scenario == entry["scenario"]


def test_what_ships_fits_the_budget():
    """The issue's budget: at most 16 MB of shipped files in all."""
    total = sum((jaxlic.pretrained.SHIPPED / e["file"]).stat().st_size for e in manifest())
    assert total <= 16_000_000
