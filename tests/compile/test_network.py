"""Whole decoders: simulator == NumPy integer reference; perf tables; sizing; the CLI."""

import numpy as np
import pytest

from compile.cli import main
from compile.vta.config import load_config
from compile.vta.network import decoder, layer_table, lower_network, random_params, reference, simulate, width_channels
from compile.vta.sizing import size_model


def _run(arch, resolution, width, config_name, seed=0, hidden=None):
    network = decoder(arch, resolution, width_channels(width), hidden)
    params = random_params(network, seed)
    rng = np.random.default_rng(seed + 1)
    inputs = {k: rng.integers(-40, 40, (1, *shape), dtype=np.int8) for k, shape in network.inputs.items()}
    lowered = lower_network(network, load_config(config_name), params)
    outputs, counters = simulate(lowered, inputs)
    want = reference(network, params, inputs)
    return outputs, want, counters, lowered


@pytest.mark.parametrize("arch, resolution, width", [("factorized", (96, 64), 1.0), ("hyperprior", (128, 64), 0.5)])
def test_decoder_bit_exact(arch, resolution, width):
    outputs, want, counters, _ = _run(arch, resolution, width, "pynq")
    for name, got in outputs.items():
        np.testing.assert_array_equal(got, want[name])
        assert want[name].std() > 1  # random layers still carry signal to the end
    assert counters.gemm_counter > 0 and counters.inp_load_nbytes > 0


def test_channel_pruned_decoder_bit_exact():
    """g_s with other channels per layer (a channel-pruned package's `hidden`)."""
    outputs, want, _, lowered = _run("factorized", (64, 32), 0.25, "pynq", hidden=(24, 40, 16))
    np.testing.assert_array_equal(outputs["g_s.6"], want["g_s.6"])
    assert [lowered.network.steps[i].layer.out_channels for i in (0, 4, 8)] == [24, 40, 16]


@pytest.mark.slow
def test_synthesis_transform_on_64x64_latent_bit_exact():
    """Acceptance: the whole g_s (192->128 channels) on a 64x64 latent, 1024x1024 output."""
    outputs, want, _, _ = _run("factorized", (1024, 1024), 1.0, "sim", seed=5)
    np.testing.assert_array_equal(outputs["g_s.6"], want["g_s.6"])


def test_width_channels_rounding():
    assert width_channels(1.0) == (128, 192) and width_channels(0.5) == (64, 96)
    assert width_channels(0.875) == (112, 176) and width_channels(0.05) == (16, 16)


def test_layer_table_and_sizing_are_consistent():
    config = load_config("ultra96")
    rows = layer_table(lower_network(decoder("factorized", (256, 256), (64, 96)), config))
    assert [r["layer"] for r in rows][:2] == ["g_s.0", "igdn0.pool"] and all(0 < r["util"] <= 1 for r in rows)
    candidates, best = size_model(config, "factorized", (256, 256), 30.0, (1.0, 0.5, 0.25), progress=False)
    rates = [c.fps for c in candidates]
    assert rates == sorted(rates)  # narrower decoders are faster
    assert best is None or (best.fps >= 30 and all(not c.meets for c in candidates if c.width > best.width))


def test_cli_lower_disasm_simulate(tmp_path, capsys):
    program = tmp_path / "layer.vtaprog"
    assert main(["lower", "--config", "sim", "--layer", "kind=conv,cin=20,cout=33,k=3,s=2,p=1,shift=9",
                 "--input", "9x7", "-o", str(program)]) == 0
    assert main(["disasm", str(program), "--uops"]) == 0
    listing = capsys.readouterr().out
    assert "FINISH" in listing and "GEMM" in listing and "dst=" in listing
    assert main(["simulate", str(program), "--no-mul"]) == 0
    assert "bit-exact: yes" in capsys.readouterr().out


def test_cli_bad_inputs_fail_clearly(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.vtaprog"
    program = tmp_path / "ok.vtaprog"
    main(["lower", "--layer", "kind=conv,cin=16,cout=16,k=1", "--input", "4x4", "-o", str(program)])
    data = bytearray(program.read_bytes())
    corrupt.write_bytes(bytes(data[:-7]))
    assert main(["disasm", str(corrupt)]) == 2
    assert "truncated" in capsys.readouterr().err
    bad_config = tmp_path / "bad.json"
    bad_config.write_text('{"TARGET": "pynq"}')
    assert main(["estimate", "--config", str(bad_config), "--model", "hyperprior", "--resolution", "64x64"]) == 2
    assert "missing field" in capsys.readouterr().err
    assert main(["lower", "--layer", "kind=conv,cin=4096,cout=16,k=5", "--input", "8x8", "-o", str(program)]) == 2
    assert "no tiling fits" in capsys.readouterr().err
