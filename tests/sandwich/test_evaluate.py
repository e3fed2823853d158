"""RD gains and rate-proxy error measurement on known data; a sweep through the real codec."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.eval.results import validate_results
from jaxlic.images import default_images
from jaxlic.sandwich.evaluate import baseline_sweep, gains, rate_proxy_error, sandwich_sweep
from jaxlic.sandwich.model import to_uint16
from jaxlic.sandwich.scenarios import get_scenario, synthesize_high_bit_depth


def _record(bpp, psnr):
    return validate_results({"name": "x", "results": {"bpp": list(bpp), "psnr-rgb": list(psnr)}})


def test_gains_of_a_curve_shifted_up_by_two_db():
    bpp = np.array([0.2, 0.4, 0.8, 1.6, 3.2])
    anchor = _record(bpp, 25 + 3 * np.log2(bpp / 0.2))
    test = _record(bpp[1:], 27 + 3 * np.log2(bpp[1:] / 0.2))
    result = gains(test, anchor)
    assert result["mean_gain_db"] == pytest.approx(2.0, abs=1e-6)
    assert result["bd_psnr_db"] == pytest.approx(2.0, abs=1e-3)
    assert result["bd_rate_percent"] < -30  # 2 dB at 3 dB per doubling: 2^(-2/3) - 1 = -37%


def test_gains_leave_out_points_outside_the_anchor_range():
    anchor = _record([0.5, 1.0, 2.0, 4.0], [30, 33, 36, 39])
    result = gains(_record([0.1, 0.2, 0.3, 0.4], [20, 22, 24, 26]), anchor)
    assert result["points"] == [] and result["mean_gain_db"] is None
    assert result["bd_rate_percent"] is None and "do not overlap" in result["bd_rate_percent_error"]


def test_rate_proxy_error_is_zero_on_linear_data():
    rng = np.random.default_rng(0)
    truth = np.array([2.0, 1.0, 5.0])

    def samples(n):
        features = rng.uniform(100, 1000, (n, 3))
        return {"features": features, "payload": features @ truth, "total": features @ truth + 4800,
                "quality": np.arange(n) % 2 * 40 + 50}

    result = rate_proxy_error(samples(20), samples(10))
    assert result["all_features"]["mean_abs_rel_error_payload"] < 1e-9
    assert result["log_magnitude_only"]["mean_abs_rel_error_payload"] > 0.01
    assert result["log_magnitude_per_quality"]["mean_abs_rel_error_payload"] > 0.01


def test_sweeps_measure_real_bytes_at_the_original_depth(untrained):
    rng = np.random.default_rng(3)
    images = [("a", rng.integers(0, 65536, (168, 176, 3)).astype(np.uint16))]  # MS-SSIM needs > 160 px
    scenario = get_scenario("high-bit-depth")
    plain = baseline_sweep(scenario, images, (90, 100), progress=False)
    ours = sandwich_sweep(untrained["high-bit-depth"], images, (90, 100), progress=False)
    for evaluation in plain + ours:
        result = evaluation.images[0]
        assert result.bpp == pytest.approx(8 * result.num_bytes / (168 * 176))
    assert plain[1].psnr > plain[0].psnr  # quality 100 beats 90
    assert ours[1].bpp > plain[1].bpp  # same JPEG plus the sandwich's metadata comment


@pytest.mark.parametrize("scenario", ["gray", "half-res", "high-bit-depth", "rgb"])
def test_untrained_sweep_equals_the_plain_codec_column(untrained, scenario):
    """The evaluation's plain-codec column is the operation an untrained sandwich reproduces: same
    PSNR through the real JPEG, and 26 bytes more (the metadata comment)."""
    plain = get_scenario(scenario)
    image = dict(default_images())["astronaut"][40:378, 100:454]
    if plain.high_bit_depth:  # 16-bit images are synthesized at half size
        image = to_uint16(np.asarray(synthesize_high_bit_depth(jnp.asarray(image[None], jnp.float32) / 255.0))[0])
    image = image[:169, :177]  # odd sizes, and MS-SSIM needs more than 160 px
    images = [("a", image)]
    ours = sandwich_sweep(untrained[scenario], images, (20,), progress=False)
    theirs = baseline_sweep(plain, images, (20,), progress=False)
    for a, b in zip(ours, theirs):
        assert abs(a.psnr - b.psnr) < 0.01
        assert a.images[0].num_bytes == b.images[0].num_bytes + 26
