"""Coding the latent of a context model (ELIC, LALIC): channel groups, two checkerboard passes each.

The y stream holds 2 x groups parts in coding order (group 0 anchors, group 0 non-anchors,
group 1 anchors, ...), each part's symbols grouped by table and followed by its escapes
(`SymbolCoder.encode_parts`). A pass's table indexes and means come from the package's integer
context networks (`jaxlic.quant.context_params` for ELIC, `jaxlic.quant.rwkv_context` for
LALIC), which run once per pass on the whole half of
the latent, jitted per shape; they read only what was decoded before (z, the earlier groups, the
anchors of the group), so the decoder computes the same integers as the encoder and reads each
part once it knows its tables.
"""

from __future__ import annotations

import numpy as np

from jaxlic.codec.package import ModelPackage
from jaxlic.errors import PackageError
from jaxlic.models.elic import split_checkerboard
from jaxlic.quant.context_params import LATENT_EXPONENT, run_passes


def _code(package: ModelPackage, z_symbols: np.ndarray, backend: str, symbols_for) -> tuple[np.ndarray, np.ndarray]:
    """Run every pass; (symbols, means) of the whole latent, means as float32 (exact: integers
    at 2^-8 below 2^24)."""
    params = package.context_params
    out = run_passes(params.structure, params.runner(backend), z_symbols, symbols_for)
    symbols = np.concatenate([s for s, _ in out], axis=-1).astype(np.int64)
    means = np.concatenate([m for _, m in out], axis=-1) * 2.0 ** -LATENT_EXPONENT
    return symbols, means.astype(np.float32)


def _group_halves(y: np.ndarray, groups: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    bounds = np.cumsum((0,) + groups)
    return [split_checkerboard(y[..., bounds[k]:bounds[k + 1]].astype(np.float64), np) for k in range(len(groups))]


def encode_latent(package: ModelPackage, y: np.ndarray, z_symbols: np.ndarray, backend: str = "jax") -> bytes:
    """The y stream of a context model, given the analysis output and the coded z symbols
    (`backend` runs the integer context networks: every one gives the same integers)."""
    if not np.all(np.isfinite(y)):
        raise PackageError("the model produced non-finite latents (diverged or tampered parameters?)")
    halves = _group_halves(y, package.context_params.structure.groups)
    parts = []

    def round_around_means(k: int, anchors: bool, index, means):
        symbols = np.round(halves[k][0 if anchors else 1] - means * 2.0 ** -LATENT_EXPONENT)
        parts.append((symbols, index))
        return symbols

    _code(package, z_symbols, backend, round_around_means)
    return package.coders["gaussian"].encode_parts(parts)


def decode_latent(package: ModelPackage, stream: bytes, z_symbols: np.ndarray, backend: str = "jax"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(y symbols, means) of a context model's y stream; BitstreamError for a stream that is not
    exactly the coding of what it decodes to."""
    reader = package.coders["gaussian"].reader(stream)

    def read(k: int, anchors: bool, index, means):
        return reader.read(index).reshape(index.shape).astype(np.float64)

    symbols, means = _code(package, z_symbols, backend, read)
    reader.finish()
    return symbols, means
