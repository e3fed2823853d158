"""The JAX integer path equals the NumPy reference bit for bit; QAT's fake-quantized twin
computes what the integer graph computes; the integer GDN stays inside its error bound."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.codec import compress, decompress
from jaxlic.eval.metrics import psnr
from jaxlic.images import read_images
from jaxlic.quant import execute, intops, reference
from jaxlic.codec.decoders import as_symbols
from jaxlic.quant.exact_conv import plan_graph
from jaxlic.quant.lowering import lower_decoder

from conftest import CASES, KODAK, lively_packages


def _random_inputs(graph, rng, size=(5, 7)):
    """Symbols of every graph input at latent sizes (z at 1/4 of y), heavy-tailed, with a few
    values far outside int16 to exercise the saturating input clamp."""
    inputs = {}
    for name, channels in graph.inputs.items():
        h, w = (size[0] * 4, size[1] * 4) if name == "y_symbols" and "z_symbols" in graph.inputs else size
        values = np.round(rng.standard_t(2, (1, h, w, channels)) * 4)
        values.flat[:: 97] = rng.choice([-(2**31), 2**31 - 1, 40000, -70000], values.flat[:: 97].shape)
        inputs[name] = as_symbols(values)
    return inputs


@pytest.mark.parametrize("arch, gdn", CASES)
def test_jax_equals_numpy_on_random_symbols(int_packages, arch, gdn):
    graph = int_packages[arch, gdn].integer
    assert None not in plan_graph(graph).values()  # every convolution takes the exact float32 path
    rng = np.random.default_rng(7)
    inputs = _random_inputs(graph, rng)
    if "means" in graph.outputs:  # the synthesis takes the hyper-synthesis' means
        inputs["means"] = reference.run(graph, {"z_symbols": inputs["z_symbols"]}, ["means"])["means"]
    everything = [op.output for op in graph.ops]
    want = reference.run(graph, inputs, everything)
    for jit in (True, False):
        got = execute.run(graph, inputs, everything, jit=jit)
        for name in everything:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} (jit={jit})")
            assert got[name].dtype == want[name].dtype
    assert np.unique(want["pixels"]).size > 20


def test_jax_isqrt_is_the_exact_floor_at_every_square_boundary():
    """The float32-estimated root must land on floor(sqrt(n)) where the floor changes."""
    roots = np.arange(46341, dtype=np.int64)
    n = np.concatenate([roots ** 2 - 1, roots ** 2, roots ** 2 + 1, np.arange(4096), [2**31 - 2, 2**31 - 1]])
    n = np.unique(np.clip(n, 0, 2**31 - 1)).astype(np.int32)
    got = np.asarray(execute._isqrt(jnp.asarray(n)))
    np.testing.assert_array_equal(got, intops.isqrt(n))


@pytest.mark.parametrize("arch, gdn", CASES)
def test_real_image_round_trip_identical_on_every_backend(int_packages, photo, arch, gdn):
    package = int_packages[arch, gdn]
    data = compress(package, photo)
    decoded = {backend: decompress(package, data, backend) for backend in ("jax", "jax-eager", "numpy")}
    for backend, image in decoded.items():
        np.testing.assert_array_equal(image, decoded["numpy"], err_msg=backend)
    assert decoded["jax"].shape == photo.shape and decoded["jax"].dtype == np.uint8
    assert decoded["jax"].std() > 10


def test_integer_decoder_tracks_the_float_decoder(int_packages, float_packages, photo):
    """Same bitstream content, integer vs float synthesis: a sanity bound for random models,
    whose amplified weights make them far more sensitive than trained ones."""
    key = ("bmshj2018-factorized", "gdn")
    int_image = decompress(int_packages[key], compress(int_packages[key], photo))
    float_image = decompress(float_packages[key], compress(float_packages[key], photo))
    assert psnr(int_image, float_image) > 30


@pytest.mark.parametrize("arch, gdn", CASES)
def test_fake_quantized_twin_matches_the_integer_graph(int_packages, calibrations, arch, gdn):
    package = int_packages[arch, gdn]
    graph = package.integer
    lowered = lower_decoder(package.config, package.params, calibrations[arch, gdn])
    inputs = _random_inputs(graph, np.random.default_rng(3))
    if "means" in graph.outputs:
        inputs["means"] = reference.run(graph, {"z_symbols": inputs["z_symbols"]}, ["means"])["means"]
    fake = execute.run_ops(lowered.ops, lowered.consts, {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()},
                           ["pixels"], "fake")["pixels"]
    exact = reference.run(graph, inputs, ["pixels"])["pixels"].astype(np.float32)
    # Tiny layers keep every float32 partial sum an exact integer, so the twin is exact here;
    # wide layers may move a rounding boundary now and then (QAT only needs it close).
    np.testing.assert_array_equal(np.asarray(fake), exact)


@pytest.mark.parametrize("arch, gdn", CASES)
def test_integer_gdn_normalizer_within_documented_bound(int_packages, arch, gdn):
    graph = int_packages[arch, gdn].integer
    rng = np.random.default_rng(11)
    inputs = _random_inputs(graph, rng, (9, 9))
    if "means" in graph.outputs:
        inputs["means"] = reference.run(graph, {"z_symbols": inputs["z_symbols"]}, ["means"])["means"]
    for layer, bound in graph.meta["igdn"].items():
        # Simplified: N = P16 against the unrounded accumulator; GDN: isqrt against sqrt(P).
        pool_name = f"{layer}.pool_acc" if gdn == "simplified" else bound["pool"]
        values = reference.run(graph, inputs, [pool_name, bound["norm"]])
        pool = values[pool_name] * np.exp2(-np.asarray(graph.exponents[pool_name], np.float64))
        exact = pool if gdn == "simplified" else np.sqrt(pool)
        approx = values[bound["norm"]] * np.exp2(-np.asarray(graph.exponents[bound["norm"]], np.float64))
        error = np.abs(approx - exact) / exact
        assert error.max() <= bound["max_relative_error"], layer
        if gdn == "gdn":
            assert error.max() > 0  # the root rounds: the check compares something real


@pytest.mark.slow
@pytest.mark.skipif(not KODAK.is_dir(), reason="needs ../shared/data/kodak")
@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior"])
def test_kodak_decodes_bit_exact_with_the_numpy_reference(arch):
    """Width-0.5 models (every convolution on the float32 planes) on the 24 Kodak images."""
    _, package = lively_packages(arch, 0.5)
    assert None not in plan_graph(package.integer).values()
    for name, image in read_images(KODAK):
        data = compress(package, image)
        np.testing.assert_array_equal(decompress(package, data), decompress(package, data, "numpy"), err_msg=name)
