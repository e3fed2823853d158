"""Deterministic decoding: a bitstream from the JAX encoder decodes to the same latents with the
NumPy integer decoder, with XLA on 1 or 2 threads, jitted or op by op; for integer-mode
packages to the same pixels too. Float hyperprior packages take their table indexes from an
integer graph, so their symbols never desynchronize (float means and the float synthesis may
round differently on another machine: a latent by an ulp, a pixel by a level)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxlic.codec import ModelPackage, compress, decode_latents, decompress
from jaxlic.codec.decoders import decoder_for

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh process: pin the CPU set (XLA sizes its thread pool from it) before jax starts.
DECODER = """
import hashlib, json, os, sys
threads = int(sys.argv[3])
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
from jaxlic.codec import decode_latents, decompress, load
package, data = load(sys.argv[1]), open(sys.argv[2], "rb").read()
digests = {}
for backend in ("jax", "jax-eager"):
    latents = decode_latents(package, data, backend)
    digests[backend] = [hashlib.sha256(latents.y_symbols.tobytes()).hexdigest(),
                        hashlib.sha256(latents.means.tobytes()).hexdigest(),
                        hashlib.sha256(decompress(package, data, backend).tobytes()).hexdigest()]
print(json.dumps({"threads": len(os.sched_getaffinity(0)), **digests}))
"""


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


# Integer packages' determinism is also covered by test_backends; their subprocess runs are slow.
@pytest.fixture(scope="module", params=[pytest.param("integer", marks=pytest.mark.slow), "float"])
def coded(request, int_packages, float_packages, photo, tmp_path_factory):
    packages = int_packages if request.param == "integer" else float_packages
    package = packages["mbt2018-mean", "simplified"]
    folder = tmp_path_factory.mktemp("determinism")
    package.save(folder / "model.jxlm")
    data = compress(package, photo)
    (folder / "image.jxlc").write_bytes(data)
    return package, data, folder


def test_numpy_decoder_equals_jax_jit_and_eager(coded):
    package, data, _ = coded
    want = decode_latents(package, data, "numpy")
    for backend in ("jax", "jax-eager"):
        np.testing.assert_array_equal(decode_latents(package, data, backend).y_symbols, want.y_symbols)
    if package.integer is not None:
        pixels = decompress(package, data, "numpy")
        assert _digest(decompress(package, data, "jax")) == _digest(decompress(package, data, "jax-eager")) \
            == _digest(pixels)


def test_decoding_is_identical_on_one_and_two_threads(coded):
    package, data, folder = coded
    latents = decode_latents(package, data, "numpy")
    want = [_digest(latents.y_symbols)]
    if package.integer is not None:
        want += [_digest(latents.means), _digest(decompress(package, data, "numpy"))]
    available = len(os.sched_getaffinity(0))
    seen = []
    for threads in sorted({1, min(2, available)}):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if threads == 1:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
        out = subprocess.run([sys.executable, "-c", DECODER, str(folder / "model.jxlm"), str(folder / "image.jxlc"),
                              str(threads)], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["threads"] == threads
        for backend in ("jax", "jax-eager"):
            assert result[backend][:len(want)] == want, f"{backend}, {threads} thread(s)"
        seen.append(threads)
    if available < 2:
        pytest.skip(f"only {available} CPU available: the 2-thread decode could not run")
    assert seen == [1, 2]


def test_table_indexes_do_not_depend_on_the_float_hyper_synthesis(float_packages, photo, monkeypatch):
    """The float hyper-synthesis rounds differently across machines; a float package's encoder
    and decoder must not read table indexes from its scales."""
    package = float_packages["mbt2018-mean", "simplified"]
    data = compress(package, photo)
    want = decode_latents(package, data)
    original = type(package.model).hyper_synthesis

    def other_machine(self, z_hat):
        scales, means = original(self, z_hat)
        return scales * 1.05, means

    monkeypatch.setattr(type(package.model), "hyper_synthesis", other_machine)
    decoder = ModelPackage(package.config, package.params, package.tables, package.scale_table)
    assert decoder.fingerprint == package.fingerprint  # the entropy graph derives the same again
    np.testing.assert_array_equal(decode_latents(decoder, data).y_symbols, want.y_symbols)


def test_table_selection_is_integer(coded):
    """The decoder picks entropy tables from integers only: indexes come out of the graph as
    int32, identical on every backend, and the encoder used the very same ones."""
    package, data, _ = coded
    z_symbols = np.random.default_rng(0).integers(-20, 20, (1, 2, 3, package.config.N))
    results = [decoder_for(package, backend).hyper(z_symbols) for backend in ("jax", "jax-eager", "numpy")]
    for indexes, means in results:
        assert indexes.dtype == np.int32 and means.dtype == np.float32
        np.testing.assert_array_equal(indexes, results[0][0])
        np.testing.assert_array_equal(means, results[0][1])
    assert np.unique(results[0][0]).size > 3
