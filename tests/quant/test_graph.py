"""The integer graph: what the exporter emits, files, and clear errors for bad graphs and
models that have no integer form."""

import json
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.codec import ModelPackage
from jaxlic.errors import IntegerizationError, PackageError
from jaxlic.models import build_model, model_config
from jaxlic.models.layers import Activation, conv, deconv
from jaxlic.nn import GDN
from jaxlic.nn.gdn import effective, reparametrize
from jaxlic.quant.export import integerize
from jaxlic.quant.graph import OP_KINDS, IntegerGraph
from jaxlic.quant.lowering import Calibration, calibrate, lower_decoder, to_graph

from conftest import CASES, WIDTH, image_batch, lively_params


@pytest.mark.parametrize("arch, gdn", CASES)
def test_exported_graph_is_a_vta_friendly_decoder(int_packages, arch, gdn):
    graph = int_packages[arch, gdn].integer
    kinds = {op.kind for op in graph.ops}
    assert "isqrt" in kinds if gdn == "gdn" else "isqrt" not in kinds
    # Every requantization is add-shift-clamp with a right shift, except the latent inputs'
    # exact "symbol << k" and the GDN pool's "P16 << 8" on the host (beta joins it there).
    for op in graph.ops:
        if op.kind == "requantize" and not op.name.endswith((".scaled", ".pool23")):
            assert graph.constants[op.consts["shift"]].min() >= 0, op.name
        if op.kind in ("conv2d", "conv2d_transpose"):
            assert graph.constants[op.consts["weight"]].dtype == np.int8 and op.placement == "vta"
            assert np.abs(graph.constants[op.consts["weight"]]).max() <= 127
    conv_inputs = {op.inputs[0] for op in graph.ops if op.kind.startswith("conv")}
    assert all(graph.info[name].dtype == np.int8 for name in conv_inputs)
    assert graph.info["pixels"].dtype == np.uint8
    if arch != "bmshj2018-factorized":
        assert graph.info["scale_index"].hi == len(int_packages[arch, gdn].scale_table) - 1 == 255
    for bound in graph.meta["igdn"].values():
        assert 0 < bound["max_relative_error"] < 1e-2


def test_graph_file_round_trip(int_packages, tmp_path):
    graph = int_packages["mbt2018-mean", "simplified"].integer
    graph.save(tmp_path / "g.npz")
    loaded = IntegerGraph.load(tmp_path / "g.npz")
    assert loaded.spec_json() == graph.spec_json()
    assert all(np.array_equal(loaded.constants[k], v) for k, v in graph.constants.items())
    spec = json.loads(graph.spec_json())
    assert {op["op"] for op in spec["ops"]} <= set(OP_KINDS)
    assert spec["inputs"] == [{"name": "z_symbols", "dtype": "int32", "channels": 8},
                              {"name": "y_symbols", "dtype": "int32", "channels": 12}]


def test_integer_package_round_trip_and_fingerprint(int_packages, float_packages, tmp_path):
    key = ("mbt2018-mean", "simplified")
    path = tmp_path / "int.jxlm"
    int_packages[key].save(path)
    loaded = ModelPackage.load(path)
    assert loaded.integer.spec_json() == int_packages[key].integer.spec_json()
    assert loaded.fingerprint == int_packages[key].fingerprint != float_packages[key].fingerprint


def _rewrite(graph: IntegerGraph, path, spec_edit=None, drop=None, replace=None):
    spec = json.loads(graph.spec_json())
    if spec_edit:
        spec_edit(spec)
    arrays = {k: v for k, v in graph.constants.items() if k != drop}
    arrays.update(replace or {})
    np.savez(path, **{"graph.json": np.frombuffer(json.dumps(spec).encode(), np.uint8)}, **arrays)
    return path


def _op(spec, name):
    return next(op for op in spec["ops"] if op["name"] == name)


BAD_GRAPHS = {
    "unknown op": (lambda s: _op(s, "g_s_2").update(op="conv3d"), None, None, "'g_s_2' (conv3d): unknown op"),
    "missing constant": (None, "g_s_2.weight", None, "g_s_2.weight"),
    "weight dtype": (lambda s: s["constants"]["g_s_2.weight"].update(dtype="<f4"), None,
                     {"g_s_2.weight": np.zeros((5, 5, 8, 8), np.float32)}, "'g_s_2' (conv2d_transpose): constant"),
    "channel mismatch": (lambda s: s["constants"]["g_s_2.weight"].update(shape=[5, 5, 7, 8]), None,
                         {"g_s_2.weight": np.zeros((5, 5, 7, 8), np.int8)}, "'g_s_2' (conv2d_transpose): weight must be HWIO with 8"),
    "undefined input": (lambda s: _op(s, "g_s_2").update(inputs=["nowhere"]), None, None, "'g_s_2' (conv2d_transpose): input 'nowhere'"),
    "missing attribute": (lambda s: _op(s, "g_s_2")["attrs"].pop("stride"), None, None, "'g_s_2' (conv2d_transpose): needs integer attributes"),
    "overflowing weights": (None, None, {"g_s_2.bias": np.full(8, 2**31 - 1000, np.int32)}, "'g_s_2' (conv2d_transpose): the accumulator"),
    "version": (lambda s: s.update(version=99), None, None, "version 99"),
    "garbage op entry": (lambda s: s["ops"].__setitem__(3, "conv"), None, None, "op 3"),
}


