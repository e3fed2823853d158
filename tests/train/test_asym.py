"""AsymLLIC's staged decoder substitution: stage specs, configs that describe a mixed g_s, the
projection from the previous stage, the frozen encoder and the distillation term inside the one
step, real bitstreams of a staged package, and the command."""

import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.cli import main
from jaxlic.codec import ModelPackage, build_tables, compress, decode_latents, decompress
from jaxlic.errors import ConfigError, ModelMismatchError
from jaxlic.models import ModelConfig, build_model, model_config
from jaxlic.models.complexity import layer_macs
from jaxlic.quant.prune import PruneSchedule, channel_scores, prune_task
from jaxlic.train.asym import Substitution, stage_params, stage_task, substitute
from jaxlic.train.compose import Parts, compose_task
from jaxlic.train.step import init_state, make_optimizer, make_train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_elic import random_params  # noqa: E402


def random_package(arch: str):
    """A random width-0.0625 model (N = 8, M = 12) with coding tables (no Flax init: slow)."""
    config = model_config(arch, 1, width=0.0625)
    return build_tables(config, random_params(build_model(config), 0))


@pytest.fixture(scope="module")
def hyper():
    return random_package("bmshj2018-hyperprior")


@pytest.fixture(scope="module")
def factorized():
    return random_package("bmshj2018-factorized")  # same g_s, cheaper to code


@pytest.mark.parametrize("text", ["4=res", "2=deconv3", "3=res", "3=deconv3:8", "2=res:0", "res", "2=res:x", ""])
def test_bad_stage_specs_raise_config_errors(text):
    with pytest.raises(ConfigError):
        Substitution.parse(text)


def test_stage_specs_and_substitution():
    start = model_config("bmshj2018-hyperprior", 1, width=0.0625)
    assert Substitution.parse(" 2=res:24") == Substitution(2, "res", 24)
    assert str(Substitution.parse("3=deconv3")) == "3=deconv3"
    config = substitute(start, Substitution.parse("2=res:4"))
    assert config.decoder == ("igdn", "igdn", "res", "deconv5")
    assert config.hidden == (8, 8, 8, 8, 8, 4)
    with pytest.raises(ConfigError, match="changes nothing"):
        substitute(start, Substitution.parse("1=igdn"))
    with pytest.raises(ConfigError, match="staged decoders"):
        substitute(model_config("elic2022", 1, width=0.125), Substitution.parse("1=relu"))


def test_config_describes_a_mixed_decoder():
    zoo = model_config("mbt2018-mean", 1, width=0.125)
    assert "decoder" not in json.loads(zoo.to_json())  # zoo fingerprints unchanged
    mixed = dataclasses.replace(zoo, decoder=("sgdn", "relu", "res", "deconv3"))
    assert ModelConfig.from_json(mixed.to_json()) == mixed
    assert ModelConfig.from_json(json.loads(mixed.to_json()) | {"decoder": list(mixed.decoder)}) == mixed
    for bad in (("igdn",) * 3, ("igdn", "igdn", "res", "res"), ("deconv3", "igdn", "igdn", "deconv5"), "igdn"):
        with pytest.raises(ConfigError):
            dataclasses.replace(zoo, decoder=bad)
        with pytest.raises(ConfigError):
            ModelConfig.from_json(json.loads(zoo.to_json()) | {"decoder": bad})
    with pytest.raises(ConfigError, match="no g_s blocks"):
        build_model(dataclasses.replace(model_config("elic2022", 1, width=0.125), decoder=mixed.decoder))
    macs = layer_macs(mixed)
    assert macs["g_s_6"] == pytest.approx(9 * zoo.N * 3 / 4)  # 3x3 to RGB at half resolution
    assert "g_s_3" not in macs and {"g_s_5/reduce", "g_s_5/expand"} <= set(macs)


