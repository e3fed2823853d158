"""Sandwich training: the calibrated rate term, the refit between steps, resume, the artifact."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.sandwich.model import load_package
from jaxlic.sandwich.task import CalibratedRate, refit, sandwich_task
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.terms import RateDistortion


def _term(tiny_config, window=6):
    return CalibratedRate(RateDistortion(0.01), tiny_config("rgb", lmbda=0.01), (1.0, 2.0, 3.0), window)


def test_refit_recovers_linear_weights_and_reports_the_old_error(tiny_config):
    term = _term(tiny_config)
    state = term.init_state({})
    rng = np.random.default_rng(0)
    truth = np.array([2.5, 1.0, 6.0])
    for _ in range(3):
        features = rng.uniform(10, 1000, (4, 3))
        payload = features @ truth
        expected_error = np.mean(np.abs(features @ np.asarray(state["weights"]) - payload) / payload)
        state = refit(state, features, payload, header_bits=4000.0)
        assert float(state["error"]) == pytest.approx(expected_error, rel=1e-4)
    np.testing.assert_allclose(np.asarray(state["weights"]), truth, rtol=1e-3)
    assert int(state["count"]) == 12 and float(state["header_bits"]) == 4000.0  # window of 6 kept the last 6


def test_calibrated_term_prices_bits_per_quality(tiny_config):
    term = _term(tiny_config)
    state = {**term.init_state({}), "header_bits": jnp.float32(100.0)}
    target = jnp.full((2, 4, 4, 3), 0.5)
    outputs = {"x_hat": target, "target": target, "rate": jnp.array([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]),
               "quality": jnp.array([50, 90])}
    loss, metrics = term({}, outputs, target, state)
    bits = np.array([1 + 2 + 3 + 100, 2 + 100])
    assert float(metrics["bpp"]) == pytest.approx(bits.sum() / 32)
    price = np.array([1.0, 0.1])  # lambda(90) = 10 lambda(50)
    assert float(loss) == pytest.approx((bits * price).sum() / 32, rel=1e-5)  # no distortion


def _trainer(run_dir, tiny_config, steps):
    config = TrainConfig(steps=steps, batch_size=2, crop=32, learning_rate=1e-3, log_every=1, checkpoint_every=2)
    return Trainer(config, sandwich_task(tiny_config("half-res")), run_dir, progress=False)


def test_training_calibrates_and_writes_a_package(tmp_path, tiny_config):
    package = _trainer(tmp_path, tiny_config, 2).run()
    logs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in logs] == [1, 2]
    assert logs[0]["rate_err"] == 0.0 and logs[1]["rate_err"] > 0.0  # the first refit's error shows at step 2
    assert logs[1]["w"] != logs[0]["w"]  # weights refit to real JPEG sizes after step 1
    assert load_package(tmp_path / "sandwich.jxls").fingerprint == package.fingerprint


@pytest.mark.slow
def test_resume_keeps_the_calibration_state(tmp_path, tiny_config):
    package = _trainer(tmp_path / "full", tiny_config, 4).run()
    assert _trainer(tmp_path / "split", tiny_config, 4).run(until=2) is None
    resumed = _trainer(tmp_path / "split", tiny_config, 4).run()
    for a, b in zip(jax.tree_util.tree_leaves(package.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    full, split = ([json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()] for run in ("full", "split"))
    assert [r["w"] for r in split] == pytest.approx([r["w"] for r in full])
