"""The integer graph through TVM Relax on this CPU: bit-exact against the NumPy reference, VTA
pairs as packed calls (counted), typed errors."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from compile.tvm import (Function, HostModule, Offload, build, count_packed_calls, elf_facts, export, host_target,
                         register_vta_function, to_relax)
from compile.tvm.targets import X86_HOST
from jaxlic.errors import CompileError, VTAConfigError
from jaxlic.quant import reference
from jaxlic.quant.graph import IntegerGraph, Op

_spec = importlib.util.spec_from_file_location("quant_conftest", Path(__file__).parents[1] / "quant" / "conftest.py")
quant = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quant)


def every_op_graph(transpose_padding: int = 2) -> IntegerGraph:
    """A small graph with every op kind: per-channel and negative (left) shifts, both convs."""
    rng = np.random.default_rng(7)
    i8 = lambda *shape: rng.integers(-127, 128, shape).astype(np.int8)  # noqa: E731
    i32 = lambda lo, hi, *shape: rng.integers(lo, hi, shape).astype(np.int32)  # noqa: E731
    constants = {
        "in.shift": np.zeros(4, np.int32), "up.w": i8(5, 5, 4, 6), "up.b": i32(-999, 999, 6),
        "up.shift": np.array([6, 7, 8, 9, 10, 11], np.int32), "down.w": i8(3, 3, 6, 5), "down.b": i32(-99, 99, 5),
        "down.shift": np.array([9, 10, 11, 12, 5], np.int32), "pool.w": i8(1, 1, 5, 5), "pool.b": i32(0, 99, 5),
        "pre": np.array([0, 1, 2, 3, 4], np.int32), "addend": i32(-50, 50, 5),
        "thresholds": np.sort(rng.integers(-20000, 20000, (5, 9)), axis=1).astype(np.int32),
        "pool.shift": np.array([4, 5, 6, 7, 8], np.int32), "out.shift": np.array([-1, 0, 2, 3, 4], np.int32),
    }
    ops = (
        Op("in", "requantize", ("x",), "x8", {"lo": -127, "hi": 127}, {"shift": "in.shift"}),
        Op("up", "conv2d_transpose", ("x8",), "up.acc", {"stride": 2, "padding": transpose_padding,
                                                        "output_padding": 1}, {"weight": "up.w", "bias": "up.b"}),
        Op("up.rq", "requantize", ("up.acc",), "up8", {"lo": -127, "hi": 127}, {"shift": "up.shift"}),
        Op("down", "conv2d", ("up8",), "down.acc", {"stride": 2, "padding": 1}, {"weight": "down.w", "bias": "down.b"}),
        Op("leaky", "leaky_relu", ("down.acc",), "leaky", {"shift": 3}),
        Op("down.rq", "requantize", ("leaky",), "d8", {"lo": -127, "hi": 127}, {"shift": "down.shift"}),
        Op("abs", "abs", ("d8",), "a8"),
        Op("square", "square", ("d8",), "sq"),
        Op("pool", "conv2d", ("a8",), "pool.acc", {"stride": 1, "padding": 0}, {"weight": "pool.w", "bias": "pool.b"}),
        Op("pool.rq", "requantize", ("pool.acc",), "p16", {"lo": 0, "hi": 32767}, {"shift": "pool.shift"}),
        Op("sqrt", "isqrt", ("p16",), "root", {}, {"pre_shift": "pre"}),
        Op("mul", "mul", ("d8", "root"), "prod"),
        Op("add", "add", ("prod", "sq"), "sum"),
        Op("shift", "add_channel", ("sum",), "shifted", {}, {"addend": "addend"}),
        Op("index", "scale_index", ("shifted",), "index", {}, {"thresholds": "thresholds"}),
        Op("out", "requantize", ("shifted",), "out", {"lo": 0, "hi": 255}, {"shift": "out.shift"}),
    )
    return IntegerGraph({"x": 4}, ops, constants, ("index", "out"))


@pytest.fixture(scope="module")
def graph():
    return every_op_graph()


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).integers(-300, 300, (1, 5, 7, 4)).astype(np.int32)


def _vta_pair(graph: IntegerGraph, offloads):
    """A test VTA-layer function computing each offloaded pair with the reference ops."""
    def vta_layer(index, x):
        offload = next(o for o in offloads if o.index == index)
        conv = next(op for op in graph.ops if op.name == offload.conv)
        return reference.run(graph, {conv.inputs[0]: x}, [offload.output])[offload.output]
    return vta_layer


def test_every_op_bit_exact_with_the_reference(graph, x):
    module, names = to_relax(graph, {"x": x.shape})
    assert count_packed_calls(module) == 0
    host = HostModule(build(module), names, graph.constants)
    got, want = host.run({"x": x}, graph.outputs), reference.run(graph, {"x": x})
    for name in graph.outputs:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name])
    assert len(np.unique(want["index"])) > 3 and want["out"].std() > 1  # the values are lively


def test_offloaded_pairs_are_packed_calls_and_stay_exact(graph, x, tmp_path):
    shapes = {"up8": (1, 10, 14, 6), "d8": (1, 5, 7, 5)}
    offloads = [Offload(0, "up", "up.rq", "up8", shapes["up8"], "int8"),
                Offload(1, "down", "down.rq", "d8", shapes["d8"], "int8")]
    # leaky_relu sits between "down" and its requantize: that pair is not offloadable.
    with pytest.raises(CompileError, match="not a requantize reading"):
        to_relax(graph, {"x": x.shape}, offloads)
    offloads = offloads[:1]
    module, names = to_relax(graph, {"x": x.shape}, offloads)
    assert count_packed_calls(module) == len(offloads)
    assert "up.w" not in names and "up.shift" not in names and "down.w" in names
    register_vta_function("jaxlic.vta_layer", _vta_pair(graph, offloads))
    library = export(build(module), tmp_path / "host.so", "sim")
    assert elf_facts(library)["machine"] == "x86_64"
    host = HostModule(library, names, {n: graph.constants[n] for n in names})
    got, want = host.run({"x": x}, graph.outputs), reference.run(graph, {"x": x})
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])


def test_functions_split_the_graph(graph, x):
    functions = [Function("front", ("x",), ("d8",)), Function("back", ("d8",), ("index", "out"))]
    d8 = reference.run(graph, {"x": x}, ["d8"])["d8"]
    module, names = to_relax(graph, {"x": x.shape, "d8": d8.shape}, functions=functions)
    host = HostModule(build(module), names, graph.constants)
    np.testing.assert_array_equal(host.run({"x": x}, ["d8"])["d8"], d8)
    np.testing.assert_array_equal(host.run({"d8": d8}, ["out"])["out"], reference.run(graph, {"x": x})["out"])
    with pytest.raises(CompileError, match="no function"):
        host.run({"x": x}, ["index"])


def test_typed_errors(graph, x):
    with pytest.raises(CompileError, match="no shape given"):
        to_relax(graph, {})
    with pytest.raises(CompileError, match="static NHWC shape"):
        to_relax(graph, {"x": (1, 5, 7, 3)})
    with pytest.raises(CompileError, match="static NHWC shape"):
        to_relax(graph, {"x": (5, 7, 4)})
    with pytest.raises(CompileError, match="out_shape"):
        to_relax(graph, {"x": x.shape}, [Offload(0, "up", "up.rq", "up8", (1, 9, 14, 6), "int8")])
    with pytest.raises(CompileError, match="sub-pixel"):
        to_relax(every_op_graph(transpose_padding=1), {"x": x.shape})
    with pytest.raises(VTAConfigError, match="no VTA config"):
        host_target("no-such-board")
    module, names = to_relax(graph, {"x": x.shape})
    host = HostModule(build(module), names, graph.constants)
    with pytest.raises(CompileError, match="built for"):
        host.run({"x": x[:, :4]}, graph.outputs)
    with pytest.raises(CompileError, match="missing"):
        HostModule(build(module), names, {})


def test_board_targets():
    assert host_target("sim") == {"kind": "llvm", "mcpu": "x86-64-v3"}
    assert host_target("pynq")["mfloat-abi"] == "hard" and host_target("de10nano")["mattr"] == ["+neon"]
    assert host_target("zcu104")["mtriple"] == host_target("ultra96")["mtriple"] == "aarch64-linux-gnu"


@pytest.mark.slow
@pytest.mark.parametrize("case", quant.CASES, ids="-".join)
def test_zoo_graphs_bit_exact(case):
    """The host build (no offloads) of each tiny zoo model == the NumPy reference at two odd sizes."""
    from jaxlic.codec import build_tables
    from jaxlic.models import model_config
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate

    arch, gdn = case
    config = model_config(arch, 3, quant.WIDTH, gdn)
    package = build_tables(config, quant.lively_params(config))
    calibration = calibrate(package.config, package.params, [quant.image_batch(2, 64)])
    graph = integerize(package.config, package.params, calibration).integer
    rng = np.random.default_rng(0)
    for y_hw in [(5, 7), (3, 9)] if "factorized" in arch else [(12, 20), (4, 12)]:
        shapes = {name: (1, *(y_hw if name == "y_symbols" else (y_hw[0] // 4, y_hw[1] // 4)), c)
                  for name, c in graph.inputs.items()}
        inputs = {name: rng.integers(-12, 13, shape).astype(np.int32) for name, shape in shapes.items()}
        module, names = to_relax(graph, shapes)
        got = HostModule(build(module), names, graph.constants).run(inputs, graph.outputs)
        for name, want in reference.run(graph, inputs).items():
            np.testing.assert_array_equal(got[name], want)


def test_conv_past_float32_exactness_splits_its_input():
    """sum|w| * max|x| = 3*3*128 * 127 * 127 > 2^24: a single float32 conv could round, the
    split x = 16 * (x >> 4) + (x & 15) stays exact."""
    rng = np.random.default_rng(5)
    weight = np.broadcast_to(rng.choice([-127, 127], (128, 8)), (3, 3, 128, 8)).astype(np.int8)
    ops = (Op("in", "requantize", ("x",), "x8", {"lo": -127, "hi": 127}, {"shift": "zero"}),
           Op("conv", "conv2d", ("x8",), "acc", {"stride": 1, "padding": 1}, {"weight": "w", "bias": "b"}))
    graph = IntegerGraph({"x": 128}, ops, {"zero": np.zeros(128, np.int32), "w": weight,
                                          "b": np.arange(8, dtype=np.int32)}, ("acc",))
    x = (np.where(weight[1, 1, :, 0] > 0, 127, -127)[None, None, None, :] * np.ones((1, 3, 5, 1))).astype(np.int32)
    x[0, 0, 0, :5] = rng.integers(-127, 128, 5)
    module, names = to_relax(graph, {"x": x.shape})
    got = HostModule(build(module), names, graph.constants).run({"x": x}, ["acc"])["acc"]
    want = reference.run(graph, {"x": x})["acc"]
    assert np.abs(want).max() > 1 << 24
    np.testing.assert_array_equal(got, want)


def test_isqrt_is_exact_at_every_square_boundary():
    roots = np.arange(46341, dtype=np.int64)
    values = np.concatenate([roots ** 2 - 1, roots ** 2, roots ** 2 + 1, [2 ** 31 - 1, 2 ** 31 - 2, -5]])
    values = np.clip(values, -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    size = -(-values.size // 64) * 64
    x = np.pad(values, (0, size - values.size)).reshape(1, size // 64, 64, 1)
    graph = IntegerGraph({"x": 1}, (Op("root", "isqrt", ("x",), "root", {}, {"pre_shift": "pre"}),),
                         {"pre": np.zeros(1, np.int32)}, ("root",))
    module, names = to_relax(graph, {"x": x.shape})
    got = HostModule(build(module), names, graph.constants).run({"x": x}, ["root"])["root"]
    np.testing.assert_array_equal(got, reference.run(graph, {"x": x})["root"])



@pytest.mark.parametrize("kernel, stride, output_padding, cin, size", [
    (5, 2, 1, 8, (5, 7)), (5, 2, 0, 8, (4, 6)), (4, 2, 0, 4, (3, 5)), (6, 3, 1, 4, (3, 4)), (5, 2, 1, 128, (3, 4))])
@pytest.mark.parametrize("target", [None, X86_HOST], ids=["this-machine", "x86-64-v3"])
def test_upsampling_conv_by_phases_is_exact(kernel, stride, output_padding, cin, size, target):
    """Transposed convolutions with 16 output channels run as per-phase convolutions (only each
    phase's taps) interleaved in one kernel: exact for 5x5 / 2, a cropped output (no output
    padding), 4x4 / 2 and 6x6 / 3 (equal phases), a width that no column tile divides, and
    weights whose phase sums pass 2^24 (cin = 128: the input split); with this machine's tile
    (AVX-512 where it has it) and the portable AVX2 one."""
    rng = np.random.default_rng(kernel * cin)
    weight = rng.choice([-127, 127], (kernel, kernel, cin, 16)).astype(np.int8)
    ops = (Op("in", "requantize", ("x",), "x8", {"lo": -127, "hi": 127}, {"shift": "zero"}),
           Op("up", "conv2d_transpose", ("x8",), "acc", {"stride": stride, "padding": (kernel - 1) // 2,
                                                       "output_padding": output_padding}, {"weight": "w", "bias": "b"}),
           Op("rq", "requantize", ("acc",), "out", {"lo": -127, "hi": 127}, {"shift": "shift"}))
    constants = {"zero": np.zeros(cin, np.int32), "w": weight, "b": rng.integers(-999, 999, 16).astype(np.int32),
                 "shift": np.arange(8, 24, dtype=np.int32)}
    graph = IntegerGraph({"x": cin}, ops, constants, ("acc", "out"))
    x = rng.integers(-127, 128, (1, *size, cin)).astype(np.int32)
    module, names = to_relax(graph, {"x": x.shape})
    got = HostModule(build(module, target), names, graph.constants).run({"x": x}, ["acc", "out"])
    want = reference.run(graph, {"x": x})
    for name in ("acc", "out"):
        np.testing.assert_array_equal(got[name], want[name])
    assert len(np.unique(want["out"])) > 20