@pytest.fixture(scope="module")
def staged(factorized):
    """Stage `2=res:4` of `factorized` with g_s_4's channel 0 made weak: (start, config, stage) parameters."""
    sub = Substitution.parse("2=res:4")
    config = substitute(factorized.config, sub)
    params = jax.device_get(factorized.params)
    params["g_s_4"] = {**params["g_s_4"], "kernel": params["g_s_4"]["kernel"].copy()}
    params["g_s_4"]["kernel"][..., 0] *= 0.01  # so the projection must skip channel 0
    return params, config, stage_params(factorized.config, params, config, sub)


def test_stage_swaps_exactly_the_named_block_and_keeps_the_rest(staged):
    old, _, new = staged
    replaced = {"g_s_4", "g_s_5", "g_s_6"}
    assert set(new) == set(old)
    for name in set(old) - replaced:
        jax.tree.map(np.testing.assert_array_equal, new[name], old[name])
    keep = np.sort(np.argsort(-channel_scores(old["g_s_4"]["kernel"], old["g_s_6"]["kernel"]))[:4])
    assert 0 not in keep
    np.testing.assert_array_equal(new["g_s_4"]["kernel"], old["g_s_4"]["kernel"][1:4, 1:4][..., keep])
    np.testing.assert_array_equal(new["g_s_4"]["bias"], old["g_s_4"]["bias"][keep])
    np.testing.assert_array_equal(new["g_s_6"]["kernel"], old["g_s_6"]["kernel"][:, :, keep])
    assert not np.any(new["g_s_5"]["expand"]["kernel"]) and new["g_s_5"]["reduce"]["kernel"].shape == (1, 1, 4, 2)


@pytest.mark.slow
def test_narrowed_gdn_and_relu_stages(hyper):
    """A narrowed GDN block keeps its GDN on the kept channels; a ReLU slot has no parameters."""
    old = jax.device_get(hyper.params)
    sub = Substitution.parse("1=igdn:3")
    gdn = stage_params(hyper.config, old, substitute(hyper.config, sub), sub)
    keep = np.sort(np.argsort(-channel_scores(old["g_s_2"]["kernel"], old["g_s_4"]["kernel"]))[:3])
    np.testing.assert_array_equal(gdn["g_s_3"]["gamma"], old["g_s_3"]["gamma"][np.ix_(keep, keep)])
    np.testing.assert_array_equal(gdn["g_s_4"]["kernel"], old["g_s_4"]["kernel"][:, :, keep])
    sub = Substitution.parse("1=relu")
    relu = stage_params(hyper.config, old, substitute(hyper.config, sub), sub)
    assert "g_s_3" not in relu
    np.testing.assert_array_equal(relu["g_s_2"]["kernel"], old["g_s_2"]["kernel"])


def test_staged_package_round_trips_through_real_bytes(factorized, staged, tmp_path):
    _, config, params = staged
    params = {**params, "g_s_5": {**params["g_s_5"], "expand": {  # not the identity
        "kernel": np.full_like(params["g_s_5"]["expand"]["kernel"], 0.5), "bias": params["g_s_5"]["expand"]["bias"]}}}
    # Encoder and entropy model are the start's, so are its tables (finalize builds them anew).
    package = dataclasses.replace(factorized, config=config, params=params)
    package.save(tmp_path / "staged.jxlm")
    loaded = ModelPackage.load(tmp_path / "staged.jxlm")
    assert loaded.config == config and loaded.fingerprint == package.fingerprint != factorized.fingerprint
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = compress(package, pixels)
    x = jnp.asarray(pixels[None] / 255.0, jnp.float32)
    y = np.asarray(package.transforms.analysis(x))
    np.testing.assert_array_equal(decode_latents(loaded, data).y_symbols, np.round(y - package.transforms.medians))
    decoded = decompress(loaded, data)
    np.testing.assert_array_equal(decoded, decompress(package, data))
    x_hat = package.model.apply({"params": package.params}, x, "round")["x_hat"]
    expected = np.clip(np.round(255 * np.asarray(x_hat[0], np.float64)), 0, 255)
    assert np.abs(decoded.astype(np.float64) - expected).max() <= 1  # the staged g_s is what decodes
    with pytest.raises(ModelMismatchError):  # the start package refuses the staged stream
        decompress(factorized, data)


