"""Integer coding tables: built once from a model, stored with it, never rebuilt to decode.

A table is a list of integer frequencies summing to 2^16, one per symbol 0..L-2 plus a final
overflow symbol that announces an escaped (out-of-range) value. Every frequency is >= 1, so
every symbol stays codable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxlic.errors import PackageError

PRECISION = 16
TAIL_MASS = 1e-9  # probability every table leaves to the overflow symbol (both tails together)
TOTAL = 1 << PRECISION
MAX_SYMBOLS = TOTAL // 2  # every symbol needs a frequency >= 1


def quantize_pmf(pmf: np.ndarray, tail_mass: float) -> np.ndarray:
    """Integer frequencies (sum 2^16, each >= 1) for pmf + one overflow symbol of `tail_mass`."""
    probs = np.append(np.asarray(pmf, np.float64), max(float(tail_mass), 0.0))
    probs = np.maximum(probs, 0.0)
    total = probs.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("cannot build a coding table from an empty or non-finite pmf")
    n = probs.size
    if n > MAX_SYMBOLS:
        raise ValueError(f"a coding table of {n} symbols does not fit {PRECISION}-bit precision")
    freqs = np.floor(probs / total * (TOTAL - n)).astype(np.int64) + 1
    freqs[np.argmax(freqs)] += TOTAL - freqs.sum()
    return freqs.astype(np.uint32)


@dataclass(frozen=True)
class CodingTables:
    """A set of tables: `freqs[t, :lengths[t]]`, symbol s of table t stands for s + offsets[t]."""

    freqs: np.ndarray  # (T, Lmax) uint32, zero beyond each length
    lengths: np.ndarray  # (T,) int32, including the overflow symbol
    offsets: np.ndarray  # (T,) int32

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], tails: np.ndarray, offsets: np.ndarray) -> "CodingTables":
        """Quantize one pmf (with its tail mass) per table."""
        rows = [quantize_pmf(p, t) for p, t in zip(pmfs, tails)]
        width = max(r.size for r in rows)
        freqs = np.zeros((len(rows), width), np.uint32)
        for i, row in enumerate(rows):
            freqs[i, : row.size] = row
        lengths = np.array([r.size for r in rows], np.int32)
        return cls(freqs, lengths, np.asarray(offsets, np.int32))

    def validate(self) -> None:
        """Raise PackageError unless the arrays form consistent tables."""
        ok = (
            self.freqs.ndim == 2
            and self.freqs.dtype.kind == "u"
            and self.lengths.dtype == self.offsets.dtype == np.int32
            and self.lengths.shape == self.offsets.shape == (self.freqs.shape[0],)
            and np.all(self.lengths >= 2)
            and np.all(self.lengths <= min(self.freqs.shape[1], MAX_SYMBOLS))
            and np.all(np.abs(self.offsets) <= TOTAL)
        )
        if ok:
            mask = np.arange(self.freqs.shape[1])[None] < self.lengths[:, None]
            ok = bool(np.all(self.freqs.sum(1, dtype=np.int64) == TOTAL) and np.all(self.freqs[mask] >= 1))
        if not ok:
            raise PackageError("coding tables are inconsistent (corrupt model package?)")

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Flat arrays for a model package: the rows without their zero padding, as uint16
        (every frequency is below 2^16: a table has 2+ symbols of frequency >= 1)."""
        packed = self.freqs[_used(self.lengths, self.freqs.shape[1])]
        return {f"{prefix}/packed_freqs": packed.astype(np.uint16),
                f"{prefix}/lengths": self.lengths, f"{prefix}/offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, count: int | None = None) -> "CodingTables":
        """Inverse of `to_arrays`, validated; with `count`, PackageError unless there are that
        many tables (checked before the tables are expanded)."""
        try:
            lengths, offsets = arrays[f"{prefix}/lengths"], arrays[f"{prefix}/offsets"]
            if lengths.dtype != np.int32 or (count is not None and lengths.shape != (count,)):
                raise PackageError(f"{prefix}: expected {count or 'some'} int32 table lengths, "
                                   f"got {lengths.dtype} {lengths.shape}")
            if f"{prefix}/freqs" in arrays:  # packages written before tables were packed
                return cls._validated(arrays[f"{prefix}/freqs"], lengths, offsets)
            packed = arrays[f"{prefix}/packed_freqs"]
        except KeyError as exc:
            raise PackageError(f"model package lacks coding table {exc.args[0]!r}") from None
        if (lengths.ndim != 1 or lengths.size == 0 or packed.dtype != np.uint16 or np.any(lengths < 2)
                or np.any(lengths > MAX_SYMBOLS) or int(lengths.sum(dtype=np.int64)) != packed.size):
            raise PackageError("coding tables are inconsistent (corrupt model package?)")
        freqs = np.zeros((lengths.size, int(lengths.max())), np.uint32)
        freqs[_used(lengths, freqs.shape[1])] = packed
        return cls._validated(freqs, lengths, offsets)

    @classmethod
    def _validated(cls, freqs: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> "CodingTables":
        tables = cls(freqs, lengths, offsets)
        tables.validate()
        return tables


def _used(lengths: np.ndarray, width: int) -> np.ndarray:
    """(tables, width) mask of the entries each table uses (its first `length`), row-major."""
    return np.arange(width)[None] < lengths[:, None]
