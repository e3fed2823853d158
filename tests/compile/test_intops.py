"""The NumPy integer reference ops against direct, loop-based definitions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlic.quant.intops import (conv2d, conv2d_transpose, conv2d_transpose_subpixel, depth_to_space, requantize,
                                 subpixel_conv_weights, subpixel_taps)


def _naive_conv(x, w, bias, stride, padding):
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, ho, wo, cout), np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, i, j] = np.einsum("nhwc,hwco->no", patch, w.astype(np.int64))
    return out + bias


def _naive_conv_transpose(x, w, bias, stride, padding, output_padding):
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (wd - 1) * stride - 2 * padding + kw + output_padding
    out = np.zeros((n, ho, wo, cout), np.int64)
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                for b in range(kw):
                    oy, ox = i * stride - padding + a, j * stride - padding + b
                    if 0 <= oy < ho and 0 <= ox < wo:
                        out[:, oy, ox] += x[:, i, j].astype(np.int64) @ w[a, b].astype(np.int64)
    return out + bias


def _random(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 3, 5]),
       st.integers(1, 2), st.integers(0, 2), st.integers(0, 2**31 - 1))
def test_conv2d_matches_naive(h, w, cin, cout, k, stride, padding, seed):
    rng = np.random.default_rng(seed)
    if h + 2 * padding < k or w + 2 * padding < k:
        return
    x, wt = _random(rng, (1, h, w, cin)), _random(rng, (k, k, cin, cout))
    bias = rng.integers(-1000, 1000, cout).astype(np.int32)
    np.testing.assert_array_equal(conv2d(x, wt, bias, stride, padding), _naive_conv(x, wt, bias, stride, padding))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.sampled_from([(5, 2, 2, 1),
       (3, 2, 1, 1), (4, 2, 1, 0), (3, 1, 1, 0), (5, 3, 2, 2), (2, 2, 0, 0)]), st.integers(0, 2**31 - 1))
def test_conv2d_transpose_and_subpixel_match_naive(h, w, cin, cout, geometry, seed):
    k, stride, padding, output_padding = geometry
    rng = np.random.default_rng(seed)
    x, wt = _random(rng, (2, h, w, cin)), _random(rng, (k, k, cin, cout))
    bias = rng.integers(-1000, 1000, cout).astype(np.int32)
    want = _naive_conv_transpose(x, wt, bias, stride, padding, output_padding)
    np.testing.assert_array_equal(conv2d_transpose(x, wt, bias, stride, padding, output_padding), want)
    np.testing.assert_array_equal(conv2d_transpose_subpixel(x, wt, bias, stride, padding, output_padding), want)


def test_subpixel_taps_cover_each_kernel_index_once():
    taps = subpixel_taps(5, 2, 2)
    assert sorted(t.kernel_index for t in taps) == list(range(5))
    assert {t.phase for t in taps} == {0, 1}
    assert sum(t.phase == 0 for t in taps) == 3 and sum(t.phase == 1 for t in taps) == 2


def test_requantize_rule():
    acc = np.array([0, 1, 2, 3, -1, -2, -3, 255, 256, -257, 2**31 - 1, -2**31, 100000], np.int32)
    got = requantize(acc, 2, -128, 127)
    want = np.clip(np.floor((acc.astype(np.float64) + 2) / 4), -128, 127)
    want[10] = np.clip(((2**31 - 1 + 2 - 2**32) >> 2), -128, 127)  # the rounding add wraps at 32 bits
    np.testing.assert_array_equal(got, want.astype(np.int8))
    np.testing.assert_array_equal(requantize(np.array([5, -5, 300], np.int32), 0, 0, 127), [5, 0, 127])
    with pytest.raises(ValueError):
        requantize(acc, 32)
    with pytest.raises(TypeError):
        requantize(acc.astype(np.int64), 1)


def test_subpixel_conv_packing_equals_transposed_conv():
    rng = np.random.default_rng(4)
    x, wt = _random(rng, (1, 5, 6, 7)), _random(rng, (5, 5, 7, 3))
    bias = rng.integers(-1000, 1000, 3).astype(np.int32)
    packed, padding = subpixel_conv_weights(wt, 2, 2)
    assert packed.shape == (3, 3, 7, 12) and padding == 1
    got = depth_to_space(conv2d(x, packed, np.tile(bias, 4), 1, padding), 2)
    np.testing.assert_array_equal(got, conv2d_transpose(x, wt, bias, 2, 2, 1))
    with pytest.raises(ValueError, match="not centred"):
        subpixel_conv_weights(wt, 2, 3)
