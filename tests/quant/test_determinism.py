"""Deterministic decoding: a bitstream from the JAX encoder decodes to the same bits with the
NumPy integer decoder, with XLA on 1 or 2 threads, jitted or op by op."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxlic.codec import compress, decompress
from jaxlic.codec.api import _hyper

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh process: pin the CPU set (XLA sizes its thread pool from it) before jax starts.
DECODER = """
import hashlib, json, os, sys
threads = int(sys.argv[3])
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
import numpy as np
from jaxlic.codec import decompress, load
from jaxlic.codec.api import _hyper
package, data = load(sys.argv[1]), open(sys.argv[2], "rb").read()
digests = {}
for backend in ("jax", "jax-eager"):
    digests[backend] = hashlib.sha256(decompress(package, data, backend).tobytes()).hexdigest()
print(json.dumps({"threads": len(os.sched_getaffinity(0)), **digests}))
"""


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def coded(int_packages, photo, tmp_path_factory):
    package = int_packages["mbt2018-mean", "simplified"]
    folder = tmp_path_factory.mktemp("determinism")
    package.save(folder / "int.jxlm")
    data = compress(package, photo)
    (folder / "image.jxlc").write_bytes(data)
    return package, data, folder


def test_numpy_decoder_equals_jax_jit_and_eager(coded):
    package, data, _ = coded
    want = decompress(package, data, "numpy")
    assert _digest(decompress(package, data, "jax")) == _digest(decompress(package, data, "jax-eager")) == _digest(want)


def test_decoding_is_identical_on_one_and_two_threads(coded):
    package, data, folder = coded
    want = _digest(decompress(package, data, "numpy"))
    available = len(os.sched_getaffinity(0))
    seen = []
    for threads in sorted({1, min(2, available)}):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if threads == 1:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
        out = subprocess.run([sys.executable, "-c", DECODER, str(folder / "int.jxlm"), str(folder / "image.jxlc"),
                              str(threads)], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["threads"] == threads
        assert result["jax"] == result["jax-eager"] == want, f"{threads} thread(s)"
        seen.append(threads)
    if available < 2:
        pytest.skip(f"only {available} CPU available: the 2-thread decode could not run")
    assert seen == [1, 2]


def test_table_selection_is_integer(coded):
    """The decoder picks entropy tables from integers only: indexes come out of the graph as
    int32, identical on every backend, and the encoder used the very same ones."""
    package, data, _ = coded
    z_symbols = np.random.default_rng(0).integers(-20, 20, (1, 2, 3, package.config.N))
    results = [_hyper(package, z_symbols, backend) for backend in ("jax", "jax-eager", "numpy")]
    for indexes, means, synthesis_means in results:
        assert indexes.dtype == np.int32 and synthesis_means.dtype == np.int32 and means.dtype == np.float32
        np.testing.assert_array_equal(indexes, results[0][0])
        np.testing.assert_array_equal(synthesis_means, results[0][2])
    assert np.unique(results[0][0]).size > 3
