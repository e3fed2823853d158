"""Distillation: channel ranking, the loss term's definition, a frozen teacher inside the jitted step."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxlic.cli import main
from jaxlic.codec import build_tables, compress, decompress, load
from jaxlic.errors import ConfigError
from jaxlic.models import build_model, init_params, model_config
from jaxlic.train.distill import Distillation, rank_latent_channels, student_config

ARCH = "bmshj2018-factorized"


@pytest.fixture(scope="module")
def teacher():
    config = model_config(ARCH, 2, width=0.125)
    return build_tables(config, init_params(build_model(config), 3))


def crops(seed, n=2, side=32):
    return np.random.default_rng(seed).random((n, side, side, 3), dtype=np.float32)


def test_student_keeps_the_teachers_family_and_lambda(teacher):
    student = student_config(teacher.config, 0.0625)
    assert (student.arch, student.quality, student.gdn, student.lmbda) == (
        teacher.config.arch, teacher.config.quality, teacher.config.gdn, teacher.config.lmbda)
    assert (student.N, student.M) == (8, 12)


def test_channels_are_ranked_by_teacher_bits(teacher):
    images = crops(0)
    order = rank_latent_channels(teacher, images)
    outputs = teacher.model.apply({"params": teacher.params}, jnp.asarray(images), "round")
    bits = -np.log2(np.asarray(outputs["likelihoods"]["y"], np.float64)).sum(axis=(0, 1, 2))
    assert sorted(order.tolist()) == list(range(teacher.config.M))
    assert np.all(np.diff(bits[order]) <= 0)
    with pytest.raises(ConfigError):
        rank_latent_channels(teacher, crops(0, side=24))


def test_loss_is_zero_for_a_student_equal_to_its_teacher_and_grows_otherwise(teacher):
    term = Distillation(teacher, np.arange(teacher.config.M), teacher.config.lmbda)
    state = term.init_state(None)
    batch = jnp.asarray(crops(1))
    same = teacher.model.apply({"params": teacher.params}, batch, "round")
    loss, metrics = term(None, same, batch, state)
    assert float(loss) == pytest.approx(0.0, abs=1e-9)
    shifted = {**same, "y": same["y"] + 0.5, "x_hat": same["x_hat"] + 0.1}
    loss, metrics = term(None, shifted, batch, state)
    latents_per_pixel = teacher.config.M / 16**2
    assert float(metrics["distill/latent"]) == pytest.approx(0.25 * latents_per_pixel, rel=1e-4)
    assert float(metrics["distill/output"]) == pytest.approx(teacher.config.lmbda * 255**2 * 0.01, rel=1e-4)
    assert float(loss) == pytest.approx(float(metrics["distill/latent"] + metrics["distill/output"]), rel=1e-6)


def test_weights_are_validated(teacher):
    with pytest.raises(ConfigError):
        Distillation(teacher, np.arange(4), 0.01, latent_weight=0.0, output_weight=0.0)
    with pytest.raises(ConfigError):
        Distillation(teacher, np.arange(4), 0.01, latent_weight=-1.0)


def test_distill_command_trains_a_student_with_a_frozen_teacher(tmp_path, teacher):
    teacher.save(tmp_path / "teacher.jxlm")
    out = tmp_path / "run"
    assert main(["distill", "--teacher", str(tmp_path / "teacher.jxlm"), "--width", "0.0625", "--steps", "3",
                 "--batch-size", "2", "--crop", "32", "--checkpoint-every", "3", "--calibration", "2",
                 "--out", str(out)]) == 0
    student = load(out / "model.jxlm")
    assert (student.config.N, student.config.M, student.config.lmbda) == (8, 12, teacher.config.lmbda)
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [3]  # the last step is always logged
    assert all(r["distill/latent"] > 0 and r["distill/output"] > 0 and "teacher_psnr" in r for r in records)
    # The teacher in the last checkpoint is bit-identical to the package: it was never updated.
    with ocp.CheckpointManager((out / "checkpoints").absolute()) as manager:
        state = manager.restore(3, args=ocp.args.StandardRestore())
    saved = state["term_states"]["distill"]["teacher"]
    for path, value in jax.tree_util.tree_leaves_with_path(teacher.params):
        keys = [k.key for k in path]
        np.testing.assert_array_equal(np.asarray(saved[keys[0]][keys[1]]), np.asarray(value))
    image = (crops(5, n=1, side=48)[0] * 255).astype(np.uint8)
    assert decompress(student, compress(student, image)).shape == image.shape
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["distill"]["teacher"] == teacher.fingerprint.hex()