@pytest.mark.parametrize("case", list(BAD_GRAPHS))
def test_malformed_graph_files_name_the_layer(int_packages, tmp_path, case):
    edit, drop, replace, message = BAD_GRAPHS[case]
    path = _rewrite(int_packages["bmshj2018-factorized", "gdn"].integer, tmp_path / "bad.npz", edit, drop, replace)
    with pytest.raises(IntegerizationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        IntegerGraph.load(path)


def test_unreadable_graph_files(tmp_path, int_packages):
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("not a zip")
    good = tmp_path / "good.npz"
    int_packages["bmshj2018-factorized", "gdn"].integer.save(good)
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with zipfile.ZipFile(tmp_path / "nospec.npz", "w") as z:
        z.writestr("x.npy", b"")
    for name in ("empty.npz", "text.npz", "cut.npz", "nospec.npz", "missing.npz"):
        with pytest.raises(IntegerizationError):
            IntegerGraph.load(tmp_path / name)


def test_bad_graph_inside_a_package_is_a_package_error(int_packages, tmp_path):
    package = int_packages["bmshj2018-factorized", "gdn"]
    bad = IntegerGraph.__new__(IntegerGraph)
    bad.__dict__.update(package.integer.__dict__)
    bad.ops = tuple(op for op in package.integer.ops if op.name != "g_s_2")  # dangling inputs
    path = tmp_path / "bad.jxlm"
    ModelPackage(package.config, package.params, package.tables, package.scale_table, bad).save(path)
    with pytest.raises(PackageError, match="bad integer graph.*g_s_2"):
        ModelPackage.load(path)


class _Custom(Activation):
    pass


def _with_layers(config, hyper_layers):
    """A hyperprior module whose h_s is replaced by `hyper_layers` (same parameter shapes)."""
    cls = type(build_model(config))
    patched = type("Patched", (cls,), {"hyper_synthesis_layers": lambda self: hyper_layers(self.config)})
    return patched(config)


@pytest.mark.parametrize("layers, message", [
    (lambda c: [deconv(c.N), Activation(jnp.tanh, "tanh"), deconv(c.N), Activation(jnp.tanh), conv(c.M, 3, 1)],
     "layer h_s_1: activation 'tanh' has no integer form"),
    (lambda c: [deconv(c.N), GDN(), deconv(c.N), Activation(jnp.tanh, "relu"), conv(c.M, 3, 1)],
     "layer h_s_1: forward GDN"),
    (lambda c: [deconv(c.N), Activation(jnp.tanh, "relu"), deconv(c.N), Activation(jnp.tanh, "relu"),
                conv(c.M, 3, 1), Activation(jnp.tanh, "sigmoid")],
     "layer h_s_5: only a ReLU"),
])
def test_models_without_integer_form_name_the_layer(monkeypatch, calibrations, float_packages, layers, message):
    key = ("bmshj2018-hyperprior", "gdn")
    package = float_packages[key]
    model = _with_layers(package.config, layers)
    monkeypatch.setattr("jaxlic.quant.lowering.build_model", lambda config: model)
    with pytest.raises(IntegerizationError, match=message):
        lower_decoder(package.config, package.params, calibrations[key])


def test_calibration_for_another_model_is_refused(float_packages, calibrations):
    package = float_packages["bmshj2018-factorized", "gdn"]
    with pytest.raises(IntegerizationError, match="no range for tensor 'z'"):
        lower_decoder(model_config("bmshj2018-hyperprior", 3, WIDTH), lively_params(model_config("bmshj2018-hyperprior", 3, WIDTH)),
                      calibrations["bmshj2018-factorized", "gdn"])
    nonfinite = {**package.params, "g_s_0": {**package.params["g_s_0"], "bias": package.params["g_s_0"]["bias"] * np.nan}}
    with pytest.raises(IntegerizationError, match="layer g_s_0"):
        to_graph(lower_decoder(package.config, nonfinite, calibrations["bmshj2018-factorized", "gdn"]), package.config)
    assert Calibration.from_json(json.dumps(calibrations["bmshj2018-factorized", "gdn"].to_json())) == \
        calibrations["bmshj2018-factorized", "gdn"]


def test_integer_gdn_keeps_a_small_trained_beta(float_packages):
    """A beta far below its channel's pool peak (long training leaves some) keeps its integer
    form: an int16 pool rounded it to 0 or 1 unit, a bound of 2.6e-01 (0.25 / 1 + 1 / 181)."""
    package = float_packages["bmshj2018-factorized", "gdn"]
    params = dict(package.params)
    params["g_s_1"] = {**params["g_s_1"], "beta": reparametrize(effective(params["g_s_1"]["beta"]).at[0].set(1e-4))}
    graph = integerize(package.config, params, calibrate(package.config, params, [image_batch()])).integer
    assert graph.meta["igdn"]["g_s_1"]["max_relative_error"] < 0.05
    assert graph.constants["g_s_1.beta.addend"].min() >= 1


@pytest.mark.slow  # a second calibration compiles the float walk again (17 s under load)
def test_mse_clipping_refines_activations_but_not_latents_or_pools(float_packages, calibrations):
    """calibrate's default picks, per activation channel, the max-based exponent or a finer one
    (clipping rare peaks) by least squared int8 error; latents and GDN pools keep the max rule."""
    package = float_packages["bmshj2018-hyperprior", "gdn"]
    mse = calibrations["bmshj2018-hyperprior", "gdn"]
    peak = calibrate(package.config, package.params, [image_batch()], clipping="max")
    assert mse.exponents.keys() == peak.exponents.keys()
    finer = 0
    for name in mse.exponents:
        shift = mse[name] - peak[name]
        if name in ("y", "z") or name.endswith(".pool"):
            assert not shift.any(), name
        else:
            assert shift.min() >= 0 and shift.max() <= 3, name
            finer += int((shift > 0).sum())
    assert finer > 0
    with pytest.raises(IntegerizationError, match="clipping"):
        calibrate(package.config, package.params, [image_batch()], clipping="p99")
