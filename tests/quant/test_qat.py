"""QAT is a Task of the one train step: it trains through the fake-quantized decoder and its
artifact is an integer-mode package; `jaxlic quantize` drives it from the command line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxlic.cli import main
from jaxlic.codec import ModelPackage, compress, decompress
from jaxlic.images import write_image
from jaxlic.models import model_config
from jaxlic.nn.gdn import effective, reparametrize
from jaxlic.quant.lowering import calibrate
from jaxlic.codec.decoders import IntegerDecoder
from jaxlic.quant.qat import FakeQuantDecoder, calibration_batches, make_forward, qat_task
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.task import codec_task

from conftest import WIDTH, image_batch, lively_params


@pytest.mark.parametrize("fake_quant", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_qat_forward_trains_encoder_and_decoder(float_packages, calibrations, fake_quant):
    key = ("mbt2018-mean", "simplified")
    package = float_packages[key]
    forward = make_forward(package.config, calibrations[key], fake_quant)
    task = qat_task(package, calibrations[key], fake_quant=fake_quant)
    batch = jnp.asarray(image_batch(2, 64))

    def loss(params):
        total, _ = task.terms[0](params, forward(params, batch, jax.random.PRNGKey(0)), batch, {})
        return total

    grads = traverse_util.flatten_dict(jax.jit(jax.grad(loss))(package.params), sep="/")
    # Straight-through rounding lets the rate-distortion gradient reach every transform.
    for name in ("g_a_0/kernel", "g_s_0/kernel", "g_s_1/gamma", "h_a_0/kernel", "h_s_4/kernel"):
        assert float(jnp.abs(grads[name]).sum()) > 0, name
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads.values())


def test_qat_forward_reconstruction_is_the_integer_decoder(int_packages, float_packages, calibrations):
    """The fake-quantized forward reconstructs what the exported integer package decodes."""
    key = ("bmshj2018-factorized", "gdn")
    batch = image_batch(1, 64)
    out = make_forward(float_packages[key].config, calibrations[key])(float_packages[key].params, jnp.asarray(batch),
                                                                    jax.random.PRNGKey(0))
    pixels = (batch[0] * 255).round().astype(np.uint8)
    decoded = decompress(int_packages[key], compress(int_packages[key], pixels))
    np.testing.assert_array_equal(np.asarray(out["x_hat"][0] * 255).round().astype(np.uint8), decoded)


def test_fake_quant_decoder_is_a_decoder_like_the_integer_one(int_packages, float_packages, calibrations):
    """QAT's decoder implements the codec's protocol, hyper(z) -> (indexes, means) and
    synthesis(y, means) -> pixels, with what the exported integer decoder computes."""
    key = ("mbt2018-mean", "simplified")
    config = float_packages[key].config
    fake = FakeQuantDecoder(config, float_packages[key].params, calibrations[key])
    exact = IntegerDecoder(int_packages[key], "numpy")
    rng = np.random.default_rng(0)
    z = rng.integers(-3, 4, (1, 2, 2, config.N)).astype(np.int32)
    (indexes, means), (want_indexes, want_means) = fake.hyper(jnp.asarray(z, jnp.float32)), exact.hyper(z)
    np.testing.assert_array_equal(np.asarray(indexes), want_indexes)
    assert (means is None) == (want_means is None)
    y = rng.integers(-4, 5, (1, 8, 8, config.M)).astype(np.int32)
    pixels = fake.synthesis(jnp.asarray(y, jnp.float32), means)
    np.testing.assert_array_equal(np.asarray(pixels).astype(np.uint8), exact.synthesis(y, want_means))


@pytest.mark.slow  # a QAT run end to end (14 s); the CLI test covers the package it writes
def test_qat_run_writes_a_working_integer_package(float_packages, calibrations, photo, tmp_path):
    key = ("bmshj2018-hyperprior", "gdn")
    config = TrainConfig(steps=2, batch_size=2, crop=64, learning_rate=1e-4, checkpoint_every=1)
    package = Trainer(config, qat_task(float_packages[key], calibrations[key]), tmp_path / "run", progress=False).run()
    loaded = ModelPackage.load(tmp_path / "run" / "model.jxlm")
    assert loaded.integer is not None and loaded.fingerprint == package.fingerprint
    data = compress(loaded, photo)
    assert np.array_equal(decompress(loaded, data, "numpy"), decompress(loaded, data))
    np.asarray(float_packages[key].params["g_s_0"]["kernel"])  # raises if the step donated the caller's arrays


@pytest.fixture
def cli_setup(float_packages, photo, tmp_path):
    float_path = tmp_path / "float.jxlm"
    float_packages["bmshj2018-factorized", "simplified"].save(float_path)
    data_dir = tmp_path / "data"
    for i in range(3):
        write_image(data_dir / f"{i}.png", np.ascontiguousarray(np.roll(photo, 17 * i, axis=1)))
    return ["--model", str(float_path), "--data", str(data_dir), "--batch-size", "2", "--crop", "64",
            "--calibration-batches", "1"]


def test_cli_quantize(cli_setup, photo, tmp_path, capsys):
    assert main(["quantize", *cli_setup, "--out", str(tmp_path / "ptq.jxlm"), "--graph", str(tmp_path / "g.npz")]) == 0
    assert "post-training" in capsys.readouterr().out
    package = ModelPackage.load(tmp_path / "ptq.jxlm")
    assert decompress(package, compress(package, photo)).shape == photo.shape
    # Bad input: an integer package cannot be quantized again; a missing file is a clear error.
    assert main(["quantize", "--model", str(tmp_path / "ptq.jxlm"), "--out", str(tmp_path / "x.jxlm")]) == 2
    assert "already an integer-mode package" in capsys.readouterr().err
    assert main(["quantize", "--model", str(tmp_path / "none.jxlm"), "--out", str(tmp_path / "x.jxlm")]) == 2
    assert "cannot read model package" in capsys.readouterr().err
    assert not (tmp_path / "x.jxlm").exists()


@pytest.mark.slow
def test_cli_quantize_with_qat(cli_setup, photo, tmp_path, capsys):
    assert main(["quantize", *cli_setup, "--out", str(tmp_path / "qat.jxlm"), "--qat-steps", "2"]) == 0
    assert "QAT 2 steps" in capsys.readouterr().out
    package = ModelPackage.load(tmp_path / "qat.jxlm")
    assert decompress(package, compress(package, photo)).shape == photo.shape


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory):
    """Briefly trained tiny models (built-in photos) with one inverse-GDN beta collapsed to its
    floor, as long training leaves some: the case where an int16 pool rounded beta to 0."""
    models = {}
    for arch in ("bmshj2018-factorized", "bmshj2018-hyperprior"):
        config = model_config(arch, 3, WIDTH)
        task = codec_task(config, initial_params=lively_params(config))
        params = dict(Trainer(TrainConfig(steps=40, batch_size=4, crop=64, learning_rate=1e-3), task,
                              tmp_path_factory.mktemp(arch), progress=False).run().params)
        beta = effective(params["g_s_3"]["beta"]).at[0].set(1e-6)
        params["g_s_3"] = {**params["g_s_3"], "beta": reparametrize(beta)}
        models[arch] = config, params, calibrate(config, params, calibration_batches((), 2, 4, 64, 1))
    return models


# Slow (about 40 s each): the default suite keeps QAT's forward, gradient and CLI tests.
@pytest.mark.parametrize("arch", [pytest.param("bmshj2018-factorized", marks=pytest.mark.slow),
                                  pytest.param("bmshj2018-hyperprior", marks=pytest.mark.slow)])
def test_qat_lowers_the_ptq_loss(trained_models, arch, tmp_path):
    """A few QAT steps at `jaxlic quantize`'s learning rate lower the integer decoder's
    rate-distortion loss on held-out crops: the exported package's params after QAT against the
    float model's (the PTQ loss: the fake-quantized forward is the PTQ graph's twin)."""
    config, params, calibration = trained_models[arch]
    task = qat_task(params, calibration, config)
    loss = jax.jit(lambda p, b: task.terms[0](p, task.forward(p, b, jax.random.PRNGKey(0)), b, {})[0])
    held_out = [jnp.asarray(b) for b in calibration_batches((), 2, 8, 64, 7)]
    qat = Trainer(TrainConfig(steps=10, batch_size=4, crop=64, learning_rate=5e-5), task, tmp_path, progress=False).run()
    ptq_loss, qat_loss = (np.mean([float(loss(p, b)) for b in held_out]) for p in (params, qat.params))
    assert qat_loss < ptq_loss
