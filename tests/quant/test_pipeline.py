"""The quantize pipeline as a library function (what `jaxlic quantize` and `jaxlic watermark` run)."""

import pytest

from jaxlic.errors import ConfigError
from jaxlic.quant.pipeline import quantize

from conftest import image_batch

KEY = ("bmshj2018-factorized", "gdn")


def test_post_training_quantize_is_the_calibrated_integer_package(float_packages, int_packages):
    assert quantize(float_packages[KEY], [image_batch()]).fingerprint == int_packages[KEY].fingerprint


def test_refusals_are_config_errors_before_any_work(float_packages, int_packages):
    with pytest.raises(ConfigError, match="already an integer-mode package"):
        quantize(int_packages[KEY], [])
    with pytest.raises(ConfigError, match="trained by QAT"):
        quantize(float_packages[KEY], [], extra_terms=[object()])
