"""Tiny zoo models with lively random parameters, their calibrations and integer packages.

Random initialisations decode to almost flat images and code every scale with table 0, which
would make bit-exactness tests trivial; `lively_params` widens the latents, the synthesis gain
and the predicted scales so every op sees varied values.
"""

import functools
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.codec import build_tables
from jaxlic.images import default_images
from jaxlic.models import build_model, init_params, model_config
from jaxlic.quant.export import integerize
from jaxlic.quant.gptq import round_synthesis_weights
from jaxlic.quant.lowering import calibrate

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")
GDNS = ("gdn", "simplified")
# Every architecture and both GDN kinds, without the full product (each model costs compiles).
CASES = (("bmshj2018-factorized", "gdn"), ("bmshj2018-factorized", "simplified"),
         ("bmshj2018-hyperprior", "gdn"), ("mbt2018-mean", "simplified"))
WIDTH = 0.0625  # N = 8, M = 12
GPTQ_CASE = ("bmshj2018-hyperprior", "gdn")
KODAK = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kodak"


@functools.lru_cache(maxsize=None)
def _initial(arch: str, seed: int, width: float) -> dict:
    # GDN kinds share parameter shapes, so one (slow, first-use compiling) init per architecture.
    return init_params(build_model(model_config(arch, 3, width)), seed)


def lively_params(config, seed: int = 0) -> dict:
    model = build_model(config)
    params = dict(_initial(config.arch, seed, config.width))
    rng = np.random.default_rng(seed)
    last_a = f"g_a_{max(int(k.rsplit('_', 1)[1]) for k in params if k.startswith('g_a_'))}"
    params[last_a] = {**params[last_a], "kernel": params[last_a]["kernel"] * 100}
    for name in [k for k in params if k.startswith("g_s_") and "kernel" in params[k]]:
        params[name] = {**params[name], "kernel": params[name]["kernel"] * 1.7}
    if model.hyper:
        last_h = f"h_s_{max(int(k.rsplit('_', 1)[1]) for k in params if k.startswith('h_s_'))}"
        bias = jnp.asarray(rng.uniform(-1, 3, params[last_h]["bias"].shape), jnp.float32)
        params[last_h] = {"kernel": params[last_h]["kernel"] * 6, "bias": bias}
    return params


def image_batch(count: int = 4, size: int = 128) -> np.ndarray:
    """Crops of the built-in photos as a float NHWC batch in [0, 1]."""
    images = [a for _, a in default_images()]
    return np.stack([images[i % len(images)][:size, :size] for i in range(count)]).astype(np.float32) / 255


def lively_packages(arch: str, width: float, gdn: str = "gdn"):
    """(float package, integer package) of a lively model at quality 3, calibrated on `image_batch`."""
    config = model_config(arch, 3, width, gdn)
    float_package = build_tables(config, lively_params(config))
    calibration = calibrate(config, float_package.params, [image_batch()])
    return float_package, integerize(config, float_package.params, calibration)


@pytest.fixture(scope="session")
def photo():
    """A real photo crop of odd size (uint8 H x W x 3)."""
    return default_images()[0][1][37:137, 11:161]


@pytest.fixture(scope="session")
def float_packages():
    return {(arch, gdn): build_tables(config, lively_params(config))
            for arch, gdn in CASES for config in [model_config(arch, 3, WIDTH, gdn)]}


@pytest.fixture(scope="session")
def calibrations(float_packages):
    batch = image_batch()
    return {key: calibrate(p.config, p.params, [batch]) for key, p in float_packages.items()}


@pytest.fixture(scope="session")
def gptq_params(float_packages, calibrations):
    """The lively hyperprior's parameters with GPTQ-rounded synthesis weights (calibration batch)."""
    package = float_packages[GPTQ_CASE]
    return round_synthesis_weights(package.config, package.params, calibrations[GPTQ_CASE], [image_batch()])


@pytest.fixture(scope="session")
def int_packages(float_packages, calibrations):
    return {key: integerize(p.config, p.params, calibrations[key]) for key, p in float_packages.items()}
