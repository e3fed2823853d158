"""Integer convolutions as float32 digit planes: exact against the NumPy reference at the
extremes of int8, for every convolution kind of the zoo, split where one plane is not exact."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.quant import execute, reference
from jaxlic.quant.exact_conv import DIGIT_BITS, FLOAT32_EXACT, compose, digit_planes, float_conv, plan_conv, plan_graph
from jaxlic.quant.graph import IntegerGraph, Op

# (kind, kernel, stride, in, out): the zoo's layers (k5 s2 down, k3 s1, 1x1 GDN pools, k5 s2
# transposed in sub-pixel (narrow) and per-phase (wide) form, the final N -> 3) and wide ones
# whose fan-in needs a digit split.
LAYERS = [("conv2d", 5, 2, 6, 8), ("conv2d", 3, 1, 8, 12), ("conv2d", 1, 1, 16, 16),
          ("conv2d_transpose", 5, 2, 12, 8), ("conv2d_transpose", 5, 2, 8, 16), ("conv2d_transpose", 5, 2, 16, 3),
          ("conv2d", 5, 2, 48, 4), ("conv2d_transpose", 5, 2, 160, 3), ("conv2d", 3, 1, 192, 5)]


def _conv_graph(kind, kernel, stride, weight):
    """x (int32) -> clamp to int8 [-128, 127] -> the convolution -> out (int32)."""
    cin, cout = weight.shape[2], weight.shape[3]
    attrs = {"stride": stride, "padding": kernel // 2}
    if kind == "conv2d_transpose":
        attrs["output_padding"] = stride - 1
    ops = (Op("clamp", "requantize", ("x",), "x8", {"lo": -128, "hi": 127}, {"shift": "clamp.shift"}),
           Op("conv", kind, ("x8",), "out", attrs, {"weight": "conv.weight", "bias": "conv.bias"}))
    bias = np.arange(cout, dtype=np.int32) * 1000 - 7
    constants = {"clamp.shift": np.zeros(cin, np.int32), "conv.weight": weight, "conv.bias": bias}
    return IntegerGraph({"x": cin}, ops, constants, ("out",))


def _extreme(rng, shape, fill):
    """int8 values: all -128, all 127, or a mix of the two extremes and random values."""
    if fill == "mixed":
        return np.where(rng.random(shape) < 0.5, rng.choice([-128, 127], shape), rng.integers(-128, 128, shape))
    return np.full(shape, fill)


@pytest.mark.parametrize("kind, kernel, stride, cin, cout", LAYERS)
@pytest.mark.parametrize("x_fill, w_fill", [(-128, -128), (127, -128), (-128, 127), ("mixed", "mixed")])
def test_float_planes_equal_the_reference_at_the_extremes(kind, kernel, stride, cin, cout, x_fill, w_fill):
    rng = np.random.default_rng(cin * cout + kernel)
    weight = _extreme(rng, (kernel, kernel, cin, cout), w_fill).astype(np.int8)
    graph = _conv_graph(kind, kernel, stride, weight)
    x = _extreme(rng, (2, 7, 9, cin), x_fill).astype(np.int32)
    assert plan_graph(graph)["conv"] is not None  # the float path runs, not the integer fallback
    want = reference.run(graph, {"x": x})["out"]
    for jit in (True, False):
        np.testing.assert_array_equal(execute.run(graph, {"x": x}, jit=jit)["out"], want, err_msg=f"jit={jit}")


def test_digit_planes_recompose_every_int8():
    weight = np.arange(-128, 128)
    for bits in DIGIT_BITS:
        planes = digit_planes(weight, bits)
        assert len(planes) == -(-8 // bits)
        assert compose(planes, bits).tolist() == weight.tolist()
        assert max(np.abs(d).max() for d in planes) <= 1 << (bits - 1)


def test_split_chosen_by_the_real_fan_in():
    down = Op("c", "conv2d", ("x",), "y", {"stride": 2, "padding": 2}, {})
    assert plan_conv(down, np.full((5, 5, 40, 2), -128, np.int8), 128) == 8  # 1000 taps x 2^14 < 2^24: one plane
    assert plan_conv(down, np.full((5, 5, 48, 2), -128, np.int8), 128) == 4  # 1200 taps: two 4-bit planes
    assert plan_conv(down, np.full((5, 5, 48, 2), 1, np.int8), 128) == 8  # the real weights count, not int8's range
    # A transposed k5 s2 layer sums at most 3 x 3 taps per output phase, not 25.
    up = Op("u", "conv2d_transpose", ("x",), "y", {"stride": 2, "padding": 2, "output_padding": 1}, {})
    assert plan_conv(up, np.full((5, 5, 113, 3), 127, np.int8), 128) == 8
    assert plan_conv(up, np.full((5, 5, 120, 3), 127, np.int8), 128) == 4
    # Past 2^24 / 128 / 2 taps no split is exact: the integer convolution stays.
    assert plan_conv(down, np.full((1, 1, FLOAT32_EXACT // 128 // 2 + 1, 1), -128, np.int8), 128) is None


def test_one_float32_plane_would_round_where_the_split_is_needed():
    """The wide layer's sums pass 2^24: a plain float32 convolution rounds them, the planes do not."""
    rng = np.random.default_rng(5)
    weight = (127 - rng.integers(0, 4, (5, 5, 96, 4))).astype(np.int8)  # sums near 96 * 25 * 127^2 > 2^25
    x = (127 - rng.integers(0, 4, (1, 9, 9, 96))).astype(np.int8)
    op = Op("c", "conv2d", ("x",), "y", {"stride": 2, "padding": 2}, {})
    assert plan_conv(op, weight, 128) < 8
    graph = _conv_graph("conv2d", 5, 2, weight)
    inputs, bias = {"x": x.astype(np.int32)}, graph.constants["conv.bias"]
    want = reference.run(graph, inputs)["out"] - bias
    plain = np.asarray(float_conv(op, jnp.asarray(x, jnp.float32), jnp.asarray(weight, jnp.float32))).astype(np.int64)
    assert np.any(plain != want)
    np.testing.assert_array_equal(execute.run(graph, inputs)["out"] - bias, want)


def test_integer_fallback_when_no_split_is_exact():
    weight = np.full((1, 1, FLOAT32_EXACT // 128 // 2 + 1, 1), -128, np.int8)
    graph = _conv_graph("conv2d", 1, 1, weight)
    assert plan_graph(graph)["conv"] is None
    x = np.full((1, 1, 2, weight.shape[2]), -128, np.int32)
    np.testing.assert_array_equal(execute.run(graph, {"x": x})["out"], reference.run(graph, {"x": x})["out"])