def test_pruning_refuses_a_staged_decoder_without_gdn(factorized, staged):
    package = dataclasses.replace(factorized, config=staged[1], params=staged[2])
    with pytest.raises(ConfigError, match="pruning needs a GDN"):
        prune_task(package, PruneSchedule.parse("magnitude", "1:0.5"))
    with pytest.raises(ConfigError, match="pruning needs a GDN"):
        compose_task(staged[1], staged[2], Parts(prune=PruneSchedule.parse("channel", "1:0.5")))


def test_bad_stage_on_the_command_line_is_a_typed_error(tmp_path, capsys):
    assert main(["asym", "--init", str(tmp_path / "none.jxlm"), "--stage", "3=res", "--out", str(tmp_path / "o")]) == 2
    assert "block 3 takes one of" in capsys.readouterr().err


def _one_step(task, batch):
    tx = make_optimizer(1e-3, 10)
    tx = tx if task.optimizer is None else task.optimizer(tx)
    step = make_train_step(task.forward, task.terms, tx)
    state = init_state(task.init_params(0), tx, task.terms, 0)
    before = jax.device_get(state.params)
    state, metrics = step(state, batch)
    return before, jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [0.0, 0.1])
def test_one_step_distills_and_keeps_or_slows_the_encoder(hyper, scale):
    """Encoder frozen exactly (scale 0) or moved at 0.1x the decoder's Adam step; distill in the loss."""
    teacher = hyper
    task = stage_task(teacher, Substitution.parse("3=deconv3"), encoder_lr_scale=scale, latent_weight=1.0)
    batch = jnp.asarray(np.random.default_rng(2).random((2, 64, 64, 3), dtype=np.float32))
    before, after, metrics = _one_step(task, batch)
    assert metrics["loss"] == pytest.approx(metrics["loss/rd"] + metrics["loss/distill"], rel=1e-6)
    assert metrics["loss/distill"] > 0 and metrics["distill/output"] > 0
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), after, before)
    encoder = max(v for k, sub in moved.items() if not k.startswith("g_s") for v in jax.tree.leaves(sub))
    decoder = max(v for k, sub in moved.items() if k.startswith("g_s") for v in jax.tree.leaves(sub))
    assert decoder == pytest.approx(1e-3, rel=0.01)  # Adam's first step: lr per element
    assert encoder == (0.0 if scale == 0 else pytest.approx(1e-4, rel=0.01))


@pytest.mark.slow
def test_asym_command_trains_stages_and_the_scratch_baseline(hyper, tmp_path, capsys):
    hyper.save(tmp_path / "start.jxlm")
    common = ["--init", str(tmp_path / "start.jxlm"), "--stage", "2=res:4", "--stage", "3=deconv3", "--steps", "2",
              "--batch-size", "2", "--crop", "64", "--log-every", "1"]
    assert main(["asym", *common, "--out", str(tmp_path / "staged")]) == 0
    stages = [ModelPackage.load(tmp_path / "staged" / f"stage{k}" / "model.jxlm") for k in (1, 2)]
    final = ModelPackage.load(tmp_path / "staged" / "model.jxlm")
    assert [p.config.decoder[2:] for p in stages] == [("res", "deconv5"), ("res", "deconv3")]
    assert final.fingerprint == stages[1].fingerprint
    for name in ("g_a_0", "h_s_2", "entropy_bottleneck"):  # the frozen encoder, through both stages
        jax.tree.map(np.testing.assert_array_equal, final.params[name], jax.device_get(hyper.params[name]))
    log = [json.loads(line) for line in (tmp_path / "staged" / "stage2" / "metrics.jsonl").open()]
    assert all(r["loss/distill"] > 0 for r in log)
    assert main(["asym", *common, "--scratch", "--out", str(tmp_path / "scratch")]) == 0
    scratch = ModelPackage.load(tmp_path / "scratch" / "model.jxlm")
    assert scratch.config == final.config
    log = [json.loads(line) for line in (tmp_path / "scratch" / "metrics.jsonl").open()]
    assert len(log) == 4 and "loss/distill" not in log[0]
    assert "decoder" in capsys.readouterr().out
