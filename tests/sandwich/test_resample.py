"""Pillow's bicubic resize and convert("L") in JAX: equal to Pillow pixel for pixel, differentiable."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxlic.images import default_images
from jaxlic.sandwich.resample import luma, resize_bicubic


@pytest.fixture(scope="module")
def photo():
    return dict(default_images())["chelsea"][40:117, 60:161]  # 77x101: odd sizes, natural content


@pytest.mark.parametrize("width,size", [
    (101, (39, 51)), (101, (154, 202)), (101, (1, 1)),
    (101, (20, 160)), (5, (39, 3)),  # height shrinks much more than width: Pillow 13 resizes vertically first
    (101, (160, 20)), (101, (30, 60)),
])
def test_resize_equals_pillows_bicubic(photo, width, size):
    image = photo[:, :width]
    expected = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BICUBIC))
    ours = np.asarray(resize_bicubic(jnp.asarray(image[None], jnp.float32), size))[0]
    np.testing.assert_array_equal(ours, expected)


def test_resize_saturates_like_pillow():
    edges = np.zeros((16, 16, 3), np.uint8)
    edges[:, ::2] = 255  # overshoot of the cubic kernel must clip to 0..255
    expected = np.asarray(Image.fromarray(edges).resize((27, 11), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(resize_bicubic(jnp.asarray(edges[None], jnp.float32), (11, 27)))[0],
                                  expected)


def test_luma_equals_pillows_convert_l(photo):
    expected = np.asarray(Image.fromarray(photo).convert("L"))
    np.testing.assert_array_equal(np.asarray(luma(jnp.asarray(photo[None], jnp.float32)))[0, :, :, 0], expected)


def test_resize_passes_gradients(photo):
    x = jnp.asarray(photo[None, :16, :16], jnp.float32)
    grad = jax.grad(lambda v: jnp.sum(resize_bicubic(v, (8, 8))))(x)
    # The float resize's gradient: each output's weights sum to one, so the input gradients sum to 8 * 8 * 3.
    assert float(grad.sum()) == pytest.approx(8 * 8 * 3, rel=1e-4)
    assert float(jnp.abs(grad).min()) > 0.0  # a bicubic /2 reaches every input sample
