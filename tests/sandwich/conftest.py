"""Tiny sandwich configs shared by the tests (small networks so compiling stays fast)."""

import pytest

from jaxlic.sandwich.model import Sandwich, SandwichPackage, sandwich_config

TINY = dict(features=(4, 8), mlp_hidden=4, mlp_depth=1)


def _tiny_config(scenario, **overrides):
    return sandwich_config(scenario, **{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_config():
    """scenario, **overrides -> a SandwichConfig with tiny networks."""
    return _tiny_config


@pytest.fixture(scope="session")
def untrained():
    """An untrained package per scenario (seed 0): the plain pipeline plus zero-initialized residuals."""
    return {name: SandwichPackage(_tiny_config(name), Sandwich(_tiny_config(name)).init(0))
            for name in ("gray", "half-res", "high-bit-depth", "rgb")}
