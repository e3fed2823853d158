"""Training data: images decoded once into memory, random crops and flips, batches from (seed, i).

Batch ``i`` is a pure function of ``(seed, i)``: sample ``k = i * batch_size + j`` takes image
``perm_e[k % n]`` where ``perm_e`` is the permutation of epoch ``e = k // n`` (drawn from
``(seed, e)``), and its crop offset and flips come from ``(seed, k)``. A resumed run therefore gets
exactly the batches it would have got, whatever the prefetch timing.

Images smaller than the crop on a side are, by default, padded by reflection (``small="pad"``);
``small="skip"`` drops them with a warning instead.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from jaxlic.errors import ConfigError, DataError, ImageError
from jaxlic.images import PathLike, default_images, list_images, read_image

_EPOCH_STREAM = 0
_SAMPLE_STREAM = 1


@dataclass(frozen=True)
class ImageSet:
    """Decoded uint8 HxWx3 images held in memory, with a name each."""

    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_paths(cls, paths: Sequence[PathLike], progress: bool = True) -> ImageSet:
        """Decode `paths` once; unreadable files are skipped with a warning."""
        names, arrays = [], []
        for path in tqdm(paths, desc="loading images", unit="img", disable=not progress):
            try:
                arrays.append(read_image(path))
            except ImageError as exc:
                warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
                continue
            names.append(str(path))
        if not arrays:
            raise DataError(f"none of the {len(paths)} files could be read as an image")
        return cls(tuple(names), tuple(arrays))

    @classmethod
    def from_folders(cls, *folders: PathLike, recursive: bool = True, progress: bool = True) -> ImageSet:
        """Every image under `folders` (recursively by default), in sorted order."""
        if not folders:
            raise DataError("no folder given; pass at least one folder of images")
        paths = [path for folder in folders for path in list_images(folder, recursive=recursive)]
        return cls.from_paths(paths, progress=progress)

    @classmethod
    def default(cls) -> ImageSet:
        """The built-in scikit-image photographs (no network, no ../shared)."""
        named = default_images()
        return cls(tuple(name for name, _ in named), tuple(array for _, array in named))


def split_train_val(paths: Sequence[PathLike], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split paths into (train, validation), deterministic in (set of paths, seed), not in their order.

    Files are ranked by a hash of (seed, path); the first ``round(n * val_fraction)`` (at least
    one) go to validation. Both lists come back sorted.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    unique = sorted({Path(p) for p in paths})
    if len(unique) < 2:
        raise DataError(f"need at least 2 images to split into train and validation, got {len(unique)}")
    ranked = sorted(unique, key=lambda p: hashlib.sha256(f"{seed}:{p.as_posix()}".encode()).digest())
    n_val = min(max(1, round(len(unique) * val_fraction)), len(unique) - 1)
    return sorted(ranked[n_val:]), sorted(ranked[:n_val])


def _fit_to_crop(images: ImageSet, crop: int, small: Literal["pad", "skip"]) -> list[np.ndarray]:
    fitted = []
    for name, image in zip(images.names, images.images):
        height, width = image.shape[:2]
        if height >= crop and width >= crop:
            fitted.append(image)
        elif small == "pad":
            pad = ((0, max(0, crop - height)), (0, max(0, crop - width)), (0, 0))
            fitted.append(np.pad(image, pad, mode="reflect" if min(height, width) > 1 else "edge"))
        else:
            warnings.warn(f"skipping {name}: {width}x{height} is smaller than the {crop}x{crop} crop", stacklevel=3)
    if not fitted:
        raise DataError(f"every image is smaller than the {crop}x{crop} crop; use a smaller crop or small='pad'")
    return fitted


class Batches:
    """Deterministic batches of random crops: float32 NHWC in [0, 1], batch i from (seed, i)."""

    def __init__(
        self,
        source: ImageSet,
        batch_size: int,
        crop: int,
        seed: int,
        flips: bool = True,
        small: Literal["pad", "skip"] = "pad",
    ) -> None:
        if batch_size < 1 or crop < 1:
            raise ConfigError(f"batch_size and crop must be positive, got {batch_size} and {crop}")
        if small not in ("pad", "skip"):
            raise ConfigError(f"small must be 'pad' or 'skip', got {small!r}")
        self.batch_size = batch_size
        self.crop = crop
        self.seed = seed
        self.flips = flips
        self._images = _fit_to_crop(source, crop, small)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, _EPOCH_STREAM, epoch]).permutation(len(self._images))

    def _sample(self, k: int, order: np.ndarray) -> np.ndarray:
        image = self._images[order[k % len(self._images)]]
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, k])
        top = rng.integers(0, image.shape[0] - self.crop + 1)
        left = rng.integers(0, image.shape[1] - self.crop + 1)
        patch = image[top : top + self.crop, left : left + self.crop]
        flip_h, flip_v = rng.integers(0, 2, size=2) if self.flips else (0, 0)
        return patch[::-1 if flip_v else 1, ::-1 if flip_h else 1]

    def batch(self, index: int, rows: range | None = None) -> np.ndarray:
        """Batch `index` (>= 0) as float32 of shape (batch_size, crop, crop, 3) in [0, 1]; with
        `rows`, only those samples of it (a host's share in a multi-host run)."""
        if index < 0:
            raise ConfigError(f"batch index must be >= 0, got {index}")
        rows = range(self.batch_size) if rows is None else rows
        n = len(self._images)
        first = index * self.batch_size
        orders: dict[int, np.ndarray] = {}
        out = np.empty((len(rows), self.crop, self.crop, 3), dtype=np.float32)
        for j, k in enumerate(first + row for row in rows):
            epoch = k // n
            if epoch not in orders:
                orders[epoch] = self._epoch_order(epoch)
            out[j] = self._sample(k, orders[epoch])
        out /= np.float32(255.0)  # exactly uint8 / 255 in float32
        return out

    def iterate(self, start: int = 0, stop: int | None = None, prefetch: int = 4,
                rows: range | None = None) -> Prefetcher:
        """Batches start, start+1, ... (up to `stop`, exclusive; only `rows` of each when given)
        computed ahead in a background thread."""
        return Prefetcher(lambda index: self.batch(index, rows), start, stop, prefetch)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iterate()


class Prefetcher:
    """Iterator over batch indices filled by one daemon thread through a bounded queue.

    Use it as a context manager (or call `close`) so the thread stops as soon as the consumer does.
    """

    _POLL_SECONDS = 0.1

    def __init__(self, make_batch: Callable[[int], np.ndarray], start: int, stop: int | None, depth: int) -> None:
        if depth < 1:
            raise ConfigError(f"prefetch depth must be >= 1, got {depth}")
        self._make_batch = make_batch
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._exhausted = False
        self._thread = threading.Thread(target=self._produce, args=(start, stop), name="jaxlic-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[str, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=self._POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, start: int, stop: int | None) -> None:
        index = start
        try:
            while (stop is None or index < stop) and not self._stop.is_set():
                if not self._put(("batch", self._make_batch(index))):
                    return
                index += 1
            self._put(("end", None))
        except BaseException as exc:  # hand any failure to the consumer instead of dying silently
            self._put(("error", exc))

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> np.ndarray:
        if self._exhausted:
            raise StopIteration
        kind, payload = self._queue.get()
        if kind == "batch":
            return payload  # type: ignore[return-value]
        self._exhausted = True
        self.close()
        if kind == "error":
            raise payload  # type: ignore[misc]
        raise StopIteration

    def close(self) -> None:
        """Stop the producer thread and wait for it."""
        self._stop.set()
        self._thread.join()

    @property
    def alive(self) -> bool:
        """Whether the producer thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
