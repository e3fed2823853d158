"""Range coding of integer symbols with stored tables (constriction), escapes included.

Symbols are grouped by table and each group is coded with one model call, so there is no
Python loop per symbol. A value outside its table's range is coded as the overflow symbol,
followed (after all regular symbols) by its zigzag-mapped excess in 4-bit chunks.

A stream decodes only if it is exactly what `encode` writes for the decoded values: trailing,
missing or altered words are a BitstreamError, never a silently different image.

Several parts can share one stream (`encode_parts`, `PartReader`): a context model decodes
part k before it can compute the tables of part k + 1.
"""

from __future__ import annotations

import numpy as np
import constriction

from jaxlic.entropy.tables import TOTAL, CodingTables
from jaxlic.errors import BitstreamError, PackageError

CHUNK_BITS = 4
MAX_CHUNKS = 8  # escapes up to 2^32 - 1
MAX_MAGNITUDE = 1 << 31  # values must fit int32 (and their escapes MAX_CHUNKS chunks)
_COUNT_MODEL = constriction.stream.model.Uniform(MAX_CHUNKS + 1)
_CHUNK_MODEL = constriction.stream.model.Uniform(1 << CHUNK_BITS)


class SymbolCoder:
    """Encodes and decodes arrays of integers, each with the table named by `table_index`."""

    def __init__(self, tables: CodingTables):
        self.tables = tables
        self._models = [
            constriction.stream.model.Categorical(
                tables.freqs[t, : tables.lengths[t]].astype(np.float64) / TOTAL, perfect=False
            )
            for t in range(tables.freqs.shape[0])
        ]

    def _groups(self, table_index: np.ndarray):
        order = np.argsort(table_index, kind="stable")
        counts = np.bincount(table_index, minlength=len(self._models))
        starts = np.concatenate([[0], np.cumsum(counts)])
        return order, [(t, starts[t], starts[t + 1]) for t in np.flatnonzero(counts)]

    def _check_index(self, table_index: np.ndarray) -> np.ndarray:
        table_index = np.asarray(table_index, np.int64).ravel()
        if table_index.size and (table_index.min() < 0 or table_index.max() >= len(self._models)):
            raise ValueError("table index out of range")
        return table_index

    def encode(self, values: np.ndarray, table_index: np.ndarray) -> bytes:
        """Range-code `values` (integers, or floats holding integers) with their tables; returns
        the bytes. PackageError for non-finite or uncodably large values: only a diverged or
        tampered model produces them."""
        return self.encode_parts([(values, table_index)])

    def _encode(self, values: np.ndarray, table_index: np.ndarray) -> bytes | None:
        """The coded bytes of flat int64 values, or None when an escape does not fit its chunks."""
        return self._encode_parts([(values, table_index)])

    def _encode_parts(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> bytes | None:
        """One stream of several parts in order, each part's escapes right after its symbols (so
        a decoder can read part k before it knows the tables of part k + 1); None when an escape
        does not fit its chunks."""
        encoder = constriction.stream.queue.RangeEncoder()
        for values, table_index in parts:
            if not self._write(encoder, values, table_index):
                return None
        return encoder.get_compressed().astype("<u4").tobytes()

    def _write(self, encoder, values: np.ndarray, table_index: np.ndarray) -> bool:
        if values.shape != table_index.shape:
            raise ValueError("values and table_index must have the same number of elements")
        overflow = (self.tables.lengths - 1).astype(np.int64)[table_index]
        symbols = values - self.tables.offsets.astype(np.int64)[table_index]
        escaped = (symbols < 0) | (symbols >= overflow)
        excess = np.where(symbols < 0, -2 * symbols - 1, 2 * (symbols - overflow))[escaped]
        if excess.size and excess.max() >= 1 << (CHUNK_BITS * MAX_CHUNKS):
            return False
        symbols = np.where(escaped, overflow, symbols).astype(np.int32)
        order, groups = self._groups(table_index)
        ordered = symbols[order]
        for t, start, stop in groups:
            encoder.encode(ordered[start:stop], self._models[t])
        if excess.size:
            counts = _chunk_counts(excess)
            encoder.encode(counts.astype(np.int32), _COUNT_MODEL)
            encoder.encode(_to_chunks(excess, counts), _CHUNK_MODEL)
        return True

    def encode_parts(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
        """`encode` of several (values, table_index) parts into one stream, in order; a
        `PartReader` decodes them one at a time."""
        flat = []
        for values, table_index in parts:
            values = np.asarray(values)
            if not (np.all(np.isfinite(values)) and np.abs(values).max(initial=0) < MAX_MAGNITUDE):
                raise PackageError("the model produced non-finite or too large latents (diverged or tampered parameters?)")
            flat.append((values.astype(np.int64).ravel(), self._check_index(table_index)))
        data = self._encode_parts(flat)
        if data is None:
            raise PackageError("the model produced non-finite or too large latents (diverged or tampered parameters?)")
        return data

    def reader(self, data: bytes) -> "PartReader":
        """Decodes the parts of an `encode_parts` stream one at a time."""
        return PartReader(self, data)

    def decode(self, data: bytes, table_index: np.ndarray) -> np.ndarray:
        """Inverse of `encode` for the same `table_index`; flat int64 values."""
        reader = self.reader(data)
        values = reader.read(table_index)
        reader.finish()
        return values

    def _read(self, decoder, table_index: np.ndarray) -> np.ndarray:
        """One part's flat int64 values (symbols, then escapes) from a constriction decoder."""
        order, groups = self._groups(table_index)
        ordered = np.empty(table_index.size, np.int64)
        for t, start, stop in groups:
            ordered[start:stop] = decoder.decode(self._models[t], int(stop - start))
        symbols = np.empty_like(ordered)
        symbols[order] = ordered
        overflow = (self.tables.lengths - 1).astype(np.int64)[table_index]
        escaped = symbols == overflow
        if escaped.any():
            counts = decoder.decode(_COUNT_MODEL, int(escaped.sum())).astype(np.int64)
            chunks = decoder.decode(_CHUNK_MODEL, int(counts.sum())).astype(np.int64)
            excess = _from_chunks(chunks, counts)
            symbols[escaped] = np.where(excess % 2 == 1, -(excess + 1) // 2, overflow[escaped] + excess // 2)
        return symbols + self.tables.offsets.astype(np.int64)[table_index]


class PartReader:
    """Reads the parts of one stream in order (`read`), then checks that the stream is exactly
    the coding of everything read (`finish`): trailing, missing or altered words are a
    BitstreamError, never a silently different image."""

    def __init__(self, coder: SymbolCoder, data: bytes):
        if len(data) % 4:
            raise BitstreamError("entropy-coded stream length is not a multiple of 4 bytes")
        self.coder, self.data, self.parts = coder, data, []
        try:
            self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
        except Exception as exc:
            raise BitstreamError(f"entropy-coded stream is corrupt: {exc}") from None

    def read(self, table_index: np.ndarray) -> np.ndarray:
        """The next part's flat int64 values, for its table indexes."""
        table_index = self.coder._check_index(table_index)
        try:
            values = self.coder._read(self._decoder, table_index)
        except Exception as exc:  # constriction reports invalid data as ValueError/RuntimeError
            raise BitstreamError(f"entropy-coded stream is corrupt: {exc}") from None
        if np.abs(values).max(initial=0) >= MAX_MAGNITUDE:
            raise BitstreamError("entropy-coded stream decodes to values of magnitude 2^31 or more")
        self.parts.append((values, table_index))
        return values

    def finish(self) -> None:
        """BitstreamError unless the stream is exactly what `encode_parts` writes for the parts read."""
        if self.coder._encode_parts(self.parts) != self.data:
            raise BitstreamError("entropy-coded stream is not exactly the coding of its symbols "
                                 "(trailing, missing or altered words)")


def _chunk_counts(excess: np.ndarray) -> np.ndarray:
    """Number of 4-bit chunks needed for each non-negative excess (0 needs none)."""
    counts = np.zeros(excess.shape, np.int64)
    remaining = excess.copy()
    while np.any(remaining):
        counts += remaining > 0
        remaining >>= CHUNK_BITS
    return counts


def _to_chunks(excess: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Flat little-endian 4-bit chunks of every excess, `counts[i]` chunks for element i."""
    shifts = CHUNK_BITS * np.arange(MAX_CHUNKS)
    all_chunks = (excess[:, None] >> shifts[None]) & ((1 << CHUNK_BITS) - 1)
    return all_chunks[np.arange(MAX_CHUNKS)[None] < counts[:, None]].astype(np.int32)


def _from_chunks(chunks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inverse of `_to_chunks`."""
    owner = np.repeat(np.arange(counts.size), counts)
    position = np.arange(chunks.size) - np.repeat(np.cumsum(counts) - counts, counts)
    excess = np.zeros(counts.size, np.int64)
    np.add.at(excess, owner, chunks << (CHUNK_BITS * position))
    return excess
