"""lalic against a PyTorch build of the official LALIC structure (experiments/
lalic_parity_fixture.py: random weights, tiny widths, a CPU BiWKV from the formula): its state
dict, in the official checkpoint layout, imports into jaxlic and gives the same reconstruction
and likelihoods."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.io.compressai import _flax_name, from_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "lalic_parity.npz"


def fixture_state(data) -> dict[str, np.ndarray]:
    """The state dict the fixture stores as one concatenated array."""
    shapes = json.loads(str(data["state_shapes"]))
    ends = np.cumsum([math.prod(s) for s in shapes])
    values = data["state_values"]
    return {str(k): values[end - math.prod(s):end].reshape(s) for k, s, end in zip(data["state_keys"], shapes, ends)}


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as data:
        return fixture_state(data), {k: data[k] for k in data.files if not k.startswith("state_")}


def _nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


def test_reconstructions_and_likelihoods_match(fixture):
    state, outputs = fixture
    package = from_state_dict({f"module.{k}": v for k, v in state.items()}, "lalic")  # as saved from DataParallel
    assert (package.config.N, package.config.M, package.config.width) == (12, 20, 0.0625)
    x = jnp.asarray(_nhwc(outputs["pixels"]).astype(np.float32) / np.float32(255))
    forward = jax.jit(lambda p, x: package.model.apply({"params": p}, x, "round")).lower(package.params, x)
    # XLA's lowest optimization level halves the compile time of 40 blocks (the test's cost).
    out = forward.compile(compiler_options={"xla_backend_optimization_level": 0})(package.params, x)
    np.testing.assert_allclose(out["x_hat"], _nhwc(outputs["x_hat"]), atol=1e-4, rtol=0)
    for name in ("y", "z"):
        np.testing.assert_allclose(out["likelihoods"][name], _nhwc(outputs[f"likelihoods/{name}"]), atol=1e-4, rtol=0)
    assert float(jnp.std(out["y"])) > 2  # non-trivial symbols: the rounding and the means matter


def test_checkpoint_key_variants():
    """Official names map to jaxlic's, older CompressAI's entropy-bottleneck names too, and
    OmniShift's stale reparameterized kernel is dropped (the `module.` prefix of DataParallel
    checkpoints: the fixture is imported with it)."""
    for key, name in [
        ("g_a.1.att.key.weight", ("g_a_1", "att", "key", "kernel")),
        ("g_a.1.ln1.weight", ("g_a_1", "ln1", "scale")),
        ("g_s.5.ffn.omni_shift.conv3x3.weight", ("g_s_5", "ffn", "omni_shift", "conv3x3")),
        ("g_s.5.ffn.omni_shift.conv5x5_reparam.weight", None),
        ("latent_codec.hyper.entropy_bottleneck._matrix2", ("entropy_bottleneck", "matrices_2")),
        ("latent_codec.hyper.entropy_bottleneck._factor0", ("entropy_bottleneck", "factors_0")),
        ("latent_codec.hyper.entropy_bottleneck.biases.1", ("entropy_bottleneck", "biases_1")),
        ("latent_codec.y.latent_codec.y3.entropy_parameters.2.norm.weight",
         ("scctx_3", "entropy_parameters_2", "norm", "scale")),
        ("latent_codec.y.channel_context.y2.1.att.decay", ("scctx_2", "channel_context_1", "att", "decay")),
    ]:
        assert _flax_name(key, "lalic") == name, key
