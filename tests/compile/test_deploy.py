"""Deployment end to end: a real integer package -> TVM + VTA bundle -> decode a real bitstream
(host ops in TVM, VTA layers on the simulator) == the package's own decode; sealing, no plaintext
on disk, and typed errors for bad input."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from compile.bundle import read_bundle
from compile.cli import main
from compile.deploy import build_bundle, latent_shapes
from compile.runtime import BundleDecoder
from jaxlic.codec.api import compress, decompress
from jaxlic.errors import BundleError, IntegerizationError, KeyMismatchError, ModelMismatchError, VTAConfigError
from jaxlic.secure.keys import generate_key, public_key_of, save_private_key, save_public_key

_spec = importlib.util.spec_from_file_location("quant_conftest", Path(__file__).parents[1] / "quant" / "conftest.py")
quant = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quant)

SIZE = (40, 24)  # (width, height): odd for the 16-pixel factorized grid
BOARD, OWNER = generate_key("x25519"), generate_key("ed25519")


def _packages(tmp: Path) -> tuple[Path, Path]:
    """A tiny float and its integer package (factorized, width 1/16) on disk."""
    from jaxlic.codec import build_tables
    from jaxlic.models import model_config
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate

    config = model_config("bmshj2018-factorized", 3, quant.WIDTH, "gdn")
    package = build_tables(config, quant.lively_params(config))
    calibration = calibrate(package.config, package.params, [quant.image_batch(2, 64)])
    package.save(tmp / "float.jxlm")
    integerize(package.config, package.params, calibration).save(tmp / "int8.jxlm")
    return tmp / "float.jxlm", tmp / "int8.jxlm"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Packages, a sealed `sim` bundle at SIZE, the keys, and a real bitstream of that size."""
    import jaxlic

    tmp = tmp_path_factory.mktemp("deploy")
    float_path, int_path = _packages(tmp)
    report = build_bundle(int_path, "sim", SIZE, tmp / "dec.jxvb", public_key_of(BOARD), OWNER, progress=False)
    package = jaxlic.load(int_path)
    image = quant.image_batch(1, 64)[0, :SIZE[1], :SIZE[0]]
    data = compress(package, np.round(image * 255).astype(np.uint8))
    return {"tmp": tmp, "float": float_path, "int": int_path, "bundle": tmp / "dec.jxvb", "report": report,
            "package": package, "data": data}


def test_bundle_decodes_like_the_package_on_every_host(built):
    want = decompress(built["package"], built["data"], backend="numpy")
    np.testing.assert_array_equal(decompress(built["package"], built["data"]), want)
    for host in ("tvm", "numpy"):
        decoder = BundleDecoder(built["bundle"], BOARD, public_key_of(OWNER), host=host)
        got = decoder.decode(built["data"])
        assert got.shape == (SIZE[1], SIZE[0], 3) and got.std() > 1
        np.testing.assert_array_equal(got, want)
    assert built["report"]["vta_layers"] == 7 and built["report"]["vta_mac_share"] > 0.95


def test_manifest_describes_placement_and_shapes(built):
    bundle = read_bundle(built["bundle"])
    manifest = bundle.manifest
    assert bundle.sealed and manifest["board"] == "sim" and manifest["resolution"] == list(SIZE)
    assert manifest["input_shapes"] == {k: list(v) for k, v in latent_shapes(built["package"], SIZE).items()}
    assert [row["name"] for row in manifest["placement"] if row["placement"] == "vta"] == \
        [layer["conv"] for layer in manifest["vta_layers"]]
    assert sorted(bundle.libraries) == ["host/x86_64.so"]
    assert manifest["package_fingerprint"] == built["package"].fingerprint.hex()


def test_run_writes_the_image_and_no_plaintext_weights(built, tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    save_private_key(BOARD, keys / "board.key")
    save_public_key(OWNER, keys / "owner.pub")
    (tmp_path / "s.jxlc").write_bytes(built["data"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    out = tmp_path / "out.png"
    assert main(["run", str(built["bundle"]), str(tmp_path / "s.jxlc"), "-o", str(out),
                 "--key", str(keys / "board.key"), "--owner", str(keys / "owner.pub")]) == 0
    from jaxlic.images import read_image

    np.testing.assert_array_equal(read_image(out), decompress(built["package"], built["data"]))
    # No file written during the run holds a weight array or the package.
    weights = [a.tobytes() for a in built["package"].integer.constants.values() if a.size >= 64]
    secrets = [built["int"].read_bytes()[:4096], *weights]
    for path in [*scratch.rglob("*"), *tmp_path.glob("*")]:
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret in content for secret in secrets), path


def test_bad_inputs_are_typed_errors_and_write_nothing(built, tmp_path):
    import jaxlic

    out = tmp_path / "x.jxvb"
    with pytest.raises(IntegerizationError, match="float"):
        build_bundle(built["float"], "sim", SIZE, out, progress=False)
    with pytest.raises(VTAConfigError):
        build_bundle(built["int"], "no-such-board", SIZE, out, progress=False)
    assert not out.exists()
    decoder = BundleDecoder(built["bundle"], BOARD, public_key_of(OWNER), host="numpy")
    other_size = compress(built["package"], np.zeros((SIZE[1], SIZE[0] + 16, 3), np.uint8))
    with pytest.raises(BundleError, match="--resolution"):
        decoder.decode(other_size)
    with pytest.raises(ModelMismatchError):
        decoder.decode(compress(jaxlic.load(built["float"]), np.zeros((SIZE[1], SIZE[0], 3), np.uint8)))
    with pytest.raises(KeyMismatchError):
        BundleDecoder(built["bundle"], generate_key("x25519"), public_key_of(OWNER))
    (tmp_path / "s.jxlc").write_bytes(built["data"])
    for argv in (["run", str(built["float"]), str(tmp_path / "s.jxlc"), "-o", str(tmp_path / "a.png")],
                 ["run", str(built["bundle"]), str(tmp_path / "s.jxlc"), "-o", str(tmp_path / "a.png")],
                 ["build", "--model", str(built["float"]), "--board", "sim", "--resolution", "40x24",
                  "--out", str(tmp_path / "b.jxvb")],
                 ["run", str(built["bundle"]), str(tmp_path / "s.jxlc"), "-o", str(tmp_path / "s.jxlc")]):
        assert main(argv) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jxlc"]


def test_estimate_splits_vta_host_and_entropy_time(built, capsys):
    assert main(["estimate", "--model", str(built["int"]), "--board", "zcu104", "--resolution", "40x24"]) == 0
    printed = capsys.readouterr().out
    assert "VTA share of decoder MACs" in printed and "end-to-end bound" in printed and "g_s_0" in printed
    from compile.deploy import estimate
    from compile.vta.config import load_config

    report = estimate(built["int"], load_config("pynq"), SIZE)
    assert report["vta_s"] > 0 and report["host_s"] > 0 and report["entropy_s"] >= 0
    assert report["host_slowdown"] == 12.0 and 0 < report["host_share"] < 1
    assert report["fps"] == pytest.approx(1 / (report["vta_s"] + report["host_s"] + report["entropy_s"]))
