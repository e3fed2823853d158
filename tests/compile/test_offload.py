"""Offload plans of real integer graphs: VTA layers on the simulator + host ops in the NumPy
reference == the NumPy reference alone, bit for bit; placement counts and the MAC share."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from compile.vta.config import load_config
from compile.vta.offload import plan_offload, run_graph, run_layer, tensor_shapes
from compile.vta.program import Program
from jaxlic.errors import IntegerizationError, VTAScheduleError
from jaxlic.quant import reference
from jaxlic.quant.graph import IntegerGraph, Op

_spec = importlib.util.spec_from_file_location("quant_conftest", Path(__file__).parents[1] / "quant" / "conftest.py")
quant = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quant)

PYNQ = load_config("pynq")
# (VTA layers, host convolutions) per case: every g_s/h_s conv + requantize and every GDN pool
# (int16 planes) runs on VTA; the hyperprior's scale conv feeds scale_index (32-bit), mbt's h_s
# convs feed leaky ReLUs and its means conv a 32-bit requantize.
EXPECTED = {("bmshj2018-factorized", "gdn"): (7, 0), ("bmshj2018-factorized", "simplified"): (7, 0),
            ("bmshj2018-hyperprior", "gdn"): (9, 1), ("mbt2018-mean", "simplified"): (7, 4)}


@pytest.fixture(scope="module")
def graphs():
    """The integer graphs of the tiny lively zoo models (about two minutes on 2 busy cores)."""
    from jaxlic.codec import build_tables
    from jaxlic.models import model_config
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate

    result = {}
    for arch, gdn in quant.CASES:
        config = model_config(arch, 3, quant.WIDTH, gdn)
        package = build_tables(config, quant.lively_params(config))
        calibration = calibrate(package.config, package.params, [quant.image_batch(2, 64)])
        result[(arch, gdn)] = integerize(package.config, package.params, calibration).integer
    return result


def _inputs(graph: IntegerGraph, y_hw: tuple[int, int], seed: int) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    shapes = {name: (1, *(y_hw if name == "y_symbols" else (y_hw[0] // 4, y_hw[1] // 4)), c)
              for name, c in graph.inputs.items()}
    return shapes, {name: rng.integers(-12, 13, shape).astype(np.int32) for name, shape in shapes.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", quant.CASES, ids="-".join)
def test_graph_with_vta_layers_equals_the_reference(graphs, case):
    graph = graphs[case]
    # Odd latent sizes: y 5x7 and 3x9 (factorized), z 3x5 and 1x3 (hyperpriors: y is 4x z).
    sizes = [(5, 7), (3, 9)] if "factorized" in case[0] else [(12, 20), (4, 12)]
    for seed, y_hw in enumerate(sizes):
        shapes, inputs = _inputs(graph, y_hw, seed)
        plan = plan_offload(graph, shapes, PYNQ)
        assert (len(plan.layers), sum(name in _convs(graph) for name, _ in plan.host_ops)) == EXPECTED[case]
        got = run_graph(graph, plan.layers, inputs)
        want = reference.run(graph, inputs)
        for name in graph.outputs:
            assert got[name].dtype == want[name].dtype
            np.testing.assert_array_equal(got[name], want[name])
        assert want["pixels"].std() > 1
        assert {layer.out_dtype for layer in plan.layers} == {"int8", "uint8", "int16"}


def _convs(graph: IntegerGraph) -> set[str]:
    return {op.name for op in graph.ops if op.kind in ("conv2d", "conv2d_transpose")}


def test_plan_reports_placement_and_reasons():
    graph = hyperprior_graph(8, 12)
    shapes, inputs = _inputs(graph, (8, 12), 3)
    plan = plan_offload(graph, shapes, PYNQ)
    reasons = dict(plan.host_ops)
    assert "scale_index" in reasons["h_s_4"] and "8 bits" in reasons["h_s_4"]
    assert "no multiply" in reasons["g_s_1.mul"] and "lookup" in reasons["scale_index"]
    pixels = next(layer for layer in plan.layers if layer.output == "pixels")
    assert pixels.out_dtype == "uint8" and pixels.program.meta["depth_to_space"] == 2
    assert pixels.out_shape == (1, 128, 192, 3) and pixels.macs == 64 * 96 * 8 * 3 * 25
    pool = next(layer for layer in plan.layers if layer.conv == "g_s_1.pool")
    assert pool.out_dtype == "int16" and "output_hi" in pool.program.buffers
    rows = plan.table()
    assert [r["name"] for r in rows][:6] == [op.name for op in graph.ops if op.name not in
                                             {layer.requantize for layer in plan.layers}][:6]
    assert all(0 < r["util"] <= 1 and r["cycles"] > 0 for r in rows if r["placement"] == "vta")
    assert 0 < plan.vta_mac_share() < 1
    # One layer alone, and its program through bytes (as a bundle stores it).
    x = reference.run(graph, inputs, [pool.input])[pool.input]
    stored = Program.from_bytes(pool.program.to_bytes(), "pool")
    np.testing.assert_array_equal(run_layer(pool, x), reference.run(graph, {pool.input: x}, [pool.output])[pool.output])
    assert stored.insns == pool.program.insns and stored.meta == json.loads(json.dumps(pool.program.meta))
    assert stored.segments == pool.program.segments and stored.buffers == pool.program.buffers


def test_bad_shapes_fail_clearly():
    graph = hyperprior_graph(8, 12)
    with pytest.raises(IntegerizationError, match="needs an NHWC shape with 12 channels"):
        tensor_shapes(graph, {"z_symbols": (1, 1, 1, 8), "y_symbols": (1, 4, 4, 5)})
    with pytest.raises(VTAScheduleError, match="batch 1"):
        plan_offload(graph, {"z_symbols": (2, 1, 1, 8), "y_symbols": (2, 4, 4, 12)}, PYNQ)
    plan = plan_offload(graph, {"z_symbols": (1, 1, 1, 8), "y_symbols": (1, 4, 4, 12)}, PYNQ)
    with pytest.raises(VTAScheduleError, match="takes"):
        run_layer(plan.layers[0], np.zeros((1, 5, 4, 8), np.int8))


def hyperprior_graph(n: int, m: int, seed: int = 0) -> IntegerGraph:
    """A graph shaped as `jaxlic quantize` exports bmshj2018-hyperprior (GDN), random constants:
    the MAC share and placement need no trained (or JAX-initialized) model."""
    rng = np.random.default_rng(seed)
    ops, consts = [], {}

    def op(name, kind, inputs, output=None, attrs=None, **constants):
        for role, value in constants.items():
            consts[f"{name}.{role}"] = value
        ops.append(Op(name, kind, tuple(inputs), output or name, attrs or {},
                      {role: f"{name}.{role}" for role in constants}))
        return output or name

    def conv(name, x, cin, cout, k, transposed=True, output=None):
        attrs = {"stride": 2 if transposed else 1, "padding": k // 2} | ({"output_padding": 1} if transposed else {})
        return op(name, "conv2d_transpose" if transposed else "conv2d", [x], output or f"{name}.acc", attrs,
                  weight=rng.integers(-20, 21, (k, k, cin, cout)).astype(np.int8),
                  bias=rng.integers(-3000, 3000, cout).astype(np.int32))

    def requantize(name, x, channels, shifts, lo, hi, output=None):
        shift = rng.integers(shifts[0], shifts[1] + 1, channels).astype(np.int32)
        return op(name, "requantize", [x], output, {"lo": lo, "hi": hi}, shift=shift)

    def latent(name, channels, k):
        t = requantize(f"{name}.symbols", f"{name}_symbols", channels, (0, 0), -32768, 32767)
        t = requantize(f"{name}.scaled", t, channels, (-k, -k), -(1 << 23), 1 << 23)
        t = op(f"{name}.offset", "add_channel", [t], addend=rng.integers(-9, 9, channels).astype(np.int32))
        return requantize(f"{name}.clamp", t, channels, (0, 0), -127, 127, output=name)

    x = latent("z", n, 3)
    x = requantize("h_s_1.requantize", conv("h_s_0", x, n, n, 5), n, (6, 8), 0, 127, "h_s_1")
    x = requantize("h_s_3.requantize", conv("h_s_2", x, n, n, 5), n, (6, 8), 0, 127, "h_s_3")
    conv("h_s_4", x, n, m, 3, transposed=False, output="scales")
    op("scale_index", "scale_index", ["scales"], thresholds=np.sort(rng.integers(-9000, 9000, (m, 20)), 1).astype(np.int32))
    x = latent("y", m, 3)
    cin = m
    for i in range(3):
        x = requantize(f"g_s_{2 * i}.requantize", conv(f"g_s_{2 * i}", x, cin, n, 5), n, (6, 8), -127, 127, f"g_s_{2 * i}")
        gdn = f"g_s_{2 * i + 1}"
        pooled = requantize(f"{gdn}.pooled", op(f"{gdn}.square", "square", [x]), n, (7, 7), 0, 127)
        pool = op(f"{gdn}.pool", "conv2d", [pooled], f"{gdn}.pool_acc", {"stride": 1, "padding": 0},
                  weight=rng.integers(0, 30, (1, 1, n, n)).astype(np.int8), bias=rng.integers(1, 3000, n).astype(np.int32))
        norm = op(f"{gdn}.sqrt", "isqrt", [requantize(f"{gdn}.pool16", pool, n, (0, 1), 0, 32767)],
                  pre_shift=np.full(n, 16, np.int32))
        x = requantize(f"{gdn}.requantize", op(f"{gdn}.mul", "mul", [x, norm]), n, (12, 14), -127, 127, gdn)
        cin = n
    requantize("g_s_6.requantize", conv("g_s_6", x, n, 3, 5), 3, (4, 5), 0, 255, "pixels")
    return IntegerGraph({"z_symbols": n, "y_symbols": m}, tuple(ops), consts, ("scale_index", "pixels"))


def test_synthetic_hyperprior_with_vta_layers_equals_the_reference():
    graph = hyperprior_graph(24, 40, seed=1)
    shapes, inputs = _inputs(graph, (4, 8), 5)
    plan = plan_offload(graph, shapes, PYNQ)
    assert len(plan.layers) == 9 and {layer.out_dtype for layer in plan.layers} == {"int8", "uint8", "int16"}
    got, want = run_graph(graph, plan.layers, inputs), reference.run(graph, inputs)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    assert len(np.unique(want["pixels"])) > 20 and len(np.unique(want["scale_index"])) > 5


def test_hyperprior_at_width_half_runs_95_percent_of_macs_on_vta():
    graph = hyperprior_graph(64, 96)
    plan = plan_offload(graph, {"z_symbols": (1, 2, 3, 64), "y_symbols": (1, 8, 12, 96)}, load_config("zcu104"))
    assert len(plan.layers) == 9 and plan.vta_mac_share() >= 0.95
    assert [name for name, _ in plan.host_ops if name in _convs(graph)] == ["h_s_4"]
