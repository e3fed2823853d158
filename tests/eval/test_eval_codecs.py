"""Reference codecs and the generic evaluate(): real byte counts, metrics, typed errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut, chelsea

from jaxlic.errors import ConfigError, ImageError
from jaxlic.eval import codecs
from jaxlic.eval.codecs import available_codecs, decode, encode, sweep, usable_codecs
from jaxlic.eval.evaluate import evaluate
from jaxlic.eval.metrics import ms_ssim, psnr

IMAGES = [("astronaut", astronaut()[:192, :208]), ("chelsea", chelsea()[:176, :192])]


def test_all_three_codecs_built_in() -> None:
    assert available_codecs() == ["jpeg", "webp", "avif"]


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif"])
def test_encode_decode_round_trip(codec: str) -> None:
    image = IMAGES[0][1]
    low, high = encode(codec, image, 10), encode(codec, image, 90)
    assert len(low) < len(high)
    assert Image.open(io.BytesIO(high)).format == codecs.CODECS[codec][0]
    decoded = decode(high)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert psnr(image, decoded) > psnr(image, decode(low)) > 20


def test_jpeg_defaults_to_420_like_pillow() -> None:
    from PIL import JpegImagePlugin

    data = encode("jpeg", IMAGES[0][1], 75)
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(data))) == 2  # 2 = 4:2:0
    buffer = io.BytesIO()
    Image.fromarray(IMAGES[0][1]).save(buffer, format="JPEG", quality=75)
    assert data == buffer.getvalue()


def test_bad_codec_quality_and_image() -> None:
    with pytest.raises(ConfigError, match="unknown codec"):
        encode("jpeg2000", IMAGES[0][1], 50)
    with pytest.raises(ConfigError, match="quality"):
        encode("jpeg", IMAGES[0][1], 101)
    with pytest.raises(ImageError):
        encode("jpeg", IMAGES[0][1].astype(np.float32), 50)
    with pytest.raises(ImageError):
        decode(b"garbage")


def test_unavailable_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecs, "available_codecs", lambda: ["jpeg", "webp"])
    with pytest.raises(ConfigError, match="not available"):
        encode("avif", IMAGES[0][1], 50)
    with pytest.warns(UserWarning, match="avif"):
        assert usable_codecs(["jpeg", "avif"]) == ["jpeg"]


def test_sweep_uses_real_bytes_and_per_image_metrics() -> None:
    evaluations = sweep("webp", IMAGES, [20, 80], progress=False)
    assert len(evaluations) == 2
    for quality, evaluation in zip([20, 80], evaluations):
        for (name, image), result in zip(IMAGES, evaluation.images):
            data = encode("webp", image, quality)
            assert result.name == name and result.num_bytes == len(data)
            assert result.bpp == pytest.approx(8 * len(data) / (image.shape[0] * image.shape[1]))
            assert result.psnr == pytest.approx(psnr(image, decode(data)))
            assert result.ms_ssim == pytest.approx(ms_ssim(image, decode(data)))
            assert result.encode_time > 0 and result.decode_time > 0
        assert evaluation.psnr == pytest.approx(np.mean([r.psnr for r in evaluation.images]))
    assert evaluations[0].bpp < evaluations[1].bpp and evaluations[0].psnr < evaluations[1].psnr


def test_evaluate_any_codec_functions() -> None:
    identity = evaluate(lambda image: image.tobytes(), lambda data, size: np.frombuffer(data, np.uint8).reshape(192, 208, 3), IMAGES[:1])
    assert identity.images[0].bpp == pytest.approx(24.0)
    assert identity.psnr == float("inf") and identity.ms_ssim == pytest.approx(1.0)
    with pytest.raises(ImageError, match="decoded uint8 .4, 4, 3. differs"):
        evaluate(lambda image: b"x", lambda data, size: np.zeros((4, 4, 3), np.uint8), IMAGES[:1])
    with pytest.raises(ImageError, match="no images"):
        evaluate(lambda image: b"", lambda data, size: decode(data), [])


def test_one_evaluation_loop_measures_16_bit_and_gray_images():
    """The sandwich sweeps use `jaxlic.eval.evaluate` too: 16-bit images are measured against
    65535 and gray HxW images are allowed (the loop used to take uint8 RGB only)."""
    from jaxlic.eval.evaluate import evaluate

    image = np.full((168, 176), 40000, np.uint16)
    off_by_257 = evaluate(lambda x: b"\0" * 12, lambda data, size: image - np.uint16(257), [("gray16", image)])
    assert off_by_257.psnr == pytest.approx(20 * np.log10(65535 / 257))
    assert off_by_257.bpp == pytest.approx(8 * 12 / (168 * 176))
