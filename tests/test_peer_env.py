"""The CompressAI peer environment works: export a random factorized model, run one image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from peer_utils import PeerCallError, peer_unavailable_reason, run_peer, run_peer_json

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(peer_unavailable_reason() is not None, reason=peer_unavailable_reason() or ""),
]

N, M = 32, 48  # small, so the test stays fast; the peer accepts any N, M


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A calibrated random bmshj2018-factorized state written by the peer."""
    out = tmp_path_factory.mktemp("peer") / "factorized.npz"
    summary = run_peer_json(
        ["export", "--arch", "bmshj2018-factorized", "--quality", "1", "--N", N, "--M", M,
         "--seed", "0", "--calib-steps", "10", "--out", out],
        timeout=300,
    )
    assert summary["N"] == N and summary["M"] == M
    return out


def test_export_writes_state_dict_and_sidecar(exported):
    state = np.load(exported)
    meta = json.loads(exported.with_suffix(".json").read_text())
    assert meta["arch"] == "bmshj2018-factorized" and (meta["N"], meta["M"]) == (N, M)
    assert meta["versions"]["compressai"] == "1.2.8"
    assert set(meta["keys"]) == set(state.files)
    assert state["g_a.0.weight"].shape == (N, 3, 5, 5)          # Conv2d: (out, in, kh, kw)
    assert state["g_s.0.weight"].shape == (M, N, 5, 5)          # ConvTranspose2d: (in, out, kh, kw)
    assert state["g_a.1.gamma"].shape == (N, N) and state["g_a.1.beta"].shape == (N,)
    assert state["entropy_bottleneck.quantiles"].shape == (M, 1, 3)
    assert state["entropy_bottleneck.matrices.0"].shape == (M, 3, 1)
    cdf = state["entropy_bottleneck._quantized_cdf"]
    lengths = state["entropy_bottleneck._cdf_length"]
    assert cdf.dtype == np.int32 and cdf.shape[0] == M and lengths.shape == (M,)
    assert (cdf[np.arange(M), lengths - 1] == 1 << 16).all()    # every table ends at 2^16
    assert np.any(state["entropy_bottleneck.factors.0"] != 0)   # calibration moved them


def test_run_one_small_image(exported, tmp_path):
    h, w = 40, 72                                               # pads to 64 x 128
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "result.npz"
    run_peer(["run", "--arch", "bmshj2018-factorized", "--state", exported,
              "--images", tmp_path / "a.png", "--out", out], timeout=300)
    r = np.load(out)
    assert int(r["num_images"]) == 1 and str(r["0/name"]) == "a.png"
    assert tuple(r["0/pad"]) == (28, 28, 12, 12)                 # (left, right, top, bottom)
    assert r["0/x"].shape == (1, 3, 64, 128)
    assert r["0/y"].shape == r["0/forward/likelihoods/y"].shape == (1, M, 4, 8)
    assert r["0/forward/x_hat"].shape == r["0/decompress/x_hat"].shape == (1, 3, 64, 128)
    assert r["0/decompress/x_hat_crop"].shape == (1, 3, h, w)
    assert tuple(r["0/compress_shape"]) == (4, 8)
    assert int(r["0/nbytes_total"]) == int(r["0/nbytes/y"]) == r["0/strings/y"].size > 0
    assert float(r["0/bpp"]) == pytest.approx(int(r["0/nbytes_total"]) * 8 / (h * w))
    lik = r["0/forward/likelihoods/y"]
    assert ((lik > 0) & (lik <= 1)).all()
    xd = r["0/decompress/x_hat"]
    assert xd.min() >= 0 and xd.max() <= 1
    # Decoding gives back exactly what forward() reconstructs in eval mode (same y_hat).
    np.testing.assert_array_equal(np.clip(r["0/forward/x_hat"], 0, 1), xd)


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(PeerCallError, match="state file not found"):
        run_peer(["run", "--arch", "bmshj2018-factorized", "--state", tmp_path / "missing.npz",
                  "--images", tmp_path / "none.png", "--out", tmp_path / "r.npz"], timeout=120)


def _batches_file(path, steps: int = 3, batch: int = 2, size: int = 32):
    rng = np.random.default_rng(1)
    np.save(path, rng.integers(0, 256, (steps, batch, size, size, 3), dtype=np.uint8))
    return path


@pytest.mark.slow
def test_train_learns_builds_tables_and_codes_real_bytes(tmp_path):
    batches = _batches_file(tmp_path / "batches.npy")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 72, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "run"
    args = ["train", "--batches", batches, "--steps", 3, "--N", N, "--M", M, "--lmbda", 0.01,
            "--lr", 1e-3, "--warmup", 1, "--log-every", 1, "--out", out, "--eval-images", tmp_path / "a.png"]
    run_peer_json(args, timeout=300)
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    assert json.loads((out / "train.json").read_text())["steps"] == 3
    state = np.load(out / "state.npz")
    assert state["g_a.0.weight"].shape == (N, 3, 5, 5)
    result = np.load(out / "eval.npz")
    assert int(result["num_images"]) == 1 and str(result["0/name"]) == "a.png"
    assert result["0/x_hat"].shape == (40, 72, 3) and result["0/x_hat"].dtype == np.uint8
    assert int(result["0/nbytes"]) > 0
    # a fine-tune starts from the saved state
    run_peer_json(["train", "--batches", batches, "--steps", 1, "--lmbda", 0.02, "--init-state",
                   out / "state.npz", "--out", tmp_path / "ft"], timeout=300)
    assert np.load(tmp_path / "ft" / "state.npz")["g_a.0.weight"].shape == (N, 3, 5, 5)


def test_train_rejects_too_few_batches(tmp_path):
    batches = _batches_file(tmp_path / "batches.npy", steps=2)
    with pytest.raises(PeerCallError, match="fewer than --steps"):
        run_peer(["train", "--batches", batches, "--steps", 5, "--lmbda", 0.01, "--out", tmp_path / "r"], timeout=120)


def test_train_reports_missing_or_corrupt_batches(tmp_path):
    with pytest.raises(PeerCallError, match="batches file not found"):
        run_peer(["train", "--batches", tmp_path / "none.npy", "--steps", 1, "--lmbda", 0.01, "--out", tmp_path / "r"],
                 timeout=120)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(PeerCallError, match="is not a .npy array"):
        run_peer(["train", "--batches", tmp_path / "bad.npy", "--steps", 1, "--lmbda", 0.01, "--out", tmp_path / "r"],
                 timeout=120)
