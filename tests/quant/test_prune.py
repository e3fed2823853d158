"""Pruning: schedules, masks, exact physical shrinking, MAC counts, and pruning inside training."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.cli import main
from jaxlic.codec import build_tables, compress, decompress, load
from jaxlic.errors import ConfigError
from jaxlic.models import ModelConfig, build_model, init_params, model_config
from jaxlic.models.complexity import layer_macs, macs_per_pixel, param_count
from jaxlic.models.config import HIDDEN_LAYERS
from jaxlic.quant.prune import (
    PruneSchedule, apply_masks, init_masks, prune_masks, prune_task, shrink,
)
from jaxlic.train.loop import TrainConfig, Trainer


def tiny(arch="bmshj2018-factorized", seed=0):
    config = model_config(arch, 2, width=0.125)
    return config, jax.tree_util.tree_map(np.array, jax.device_get(init_params(build_model(config), seed)))


def test_schedule_parses_and_rejects_bad_input():
    schedule = PruneSchedule.parse("channel", "10:0.25,30:0.5")
    assert (schedule.steps, schedule.fractions) == ((10, 30), (0.25, 0.5))
    assert schedule.fraction_at(30) == 0.5 and schedule.fraction_at(20) is None
    for kind, text in [("channel", "10:0.5,5:0.6"), ("channel", "10:0.5,20:0.4"), ("channel", "0:0.5"),
                       ("channel", "10:1.0"), ("channel", "ten:0.5"), ("rows", "10:0.5")]:
        with pytest.raises(ConfigError):
            PruneSchedule.parse(kind, text)


def test_hidden_channels_round_trip_and_leave_unpruned_configs_unchanged():
    config = model_config("bmshj2018-factorized", 3, width=0.5)
    assert "hidden" not in json.loads(config.to_json())
    pruned = dataclasses.replace(config, hidden=(8, 9, 10, 11, 12, 13))
    again = ModelConfig.from_json(pruned.to_json())
    assert again == pruned and again.hidden_channels == (8, 9, 10, 11, 12, 13)
    for bad in [(8, 9), (0, 1, 1, 1, 1, 1), "abc"]:
        with pytest.raises(ConfigError):
            dataclasses.replace(config, hidden=bad)


def test_macs_follow_the_conv_formula():
    config = model_config("bmshj2018-factorized", 3)  # N=128, M=192
    N, M, k = 128, 192, 25
    convs = k * (3 * N / 4 + N * N / 16 + N * N / 64 + N * M / 256)  # g_a outputs at /2 .. /16
    deconvs = k * (M * N / 256 + N * N / 64 + N * N / 16 + N * 3 / 4)  # g_s inputs at /16 .. /2
    gdns = 2 * N * N * (1 / 4 + 1 / 16 + 1 / 64)
    assert macs_per_pixel(config) == pytest.approx(convs + deconvs + gdns)
    assert macs_per_pixel(config, ("g_s", "h_s")) == pytest.approx(deconvs + gdns / 2)
    assert set(layer_macs(model_config("bmshj2018-hyperprior", 3))) >= {"h_a_0", "h_s_4"}


def test_channel_ranking_keeps_the_strong_channels_and_what_is_pruned_stays_pruned():
    config, params = tiny()
    params["g_a_0"]["kernel"][..., 3] *= 100.0  # the strongest channel of g_a_0
    masks = jax.device_get(init_masks("channel", params))
    half = prune_masks("channel", params, masks, 0.5)
    assert half["g_a_0"][3] == 1 and all(m.sum() == config.N // 2 for m in half.values())
    more = prune_masks("channel", apply_masks("channel", params, half), half, 0.75)
    assert all(m.sum() == config.N // 4 and np.all(m <= h) for m, h in zip(more.values(), half.values()))


def test_magnitude_pruning_zeroes_the_smallest_weights_of_each_kernel():
    _, params = tiny()
    masks = prune_masks("magnitude", params, jax.device_get(init_masks("magnitude", params)), 0.3)
    pruned = apply_masks("magnitude", params, masks)
    for layer, mask in masks.items():
        kernel, original = np.asarray(pruned[layer]["kernel"]), np.abs(params[layer]["kernel"])
        assert (kernel == 0).sum() == round(0.3 * kernel.size)
        assert original[kernel == 0].max() <= original[kernel != 0].min()


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior"])
def test_shrunk_model_equals_the_masked_model_and_is_smaller(arch):
    config, params = tiny(arch)
    masks = prune_masks("channel", params, jax.device_get(init_masks("channel", params)), 0.5)
    masked = apply_masks("channel", params, masks)
    small_config, small = shrink(config, masked)
    assert small_config.hidden == (config.N // 2,) * len(HIDDEN_LAYERS)
    assert small["g_a_1"]["gamma"].shape == (config.N // 2, config.N // 2)
    x = jnp.asarray(np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32))
    full_out = jax.jit(lambda p: build_model(config).apply({"params": p}, x, "round"))(masked)
    small_out = jax.jit(lambda p: build_model(small_config).apply({"params": p}, x, "round"))(small)
    np.testing.assert_allclose(small_out["y"], full_out["y"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(small_out["x_hat"], full_out["x_hat"], rtol=1e-4, atol=1e-4)
    assert macs_per_pixel(small_config) < 0.6 * macs_per_pixel(config)
    assert param_count(small) < param_count(params)
    assert shrink(config, params)[0] == config  # nothing zero, nothing cut


@pytest.mark.slow  # 12 s; the composed command test prunes inside training too
def test_pruning_inside_training_exports_a_smaller_working_package(tmp_path):
    config, params = tiny()
    package = build_tables(config, params)
    schedule = PruneSchedule.parse("channel", "1:0.25,2:0.5")
    trainer = Trainer(TrainConfig(steps=3, batch_size=2, crop=32, learning_rate=1e-3, log_every=1,
                                  checkpoint_every=3), prune_task(package, schedule), tmp_path, progress=False)
    pruned = trainer.run()
    assert pruned.config.hidden == (config.N // 2,) * len(HIDDEN_LAYERS)
    kept = [json.loads(line)["prune/kept"] for line in (tmp_path / "metrics.jsonl").open()]
    assert kept == [1.0, 0.75, 0.5]  # the term logs the masks the step's forward used
    loaded = load(tmp_path / "model.jxlm")
    assert loaded.config == pruned.config
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert decompress(loaded, compress(loaded, image)).shape == image.shape
    np.testing.assert_array_equal(np.asarray(package.params["g_a_0"]["kernel"]), params["g_a_0"]["kernel"])


def test_prune_command_refuses_a_schedule_without_fine_tuning(tmp_path, capsys):
    config, params = tiny()
    build_tables(config, params).save(tmp_path / "model.jxlm")
    code = main(["prune", "--model", str(tmp_path / "model.jxlm"), "--schedule", "5:0.5", "--steps", "5",
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "fine-tuned" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
