"""Small random-initialized packages of every zoo architecture, shared by the core tests."""

import numpy as np
import pytest

from jaxlic.codec import build_tables
from jaxlic import models
from jaxlic.models import build_model, model_config

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def init_params(config, seed=0):
    model = build_model(config)
    return model, models.init_params(model, seed)


@pytest.fixture(scope="session")
def packages():
    """One width-0.25 package per architecture, with quantiles narrowed so tables are realistic."""
    out = {}
    for arch in ARCHS:
        config = model_config(arch, 1, width=0.25)
        _, params = init_params(config)
        out[arch] = build_tables(config, params)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def smooth_image(rng, height, width):
    """A natural-looking test image: smooth gradients plus a little noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in range(3)], -1)
    noisy = 0.5 + 0.4 * base + 0.03 * rng.standard_normal((height, width, 3))
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
