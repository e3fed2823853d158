"""JPEG for sandwiches: a differentiable proxy that follows Pillow's libjpeg, and the real codec.

The proxy mirrors what libjpeg does with Pillow's defaults (baseline, standard IJG tables scaled by
quality, islow DCT, fancy upsampling): round and clip the code image to 8-bit integers; for colour,
RGB -> YCbCr (JFIF, rounded to integers) and optional 4:2:0 (2x2 means); level shift, 8x8
orthonormal DCT, quantization by the quality's tables with straight-through rounding, inverse DCT,
clip and round; for 4:2:0, libjpeg's triangular ("fancy") chroma upsampling; YCbCr -> RGB, clip
and round. Grayscale code images are one component with the luminance table (what libjpeg writes
for mode L). Sizes are padded by edge replication to whole blocks (whole 16x16 MCUs for 4:2:0).

With `learn_tables`, a trainable log-multiplier per table entry scales the IJG base tables before
the quality scaling; the real encoder then writes those tables into the file (Pillow `qtables`),
so any decoder reads it.

Rate features per image, linear in the payload bits: sum(log2(1 + |q|)) (the sandwich papers'
statistic; gradients flow through it), the number of nonzero coefficients (each costs a Huffman
run/size code) and the number of blocks (end-of-block and DC codes). DC coefficients enter as
horizontal differences, as JPEG codes DC by DPCM.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxlic.errors import BitstreamError, ConfigError, ImageError
from jaxlic.sandwich.codecs import ProxyOutput

# IJG (ITU-T T.81 Annex K) base tables in natural (row-major) order.
LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float32).reshape(8, 8)
CHROMA_TABLE = np.full((8, 8), 99, dtype=np.float32)
CHROMA_TABLE[:4, :4] = np.array([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]])

# JFIF colour conversion (libjpeg jccolor.c / jdcolor.c).
RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]],
                      dtype=np.float32)
YCC_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136286, -0.714136286], [1.0, 1.772, 0.0]], dtype=np.float32)
CHROMA_OFFSET = np.array([0.0, 128.0, 128.0], dtype=np.float32)

SUBSAMPLINGS = ("4:4:4", "4:2:0")


def dct_matrix(n: int = 8) -> np.ndarray:
    """The orthonormal DCT-II matrix D (coefficients = D @ block @ D.T), JPEG's normalization."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.cos((2 * i + 1) * k * np.pi / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


DCT = dct_matrix()


def ste_round(x: jax.Array) -> jax.Array:
    """Round in the forward pass, identity gradient (straight-through)."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def quality_scale(quality: jax.Array) -> jax.Array:
    """libjpeg's jpeg_quality_scaling: percent scale of the base tables for quality 1..100."""
    q = jnp.clip(jnp.asarray(quality, jnp.int32), 1, 100)
    return jnp.where(q < 50, 5000 // q, 200 - 2 * q).astype(jnp.float32)


def quant_tables(quality: jax.Array, channels: int, log_scale: jax.Array | None = None) -> jax.Array:
    """Quantization tables (N, T, 8, 8) for per-image qualities (N,), T = 1 (gray) or 2 (colour).

    As libjpeg with force_baseline: floor((base * scale + 50) / 100) clipped to 1..255; a learned
    `log_scale` (T, 8, 8) multiplies the base (straight-through through the integer rounding).
    """
    base = jnp.asarray(np.stack([LUMA_TABLE, CHROMA_TABLE])[: 1 if channels == 1 else 2])
    if log_scale is not None:
        base = base * jnp.exp(log_scale)
    scale = quality_scale(quality)[:, None, None, None]
    exact = (base[None] * scale + 50.0) / 100.0
    return exact + jax.lax.stop_gradient(jnp.clip(jnp.floor(exact), 1.0, 255.0) - exact)


def _pad_to(x: jax.Array, multiple: int) -> jax.Array:
    """Pad axes 1 and 2 (H, W of N, H, W[, C]) by edge replication up to a multiple."""
    h, w = x.shape[1:3]
    widths = ((0, 0), (0, -h % multiple), (0, -w % multiple)) + ((0, 0),) * (x.ndim - 3)
    return jnp.pad(x, widths, mode="edge")


def _downsample2(x: jax.Array) -> jax.Array:
    """libjpeg's h2v2 downsampling: the rounded mean of each 2x2 (edges replicated)."""
    x = _pad_to(x, 2)
    n, h, w = x.shape
    return ste_round(x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4)))


