"""Training data pipeline: determinism from (seed, i), crops/flips, prefetch shutdown, bad files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jaxlic.errors import ConfigError, DataError
from jaxlic.images import write_image
from jaxlic.train.data import Batches, ImageSet, split_train_val

SHARED_TRAIN = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "train"


def _images(sizes: list[tuple[int, int]], seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    arrays = tuple(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes)
    return ImageSet(tuple(f"img{i}" for i in range(len(arrays))), arrays)


SOURCE = _images([(40, 50), (33, 60), (64, 32), (48, 48)])


def test_batch_shape_dtype_range() -> None:
    batch = Batches(SOURCE, batch_size=5, crop=16, seed=1).batch(0)
    assert batch.shape == (5, 16, 16, 3) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    levels = np.rint(batch * 255).astype(np.uint8)
    np.testing.assert_array_equal(batch, levels / np.float32(255))  # exact 8-bit levels


def test_same_seed_same_batches_different_seed_differs() -> None:
    a = Batches(SOURCE, 3, 16, seed=7)
    b = Batches(SOURCE, 3, 16, seed=7)
    c = Batches(SOURCE, 3, 16, seed=8)
    for i in (0, 1, 5, 1000):
        np.testing.assert_array_equal(a.batch(i), b.batch(i))
    assert not np.array_equal(a.batch(0), c.batch(0))
    assert not np.array_equal(a.batch(0), a.batch(1))


def test_every_sample_is_a_flipped_crop_of_a_source_image() -> None:
    batches = Batches(SOURCE, 4, 16, seed=3)
    flips_seen = set()
    for i in range(10):
        for patch in batches.batch(i):
            matches = [flips for image in SOURCE.images for flips in _flips_matching(image, patch)]
            assert matches, "a sample is not a crop of any source image"
            flips_seen.update(matches)
    assert flips_seen == {(False, False), (False, True), (True, False), (True, True)}


def _flips_matching(image: np.ndarray, patch: np.ndarray) -> list[tuple[bool, bool]]:
    """The (vertical, horizontal) flips under which `patch` is a crop of `image`."""
    patch8 = np.rint(patch * 255).astype(np.uint8)
    size = patch8.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size, 3))[:, :, 0]
    return [
        (fv, fh)
        for fv in (False, True)
        for fh in (False, True)
        if (windows == patch8[:: -1 if fv else 1, :: -1 if fh else 1]).all(axis=(2, 3, 4)).any()
    ]


def test_epoch_visits_every_image_once() -> None:
    tiny = ImageSet(tuple("abcde"), tuple(np.full((8, 8, 3), v, np.uint8) for v in (0, 50, 100, 150, 200)))
    batches = Batches(tiny, batch_size=5, crop=8, seed=0)
    for i in range(3):
        values = sorted(np.rint(batches.batch(i)[:, 0, 0, 0] * 255).astype(int))
        assert values == [0, 50, 100, 150, 200]


def test_resume_from_index_matches_full_run() -> None:
    batches = Batches(SOURCE, 2, 16, seed=11)
    with batches.iterate(start=0, stop=8) as full:
        all_batches = list(full)
    assert len(all_batches) == 8
    with batches.iterate(start=5, stop=8, prefetch=1) as resumed:
        for expected, got in zip(all_batches[5:], resumed, strict=True):
            np.testing.assert_array_equal(expected, got)


def test_prefetch_independent_of_timing() -> None:
    batches = Batches(SOURCE, 2, 16, seed=2)
    with batches.iterate(stop=6, prefetch=1) as slow_consumer:
        slow = []
        for batch in slow_consumer:
            time.sleep(0.01)
            slow.append(batch)
    for i, batch in enumerate(slow):
        np.testing.assert_array_equal(batch, batches.batch(i))


def test_prefetch_thread_stops_on_close_and_on_break() -> None:
    before = threading.active_count()
    iterator = Batches(SOURCE, 2, 16, seed=0).iterate(prefetch=2)  # infinite
    next(iterator)
    time.sleep(0.05)  # let the producer block on the full queue
    iterator.close()
    assert not iterator.alive
    with Batches(SOURCE, 2, 16, seed=0).iterate() as infinite:
        for i, _ in enumerate(infinite):
            if i == 3:
                break
    assert not infinite.alive
    assert threading.active_count() == before


def test_producer_error_reaches_consumer() -> None:
    batches = Batches(SOURCE, 2, 16, seed=0)
    with batches.iterate(start=-1, stop=2) as broken, pytest.raises(ConfigError, match=">= 0"):
        next(broken)


def test_small_images_padded_or_skipped() -> None:
    source = _images([(10, 40), (40, 40)])
    padded = Batches(source, 8, 32, seed=0).batch(0)
    assert padded.shape == (8, 32, 32, 3)
    with pytest.warns(UserWarning, match="smaller than the 32x32 crop"):
        skipping = Batches(source, 4, 32, seed=0, small="skip")
    for patch in skipping.batch(0):
        assert _flips_matching(source.images[1], patch)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="smaller than"):
        Batches(_images([(10, 10)]), 1, 32, seed=0, small="skip")


def test_reflection_pad_of_tiny_image() -> None:
    one_pixel_wide = _images([(20, 1)])
    assert Batches(one_pixel_wide, 1, 8, seed=0).batch(0).shape == (1, 8, 8, 3)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"crop": 0}, {"small": "crop"}])
def test_bad_config(kwargs: dict) -> None:
    params = {"batch_size": 2, "crop": 8, "seed": 0} | kwargs
    with pytest.raises(ConfigError):
        Batches(SOURCE, **params)


def test_folder_loading_skips_unreadable(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_image(tmp_path / "b" / "one.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    write_image(tmp_path / "a.png", rng.integers(0, 256, (25, 20, 3), dtype=np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="broken.png"):
        loaded = ImageSet.from_folders(tmp_path, progress=False)
    assert [Path(n).name for n in loaded.names] == ["a.png", "one.png"]
    assert loaded.images[0].shape == (25, 20, 3)


def test_all_unreadable_or_empty_folder_is_data_error(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of the 1 files"):
        ImageSet.from_folders(tmp_path, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        ImageSet.from_folders(tmp_path / "empty", progress=False)
    with pytest.raises(DataError):
        ImageSet.from_folders()


def test_default_image_set_feeds_batches() -> None:
    default = ImageSet.default()
    assert len(default) >= 4
    batch = Batches(default, 2, 256, seed=0).batch(0)
    assert batch.shape == (2, 256, 256, 3) and batch.std() > 0.05


def test_split_is_deterministic_disjoint_and_order_free() -> None:
    paths = [Path(f"/data/img{i:03d}.png") for i in range(50)]
    train, val = split_train_val(paths, val_fraction=0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(paths)
    assert split_train_val(list(reversed(paths)), 0.2, seed=3) == (train, val)
    assert split_train_val(paths, 0.2, seed=4) != (train, val)
    with pytest.raises(DataError):
        split_train_val(paths[:1])
    with pytest.raises(ConfigError):
        split_train_val(paths, val_fraction=1.0)


@pytest.mark.skipif(not SHARED_TRAIN.is_dir(), reason="../shared/data/train is absent (only on the project machines)")
@pytest.mark.slow
def test_shared_training_folders_load() -> None:
    loaded = ImageSet.from_folders(SHARED_TRAIN, progress=False)
    assert len(loaded) >= 160
    assert Batches(loaded, 8, 256, seed=0).batch(0).shape == (8, 256, 256, 3)
