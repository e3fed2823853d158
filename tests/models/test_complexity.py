"""Parameter and MAC counters and the `jaxlic models` listing."""

from __future__ import annotations

import re

import jax
import pytest

import jaxlic.cli
from jaxlic.cli import main
from jaxlic.models import get_model, init_params, model_config
from jaxlic.models.complexity import DECODER_PARTS, ENCODER_PARTS, layer_macs, macs_per_pixel, model_complexity, param_count

ROW = re.compile(r"^(\S+)\s+(\d)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+(yes|no)$", re.MULTILINE)


def test_encoder_and_decoder_shares_follow_the_layers() -> None:
    config = model_config("mbt2018-mean", 2)
    macs = layer_macs(config)
    info = model_complexity(config)
    side = {k: sum(v for name, v in macs.items() if name.startswith(k)) for k in ("g_a", "g_s", "h_a", "h_s")}
    assert info["encoder_macs"] == pytest.approx(side["g_a"] + side["h_a"] + side["h_s"])
    assert info["decoder_macs"] == pytest.approx(side["g_s"] + side["h_s"])
    assert macs_per_pixel(config, ENCODER_PARTS) == pytest.approx(info["encoder_macs"])
    assert macs_per_pixel(config, DECODER_PARTS) == pytest.approx(info["decoder_macs"])
    assert macs_per_pixel(config) == pytest.approx(sum(side.values()))
    params = jax.eval_shape(lambda: init_params(get_model("mbt2018-mean", 2), 0))
    assert info["params"] == param_count(params) == 7_028_003 and not info["context_model"]  # CompressAI's count


def test_models_lists_every_quality_with_its_complexity(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jaxlic.cli, "COMMAND_MODULES", ("jaxlic.cli.models_cmds",))
    assert main(["models", "--model", "bmshj2018-factorized", "--model", "bmshj2018-hyperprior", "--width", "0.5"]) == 0
    rows = ROW.findall(capsys.readouterr().out)
    assert [(r[0], int(r[1])) for r in rows] == [(a, q) for a in ("bmshj2018-factorized", "bmshj2018-hyperprior") for q in range(1, 9)]
    for name, quality, n, m, lmbda, params, enc, dec, context in rows:
        config = model_config(name, int(quality), 0.5)
        assert (int(n), int(m), float(lmbda)) == (config.N, config.M, round(config.lmbda, 4))
        assert context == "no"
        assert (float(enc) == float(dec)) == (name == "bmshj2018-factorized")
        if quality not in ("1", "8"):  # the two channel counts of these models
            continue
        model = get_model(name, int(quality), 0.5)
        assert int(params.replace(",", "")) == param_count(jax.eval_shape(lambda: init_params(model, 0)))
        assert float(enc) == pytest.approx(macs_per_pixel(config, ENCODER_PARTS) / 1e3, abs=0.06)
        assert float(dec) == pytest.approx(macs_per_pixel(config, DECODER_PARTS) / 1e3, abs=0.06)
