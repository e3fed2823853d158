"""ELIC parity with CompressAI 1.2.8 itself: random rescaled Elic2022Official/Chandelier models
built in the peer environment, imported into jaxlic, give the same reconstructions and
likelihoods; the full-size models have CompressAI's parameter counts."""

import re
import sys
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_utils import REPO_ROOT, peer_unavailable_reason, run_peer, run_peer_json  # noqa: E402

from jaxlic.errors import PackageError  # noqa: E402
from jaxlic.io.compressai import from_state_dict, read_state_dict  # noqa: E402
from jaxlic.models import get_model, init_params, model_config  # noqa: E402
from jaxlic.models.complexity import layer_macs, param_count  # noqa: E402
from jaxlic.models.elic import channel_groups  # noqa: E402

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,  # ~2 min of torch in the peer env; the default run stays under 15 min
    pytest.mark.skipif(peer_unavailable_reason() is not None, reason=peer_unavailable_reason() or ""),
]
ELIC_PEER = REPO_ROOT / "peers" / "elic_peer.py"
ARCHS = ("elic2022", "elic2022-chandelier")
N, M = 32, 48  # groups (2, 2, 4, 8, 32)
SIZES = [(128, 128), (64, 192)]  # multiples of 64: both libraries see the same unpadded input


def _groups(m: int) -> list[str]:
    return [str(g) for g in channel_groups(m)]


@pytest.fixture(scope="module", params=ARCHS)
def peer_run(request, tmp_path_factory):
    arch = request.param
    folder = tmp_path_factory.mktemp(arch)
    rng = np.random.default_rng(7)
    images = {}
    for i, (h, w) in enumerate(SIZES):  # blocky colour fields plus noise: photo-like latents
        coarse = np.kron(rng.uniform(size=(1, 3, h // 16, w // 16)), np.ones((16, 16)))
        images[str(i)] = np.clip(coarse + 0.05 * rng.standard_normal(coarse.shape), 0, 1).astype(np.float32)
    np.savez(folder / "images.npz", **images)
    state = folder / "state.npz"
    run_peer(["export", "--arch", arch, "--N", N, "--M", M, "--groups", *_groups(M), "--seed", "3", "--out", state],
             timeout=600, script=ELIC_PEER)
    result = folder / "result.npz"
    run_peer(["run", "--arch", arch, "--groups", *_groups(M), "--state", state, "--images", folder / "images.npz",
              "--out", result], timeout=600, script=ELIC_PEER)
    package = from_state_dict(read_state_dict(state), arch)
    return arch, package, images, dict(np.load(result)), state


def _nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


def test_reconstructions_and_likelihoods_match(peer_run):
    arch, package, images, result, _ = peer_run
    for i, x in images.items():
        out = package.model.apply({"params": package.params}, jnp.asarray(_nhwc(x)), "round")
        np.testing.assert_allclose(out["x_hat"], _nhwc(result[f"{i}/x_hat"]), atol=1e-4, rtol=0)
        for name in ("y", "z"):
            np.testing.assert_allclose(out["likelihoods"][name], _nhwc(result[f"{i}/likelihoods/{name}"]),
                                       atol=1e-4, rtol=1e-3)
        assert float(jnp.std(out["y"])) > 2  # non-trivial symbols: the rounding and the means matter


@pytest.mark.parametrize("arch", ARCHS)
def test_full_size_parameter_counts_match(arch):
    model = get_model(arch, 1)
    ours = param_count(jax.eval_shape(lambda: init_params(model, 0)))
    theirs = run_peer_json(["params", "--arch", arch, "--N", 192, "--M", 320, "--groups", *_groups(320)],
                           timeout=300, script=ELIC_PEER)["params"]
    assert ours == theirs


@pytest.mark.parametrize("arch", ARCHS)
def test_macs_match_compressai_modules(arch):
    """Per module, as counted by hooks on CompressAI's convolutions: the same transforms and
    channel contexts; the spatial context and the aggregation at half CompressAI's, which runs
    both at every position in both passes (jaxlic: once, and only where each pass needs them)."""
    ours = defaultdict(float)
    for path, macs in layer_macs(model_config(arch, 1)).items():
        parts = path.split("/")
        ours[re.sub(r"_\d+$", "", parts[1] if parts[0].startswith("scctx") else parts[0])] += macs
    theirs = run_peer_json(["macs", "--arch", arch, "--N", 192, "--M", 320, "--groups", *_groups(320)],
                           timeout=600, script=ELIC_PEER)
    for part in ("g_a", "g_s", "h_a", "h_s", "channel_context"):
        assert ours[part] == pytest.approx(theirs[part]), part
    for part in ("context_prediction", "entropy_parameters"):
        assert ours[part] == pytest.approx(theirs[part] / 2), part


def test_wrong_state_dicts_are_refused(peer_run):
    arch, _, _, _, path = peer_run
    state = read_state_dict(path)
    other = "elic2022-chandelier" if arch == "elic2022" else "elic2022"
    with pytest.raises(PackageError, match="does not fit"):  # h_s and the aggregation differ
        from_state_dict(state, other)
    with pytest.raises(PackageError, match="missing"):
        from_state_dict({k: v for k, v in state.items() if "channel_context.y3" not in k}, arch)
    with pytest.raises(PackageError, match="g_a.13"):
        from_state_dict({k: v for k, v in state.items() if not k.startswith("g_a.13")}, arch)
