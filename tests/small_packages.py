"""Small random-initialized packages of every coded zoo architecture and smooth test images.

Shared by the codec, entropy, CLI and import tests; tests/conftest.py serves the packages as the
session fixture `packages`. Test modules import this as `from small_packages import ...`
(pytest puts tests/ on sys.path for tests/conftest.py).
"""

import numpy as np

from jaxlic import models
from jaxlic.codec import build_tables
from jaxlic.models import build_model, model_config

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def small_packages() -> dict:
    """One width-0.25 package per architecture, with quantiles narrowed so tables are realistic."""
    out = {}
    for arch in ARCHS:
        config = model_config(arch, 1, width=0.25)
        out[arch] = build_tables(config, models.init_params(build_model(config), 0))
    return out


def smooth_image(rng, height, width):
    """A natural-looking test image: smooth gradients plus a little noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in range(3)], -1)
    noisy = 0.5 + 0.4 * base + 0.03 * rng.standard_normal((height, width, 3))
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)


def coded_random_image(package, size: tuple[int, int]):
    """Random pixels of `size` coded by a context-model `package`: (pixels, bytes, latents), after
    checking that the decoded symbols are round(y - means) of the encoder's latent."""
    from jaxlic.codec import compress, decode_latents
    from jaxlic.codec.api import _to_model_input

    pixels = np.random.default_rng(7).integers(0, 256, (*size, 3), dtype=np.uint8)
    data = compress(package, pixels)
    y = np.asarray(package.transforms.analysis(_to_model_input(pixels, package.model.downsampling)))
    latents = decode_latents(package, data)
    np.testing.assert_array_equal(latents.y_symbols, np.round(y.astype(np.float64) - latents.means))
    return pixels, data, latents
