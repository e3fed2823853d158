"""The quantize pipeline as a library function (what `jaxlic quantize` and `jaxlic watermark` run)."""

import pytest

from jaxlic.errors import ConfigError
from jaxlic.quant.export import integerize
from jaxlic.quant.pipeline import quantize

from conftest import GPTQ_CASE, image_batch

KEY = ("bmshj2018-factorized", "gdn")


def test_post_training_quantize_is_the_calibrated_integer_package(float_packages, calibrations, int_packages, gptq_params):
    assert quantize(float_packages[KEY], [image_batch()], weight_rounding="nearest").fingerprint == int_packages[KEY].fingerprint
    package = float_packages[GPTQ_CASE]
    gptq = integerize(package.config, gptq_params, calibrations[GPTQ_CASE])
    assert quantize(package, [image_batch()]).fingerprint == gptq.fingerprint


def test_refusals_are_config_errors_before_any_work(float_packages, int_packages):
    with pytest.raises(ConfigError, match="already an integer-mode package"):
        quantize(int_packages[KEY], [])
    with pytest.raises(ConfigError, match="trained by QAT"):
        quantize(float_packages[KEY], [], extra_terms=[object()])
    with pytest.raises(ConfigError, match="weight rounding"):
        quantize(float_packages[KEY], [], weight_rounding="stochastic")
