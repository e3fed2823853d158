"""PSNR and MS-SSIM: hand-computable cases, skimage's SSIM, NumPy vs JAX agreement, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.data import astronaut
from skimage.metrics import structural_similarity

from jaxlic.errors import ImageError
from jaxlic.eval import metrics
from jaxlic.eval.metrics import MIN_MS_SSIM_SIDE, MS_SSIM_WEIGHTS, gaussian_window, ms_ssim, ms_ssim_jax, psnr

RNG = np.random.default_rng(0)


def _noisy(image: np.ndarray, amplitude: int, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, image.shape)
    return np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def test_psnr_hand_computed() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 48
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 * 48 / 100), abs=1e-12)
    assert psnr(a, a) == float("inf")
    assert psnr(np.full((2, 2), 0, np.uint8), np.full((2, 2), 255, np.uint8)) == pytest.approx(0.0)


def test_psnr_uses_no_uint8_wraparound() -> None:
    assert psnr(np.array([[0]], np.uint8), np.array([[255]], np.uint8)) == pytest.approx(0.0)
    with pytest.raises(ImageError, match="shape"):
        psnr(np.zeros((2, 2)), np.zeros((2, 3)))


def test_gaussian_window() -> None:
    taps = gaussian_window()
    assert taps.shape == (11,) and taps.sum() == pytest.approx(1.0)
    assert taps[5] == taps.max() and np.allclose(taps, taps[::-1])
    assert taps[4] / taps[5] == pytest.approx(np.exp(-1 / (2 * 1.5**2)))
    assert sum(MS_SSIM_WEIGHTS) == pytest.approx(1.0001)


def test_single_scale_ssim_matches_skimage() -> None:
    image = astronaut()[:200, :220]
    noisy = _noisy(image, 25)
    ssim, _ = metrics._ssim_terms(np, image[None].astype(np.float64), noisy[None].astype(np.float64), gaussian_window(), 255.0)
    expected = structural_similarity(
        image, noisy, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim.mean() == pytest.approx(expected, abs=1e-12)


def test_ms_ssim_identity_ordering_and_range() -> None:
    image = astronaut()[:256, :256]
    assert ms_ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    mild, strong = ms_ssim(image, _noisy(image, 5)), ms_ssim(image, _noisy(image, 40))
    assert 1.0 > mild > strong > 0.0


def test_ms_ssim_odd_sizes_and_grayscale() -> None:
    image = astronaut()[:171, :197]
    noisy = _noisy(image, 20)
    color = ms_ssim(image, noisy)
    per_channel = [ms_ssim(image[:, :, c], noisy[:, :, c]) for c in range(3)]
    assert color == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_ms_ssim_too_small_is_typed_error() -> None:
    small = np.zeros((MIN_MS_SSIM_SIDE - 1, 300, 3), np.uint8)
    with pytest.raises(ImageError, match=str(MIN_MS_SSIM_SIDE)):
        ms_ssim(small, small)


def test_jax_matches_numpy_and_is_differentiable() -> None:
    batch = np.stack([astronaut()[:192, :200], astronaut()[100:292, 50:250]])
    noisy = np.stack([_noisy(image, 30, seed=i) for i, image in enumerate(batch)])
    expected = np.mean([ms_ssim(a, b) for a, b in zip(batch, noisy)])
    x, y = jnp.asarray(batch / 255.0, jnp.float32), jnp.asarray(noisy / 255.0, jnp.float32)
    loss_and_grad = jax.jit(jax.value_and_grad(lambda y_hat: 1.0 - ms_ssim_jax(y_hat, x)))
    loss, gradient = loss_and_grad(y)
    assert 1.0 - float(loss) == pytest.approx(expected, abs=2e-5)
    assert ms_ssim(batch, noisy) == pytest.approx(expected, abs=1e-12)
    assert gradient.shape == y.shape and bool(jnp.isfinite(gradient).all())
    stepped_loss, _ = loss_and_grad(y - 50.0 * gradient)  # one descent step lowers the loss
    assert float(stepped_loss) < float(loss)
