"""The integer primitives added for the graph: per-channel/left-shift requantize, isqrt, and
their JAX twins (each op through a one-op graph, JAX == NumPy)."""

import math

import numpy as np
import pytest

from jaxlic.quant import execute, reference
from jaxlic.quant.graph import IntegerGraph, Op
from jaxlic.quant.intops import isqrt, output_dtype, requantize


def test_requantize_per_channel_rounds_half_up_and_shifts_left():
    acc = np.array([[5, -5, 300, 7], [6, -6, -300, -7]], np.int32)
    got = requantize(acc, np.array([1, 1, 0, -2]), -32768, 32767)
    np.testing.assert_array_equal(got, [[3, -2, 300, 28], [3, -3, -300, -28]])
    assert got.dtype == np.int16
    assert requantize(acc, 0, 0, 255).dtype == np.uint8 and requantize(acc, 0).dtype == np.int8
    with pytest.raises(ValueError):
        requantize(acc, np.array([1, 2, 32, 0]))


def test_requantize_wraps_like_the_32_bit_alu():
    top = np.array([2**31 - 1], np.int32)
    # The rounding add wraps to INT32_MIN before the shift, as VTA's ALU would.
    assert requantize(top, 1, -(2**31), 2**31 - 1)[0] == -(2**30)
    assert requantize(np.array([2**30], np.int32), -1, -(2**31), 2**31 - 1)[0] == -(2**31)


def test_output_dtype_picks_the_smallest_type():
    assert [output_dtype(*r) for r in [(-127, 127), (0, 255), (0, 32767), (-(2**23), 2**23)]] == \
        [np.int8, np.uint8, np.int16, np.int32]


def test_isqrt_is_exact_floor():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(0, 2**31 - 1, 20000), np.arange(0, 5000),
                             [k * k + d for k in (46339, 46340, 1 << 15) for d in (-1, 0, 1) if k * k + d < 2**31]])
    values = values.astype(np.int32)
    np.testing.assert_array_equal(isqrt(values), [math.isqrt(int(v)) for v in values])
    np.testing.assert_array_equal(isqrt(np.array([-7, -(2**31)], np.int32)), [0, 0])


def _one_op_graph(kind, attrs, consts, channels, second_input=False, clamp=None):
    """x [, b] -> (optional clamp of x to +-clamp, so left shifts provably fit) -> op -> out."""
    inputs = {"x": channels} | ({"b": channels} if second_input else {})
    ops, sources = [], list(inputs)
    if clamp is not None:
        ops = [Op(f"clamp_{n}", "requantize", (n,), f"{n}.clamped", {"lo": -clamp, "hi": clamp}, {"shift": "clamp.shift"})
               for n in inputs]
        sources = [f"{n}.clamped" for n in inputs]
    ops.append(Op("op", kind, tuple(sources), "out", attrs, {r: f"op.{r}" for r in consts}))
    constants = {f"op.{r}": v for r, v in consts.items()} | {"clamp.shift": np.zeros(channels, np.int32)}
    return IntegerGraph(inputs, tuple(ops), constants, ("out",))


@pytest.mark.parametrize("case", ["requantize", "requantize_left", "isqrt", "leaky", "scale_index", "mul", "add"])
def test_elementwise_ops_jax_equals_numpy(case):
    rng = np.random.default_rng(1)
    c = 5
    x = rng.integers(-(2**20), 2**20, (2, 3, 4, c)).astype(np.int32)
    second = None
    if case == "requantize":
        graph = _one_op_graph("requantize", {"lo": -127, "hi": 127}, {"shift": np.array([0, 1, 5, 13, 20], np.int32)}, c,
                              clamp=2**30)
    elif case == "requantize_left":
        graph = _one_op_graph("requantize", {"lo": -(2**31), "hi": 2**31 - 1},
                              {"shift": np.array([0, -1, -3, -7, -10], np.int32)}, c, clamp=2**20)
    elif case == "isqrt":
        x = np.abs(x)
        graph = _one_op_graph("isqrt", {}, {"pre_shift": np.array([0, 1, 5, 9, 10], np.int32)}, c, clamp=2**20)
    elif case == "leaky":
        graph = _one_op_graph("leaky_relu", {"shift": 7}, {}, c)
    elif case == "scale_index":
        thresholds = np.sort(rng.integers(-(2**20), 2**20, (c, 63)), axis=1).astype(np.int32)
        graph = _one_op_graph("scale_index", {}, {"thresholds": thresholds}, c)
    else:
        second = rng.integers(-(2**10), 2**10, x.shape).astype(np.int32)
        graph = _one_op_graph(case, {}, {}, c, second_input=True, clamp=2**15 if case == "mul" else 2**20)
    inputs = {"x": x} | ({"b": second} if second is not None else {})
    want = reference.run(graph, inputs)["out"]
    for jit in (True, False):
        np.testing.assert_array_equal(execute.run(graph, inputs, jit=jit)["out"], want)
    assert np.unique(want).size > 3  # the op did something non-trivial
