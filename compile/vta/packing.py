"""Data layouts of the VTA lowering: NCHW{b}n{c}c activations, OIHW{c}o{c}i weights, ACC biases.

With BATCH 1 an activation is stored as (N, C/c, H, W, c) int8, channels zero-padded to a
multiple of BLOCK; weights HWIO become (O/c, I/c, KH, KW, c_out, c_in); a bias becomes
(O/c, c) int32 (one ACC element per output channel block).
"""

from __future__ import annotations

import numpy as np


def blocks(channels: int, block: int) -> int:
    """Number of BLOCK-wide channel groups (channels padded up)."""
    return -(-channels // block)


def pack_activation(x: np.ndarray, block: int) -> np.ndarray:
    """NHWC int8 -> (N, C/c, H, W, c) int8 with zero channel padding."""
    n, h, w, c = x.shape
    cb = blocks(c, block)
    padded = np.zeros((n, h, w, cb * block), x.dtype)
    padded[..., :c] = x
    return np.ascontiguousarray(padded.reshape(n, h, w, cb, block).transpose(0, 3, 1, 2, 4))


def unpack_activation(packed: np.ndarray, channels: int) -> np.ndarray:
    """(N, C/c, H, W, c) -> NHWC with the first `channels` channels."""
    n, cb, h, w, block = packed.shape
    return np.ascontiguousarray(packed.transpose(0, 2, 3, 1, 4).reshape(n, h, w, cb * block)[..., :channels])


def pack_weights(w: np.ndarray, block: int) -> np.ndarray:
    """HWIO int8 -> (O/c, I/c, KH, KW, c_out, c_in) int8 with zero padding of both channel axes."""
    kh, kw, cin, cout = w.shape
    ib, ob = blocks(cin, block), blocks(cout, block)
    padded = np.zeros((kh, kw, ib * block, ob * block), w.dtype)
    padded[:, :, :cin, :cout] = w
    return np.ascontiguousarray(padded.reshape(kh, kw, ib, block, ob, block).transpose(4, 2, 0, 1, 5, 3))


def pack_bias(bias: np.ndarray, block: int) -> np.ndarray:
    """(C,) int32 -> (C/c, c) int32 with zero padding."""
    ob = blocks(bias.shape[0], block)
    padded = np.zeros(ob * block, np.int32)
    padded[:bias.shape[0]] = bias
    return padded.reshape(ob, block)


def unpack_weights(packed: np.ndarray, in_channels: int, out_channels: int) -> np.ndarray:
    """Inverse of `pack_weights`: (O/c, I/c, KH, KW, c_out, c_in) -> HWIO."""
    ob, ib, kh, kw, block, _ = packed.shape
    hwio = packed.transpose(2, 3, 1, 5, 0, 4).reshape(kh, kw, ib * block, ob * block)
    return np.ascontiguousarray(hwio[:, :, :in_channels, :out_channels])