def _fancy_upsample_axis(x: jax.Array, axis: int) -> jax.Array:
    """Double one axis with libjpeg's triangular filter: 3/4 nearest + 1/4 next-nearest sample."""
    n = x.shape[axis]
    prev = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, axis=axis), jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis)
    even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis=axis + 1)
    return out.reshape(*x.shape[:axis], 2 * n, *x.shape[axis + 1:])


def _upsample2(x: jax.Array) -> jax.Array:
    return ste_round(_fancy_upsample_axis(_fancy_upsample_axis(x, 1), 2))


def _code_component(x: jax.Array, table: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One component (N, H, W) through DCT, quantization and back; (decoded, rate features (N, 3))."""
    n, h, w = x.shape
    padded = _pad_to(x, 8)
    hb, wb = padded.shape[1] // 8, padded.shape[2] // 8
    blocks = (padded - 128.0).reshape(n, hb, 8, wb, 8).transpose(0, 1, 3, 2, 4)
    dct = jnp.asarray(DCT)
    coef = jnp.einsum("uh,nijhw,vw->nijuv", dct, blocks, dct)
    q = ste_round(coef / table[:, None, None])
    dc = q[..., 0, 0]
    coded = q.at[..., 0, 0].set(dc - jnp.pad(dc, ((0, 0), (0, 0), (1, 0)))[..., :-1])  # DC by DPCM
    magnitude = jnp.log2(1.0 + jnp.abs(coded)).sum(axis=(1, 2, 3, 4))
    nonzero = jax.lax.stop_gradient((coded != 0).sum(axis=(1, 2, 3, 4)).astype(jnp.float32))
    features = jnp.stack([magnitude, nonzero, jnp.full((n,), hb * wb, jnp.float32)], axis=-1)
    rec = jnp.einsum("uh,nijuv,vw->nijhw", dct, q * table[:, None, None], dct) + 128.0
    rec = ste_round(jnp.clip(rec, 0.0, 255.0))
    rec = rec.transpose(0, 1, 3, 2, 4).reshape(n, hb * 8, wb * 8)
    return rec[:, :h, :w], features


@dataclass(frozen=True)
class JpegCodec:
    """Baseline JPEG as Pillow writes it: grayscale (channels=1) or colour (4:2:0 or 4:4:4)."""

    channels: int = 3
    subsampling: str = "4:2:0"
    learn_tables: bool = False
    name: str = "jpeg"
    # Rough bits per feature (log-magnitude, nonzero, block); the first calibration replaces them.
    rate_prior: tuple[float, ...] = (2.0, 1.0, 6.0)

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ConfigError(f"JPEG code images have 1 or 3 channels, got {self.channels}")
        if self.subsampling not in SUBSAMPLINGS:
            raise ConfigError(f"JPEG subsampling must be one of {', '.join(SUBSAMPLINGS)}, got {self.subsampling!r}")

    @property
    def _num_tables(self) -> int:
        return 1 if self.channels == 1 else 2

    def init_params(self) -> dict:
        return {"log_scale": jnp.zeros((self._num_tables, 8, 8))} if self.learn_tables else {}

    def tables(self, params: dict, quality: jax.Array) -> jax.Array:
        """(N, T, 8, 8) quantization tables for per-image qualities (N,)."""
        return quant_tables(quality, self.channels, params.get("log_scale") if self.learn_tables else None)

    def proxy(self, params: dict, code: jax.Array, quality: jax.Array) -> ProxyOutput:
        """Differentiable JPEG encode+decode of (N, H, W, C) code images on the 0..255 scale."""
        if code.ndim != 4 or code.shape[-1] != self.channels:
            raise ImageError(f"JPEG proxy expects (N, H, W, {self.channels}) code images, got {code.shape}")
        tables = self.tables(params, quality)
        x = ste_round(jnp.clip(code, 0.0, 255.0))
        if self.channels == 1:
            decoded, rate = _code_component(x[..., 0], tables[:, 0])
            return ProxyOutput(decoded[..., None], rate)
        h, w = x.shape[1:3]
        ycc = ste_round(x @ jnp.asarray(RGB_TO_YCC).T + jnp.asarray(CHROMA_OFFSET))
        if self.subsampling == "4:2:0":
            ycc = _pad_to(ycc, 16)  # whole MCUs, so luma and chroma blocks line up as in libjpeg
        luma, rate = _code_component(ycc[..., 0], tables[:, 0])
        chroma = []
        for c in (1, 2):
            component = _downsample2(ycc[..., c]) if self.subsampling == "4:2:0" else ycc[..., c]
            decoded, r = _code_component(component, tables[:, 1])
            chroma.append(_upsample2(decoded) if self.subsampling == "4:2:0" else decoded)
            rate = rate + r
        rec = jnp.stack([luma] + chroma, axis=-1)[:, :h, :w] - jnp.asarray(CHROMA_OFFSET)
        rgb = ste_round(jnp.clip(rec @ jnp.asarray(YCC_TO_RGB).T, 0.0, 255.0))
        return ProxyOutput(rgb, rate)

    def _save_options(self, params: dict, quality: int) -> dict:
        if not 1 <= quality <= 100:
            raise ConfigError(f"JPEG quality must be in 1..100, got {quality}")
        options: dict = {} if self.channels == 1 else {"subsampling": self.subsampling}
        if self.learn_tables:
            tables = np.asarray(self.tables(params, jnp.array([quality])))[0]
            options["qtables"] = [[int(v) for v in t.reshape(-1)] for t in tables]
        else:
            options["quality"] = quality
        return options

    def encode(self, params: dict, code: np.ndarray, quality: int, comment: bytes = b"") -> bytes:
        """A baseline JPEG file of a uint8 (H, W, C) code image."""
        code = np.asarray(code)
        if code.dtype != np.uint8 or code.ndim != 3 or code.shape[2] != self.channels:
            raise ImageError(f"JPEG encoder expects a uint8 HxWx{self.channels} code image, got {code.dtype} {code.shape}")
        image = Image.fromarray(code[:, :, 0] if self.channels == 1 else code)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", comment=comment, **self._save_options(params, quality))
        return buffer.getvalue()

    def decode(self, data: bytes) -> tuple[np.ndarray, bytes]:
        """The uint8 (H, W, C) code image and the comment of a JPEG file."""
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise BitstreamError(f"not a readable JPEG file ({exc})") from exc
        expected = "L" if self.channels == 1 else "RGB"
        if image.format != "JPEG" or image.mode != expected:
            raise BitstreamError(f"expected a {expected} JPEG, got a {image.mode} {image.format} file")
        pixels = np.asarray(image)
        comment = image.info.get("comment", b"")
        return (pixels[:, :, None] if self.channels == 1 else pixels), comment

    def payload_bits(self, data: bytes) -> int:
        """Bits of the entropy-coded scan (the file less its marker segments and EOI)."""
        return 8 * (len(data) - scan_start(data) - 2)


def scan_start(data: bytes) -> int:
    """Offset of the entropy-coded data of a single-scan (baseline) JPEG."""
    if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        raise BitstreamError("not a complete JPEG file (missing SOI or EOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise BitstreamError(f"corrupt JPEG marker structure at byte {pos}")
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + length
        if marker == 0xDA:
            return pos
    raise BitstreamError("JPEG file has no scan (SOS marker)")
