"""Fixtures shared across test folders: the small zoo packages and a seeded generator."""

import numpy as np
import pytest

from small_packages import small_packages


@pytest.fixture(scope="session")
def packages():
    """One small package per coded zoo architecture (see `small_packages`)."""
    return small_packages()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
