"""A sandwich model: config, the pure pre-net -> codec -> post-net functions, and its package file.

`Sandwich` holds the networks and the codec of a config; its functions are pure in the
parameters, so training jits them and inference reuses them. `SandwichPackage` is a trained model
(config + parameters) that encodes images to real standard files and decodes them back.

Package layout: magic ``JXLSAND\\0``, format version (u16), header length (u32), a JSON header
(the config), the parameters (Flax msgpack), and a SHA-256 of everything before it. The
fingerprint (8 bytes of a hash of config and parameters) is written into every file the package
encodes, so decoding with another model is an error, not garbage.

File metadata: one JPEG comment, ``JXS\x02`` (tag and metadata version), the fingerprint (8
bytes), the quality (u8), the image's height and width (u32 each) and the post-net's strength
(u8, in 16ths), 22 bytes; with its marker 26 bytes of the file, the only bytes a sandwich adds to
the plain codec's file. Files of metadata version 1 (no strength byte) decode at strength 1.

The strength is the encoder's choice: it decodes its own file and scales the post-net's residual
by the k/16 (k = 0..32) that brings the output closest to the image (MSE at the image's bit
depth). k = 0 is the plain codec's own reconstruction, so for a post-net-only sandwich every file
decodes at least as well as the baseline at the same scan bytes, whatever the training did.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxlic.errors import BitstreamError, ConfigError, ImageError, ModelMismatchError, PackageError
from jaxlic.framing import frame, unframe
from jaxlic.images import atomic_path
from jaxlic.sandwich.codecs import StandardCodec, make_codec
from jaxlic.nn.conv import depth_to_space, space_to_depth
from jaxlic.sandwich.networks import Processor
from jaxlic.sandwich.scenarios import Scenario, get_scenario, plain_code, plain_reconstruction

MAGIC = b"JXLSAND\0"
VERSION = 2  # 2: learned parts are residuals on the fixed plain path (1 had trainable natural maps)
COMMENT_TAG = b"JXS\x02"
METADATA = struct.Struct(">8sBIIB")  # fingerprint, quality, height, width, post-net strength in 16ths
LEGACY_COMMENT_TAG = b"JXS\x01"  # metadata version 1: no strength byte (strength 1)
LEGACY_METADATA = struct.Struct(">8sBII")
STRENGTH_UNIT, MAX_STRENGTH = 16, 32  # strengths 0, 1/16, ..., 2


@dataclass(frozen=True)
class SandwichConfig:
    """What a sandwich is: scenario, codec settings, networks, training qualities and lambda."""

    scenario: str
    code_channels: int
    subsampling: str
    qualities: tuple[int, int]
    codec: str = "jpeg"
    learn_tables: bool = False
    lmbda: float = 0.015  # lambda at quality 50
    lambda_decade: float = 40.0  # qualities per tenfold change of lambda (see `lambda_at`)
    features: tuple[int, ...] = (16, 32, 64)
    mlp_hidden: int = 32
    mlp_depth: int = 2
    pre_gain: float = 1.0  # scales the pre-net's residual: with Adam, its step size (0 freezes it)

    def __post_init__(self):
        get_scenario(self.scenario)
        if self.code_channels not in (1, 3) or self.subsampling not in ("4:4:4", "4:2:0"):
            raise ConfigError(f"code images have 1 or 3 channels and 4:4:4 or 4:2:0 subsampling, "
                              f"got {self.code_channels} and {self.subsampling!r}")
        lo, hi = self.qualities
        if not 1 <= lo <= hi <= 100:
            raise ConfigError(f"training qualities must satisfy 1 <= low <= high <= 100, got {self.qualities}")
        if not self.features or min(self.features) < 1 or self.mlp_hidden < 1 or self.mlp_depth < 0:
            raise ConfigError("features must be positive channel counts, mlp_hidden >= 1 and mlp_depth >= 0")
        if not 0.0 <= self.pre_gain <= 1.0:
            raise ConfigError(f"pre_gain must be in [0, 1], got {self.pre_gain}")
        if self.lmbda <= 0 or self.lambda_decade <= 0:
            raise ConfigError(f"lambda and lambda_decade must be > 0, got {self.lmbda} and {self.lambda_decade}")

    def lambda_at(self, quality: jax.Array) -> jax.Array:
        """The RD trade-off at each quality: lmbda * 10^((quality - 50) / lambda_decade).

        JPEG's own RD slope changes about 80-fold from quality 10 to 90 (Pillow on Kodak: about
        0.002 at 10, 0.01 at 30-50, 0.16 at 90 in bpp per 255^2 MSE), so one lambda for every
        quality would have the networks trade rate for distortion at the wrong price at both ends.
        """
        return self.lmbda * 10.0 ** ((quality - 50.0) / self.lambda_decade)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandwichConfig:
        try:
            fields = json.loads(text)
            return cls(**{**fields, "qualities": tuple(fields["qualities"]), "features": tuple(fields["features"])})
        except (ValueError, TypeError, KeyError) as exc:
            raise PackageError(f"invalid sandwich config ({exc})") from exc


def sandwich_config(scenario: str, **overrides) -> SandwichConfig:
    """A config with the scenario's defaults (code channels, subsampling, qualities), overridable."""
    s = get_scenario(scenario)
    defaults = {"code_channels": s.code_channels, "subsampling": s.subsampling, "qualities": s.train_qualities}
    return SandwichConfig(scenario=scenario, **{**defaults, **{k: v for k, v in overrides.items() if v is not None}})


class Sandwich:
    """Pre-net -> standard codec -> post-net for one config; functions pure in `params`.

    Each net is the scenario's fixed plain path (`plain_code`, `plain_reconstruction`) plus a
    learned residual `Processor` that starts at zero, so an untrained sandwich is the baseline.
    """

    def __init__(self, config: SandwichConfig):
        self.config = config
        self.scenario: Scenario = get_scenario(config.scenario)
        self.scale = self.scenario.scale
        self.codec: StandardCodec = make_codec(
            config.codec, channels=config.code_channels, subsampling=config.subsampling, learn_tables=config.learn_tables)
        self.pre = Processor(config.code_channels, config.features, config.mlp_hidden, config.mlp_depth)
        self.post = Processor(3 * self.scale ** 2, config.features, config.mlp_hidden, config.mlp_depth)

    def init(self, seed: int) -> dict:
        """Fresh parameters: {"pre", "post", "codec"}."""
        k_pre, k_post = jax.random.split(jax.random.PRNGKey(seed))
        size, q = 4 * self.scale, jnp.full((1,), 50)
        pre = self.pre.init(k_pre, space_to_depth(jnp.zeros((1, size, size, 3)), self.scale), q)["params"]
        post = self.post.init(k_post, jnp.zeros((1, 4, 4, self.config.code_channels)), q)["params"]
        return {"pre": pre, "post": post, "codec": self.codec.init_params()}

    def code_image(self, params: dict, x: jax.Array, quality: jax.Array) -> jax.Array:
        """The pre-net's code images (N, ceil(H/s), ceil(W/s), C) on the 0..255 scale, before rounding."""
        h, w = x.shape[1:3]
        s = self.scale
        plain = plain_code(x, s, self.config.code_channels)
        if self.config.pre_gain == 0:  # post-net only: skip the pre-net's (zero) forward and backward
            return plain
        padded = jnp.pad(x, ((0, 0), (0, -h % s), (0, -w % s), (0, 0)), mode="edge")
        residual = self.pre.apply({"params": params["pre"]}, space_to_depth(padded, s), quality)
        return plain + 255.0 * self.config.pre_gain * residual

    def reconstruction_parts(self, params: dict, decoded: jax.Array, quality: jax.Array,
                             size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
        """(the plain path's images, the post-net's residual), each (N, H, W, 3) in [0, 1] units,
        from decoded code images (0..255)."""
        residual = self.post.apply({"params": params["post"]}, decoded / 255.0, quality)
        return plain_reconstruction(decoded, size), depth_to_space(residual, self.scale)[:, : size[0], : size[1]]

    def reconstruct(self, params: dict, decoded: jax.Array, quality: jax.Array, size: tuple[int, int],
                    strength: jax.Array | float = 1.0) -> jax.Array:
        """The post-net's images (N, H, W, 3) in [0, 1] units: the plain path plus `strength` times
        the learned residual (training uses 1)."""
        plain, residual = self.reconstruction_parts(params, decoded, quality, size)
        return plain + strength * residual

    def forward(self, params: dict, x: jax.Array, quality: jax.Array) -> dict:
        """Training path through the codec proxy: {"x_hat", "rate" (N, F), "code"}."""
        code = self.code_image(params, x, quality)
        out = self.codec.proxy(params["codec"], code, quality)
        return {"x_hat": self.reconstruct(params, out.decoded, quality, x.shape[1:3]), "rate": out.rate, "code": code}


def _to_unit(image: np.ndarray) -> np.ndarray:
    """uint8/uint16 HxWx3 -> float32 in [0, 1], or ImageError saying what is wrong."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected an RGB image of shape HxWx3, got shape {image.shape}; "
                         "convert grayscale or RGBA input to RGB first (jaxlic.images.read_image does)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"cannot encode an empty image of shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    raise ImageError(f"expected uint8 or uint16 samples, got {image.dtype}")


@dataclass
class SandwichPackage:
    """A trained sandwich: encodes images to real standard files, decodes them back."""

    config: SandwichConfig
    params: dict

    @functools.cached_property
    def sandwich(self) -> Sandwich:
        return Sandwich(self.config)

    @functools.cached_property
    def _params_bytes(self) -> bytes:
        return serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, self.params))

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hex of the first 8 bytes of SHA-256 over config and parameters."""
        return hashlib.sha256(self.config.to_json().encode() + self._params_bytes).hexdigest()[:16]

    @functools.cached_property
    def _code_fn(self):
        return jax.jit(self.sandwich.code_image)

    @functools.cached_property
    def _reconstruct_fn(self):
        return jax.jit(self.sandwich.reconstruct, static_argnums=3)

    @functools.cached_property
    def _parts_fn(self):
        return jax.jit(self.sandwich.reconstruction_parts, static_argnums=3)

    @functools.cached_property
    def _proxy_fn(self):
        return jax.jit(self.sandwich.codec.proxy)

    def proxy(self, code: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """The codec proxy on one uint8 code image: (decoded code image, rate features)."""
        out = self._proxy_fn(self.params["codec"], jnp.asarray(code[None], jnp.float32), jnp.array([quality]))
        return np.asarray(out.decoded[0]), np.asarray(out.rate[0])

    def code_image(self, image: np.ndarray, quality: int) -> np.ndarray:
        """The uint8 code image that `encode` hands to the real codec."""
        x = _to_unit(image)
        code = self._code_fn(self.params, jnp.asarray(x[None]), jnp.array([quality]))[0]
        return np.asarray(jnp.clip(jnp.round(code), 0, 255)).astype(np.uint8)

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        """A real standard file (JPEG) of a uint8 or uint16 HxWx3 image at `quality` (1..100)."""
        if not 1 <= int(quality) <= 100:
            raise ConfigError(f"quality must be in 1..100, got {quality}")
        quality, (h, w) = int(quality), np.asarray(image).shape[:2]
        codec, code = self.sandwich.codec, self.code_image(image, quality)

        def encoded(strength: int) -> bytes:
            comment = COMMENT_TAG + METADATA.pack(bytes.fromhex(self.fingerprint), quality, h, w, strength)
            return codec.encode(self.params["codec"], code, quality, comment)

        data = encoded(STRENGTH_UNIT)
        strength = self.best_strength(image, codec.decode(data)[0], quality)
        return data if strength == STRENGTH_UNIT else encoded(strength)  # the comment does not change the scan

    def best_strength(self, image: np.ndarray, code: np.ndarray, quality: int) -> int:
        """The k (strength k/16, k = 0..32) whose decoded output is closest to `image` in MSE at the
        image's bit depth; ties go to the smallest k."""
        peak = 65535.0 if np.asarray(image).dtype == np.uint16 else 255.0
        target = _to_unit(image).astype(np.float64) * peak
        plain, residual = (np.asarray(part[0], np.float64) for part in
                           self._parts_fn(self.params, jnp.asarray(code[None], jnp.float32), jnp.array([quality]),
                                          target.shape[:2]))
        errors = [np.mean((np.round(np.clip(plain + k / STRENGTH_UNIT * residual, 0.0, 1.0) * peak) - target) ** 2)
                  for k in range(MAX_STRENGTH + 1)]
        return int(np.argmin(errors))

    def post_strength(self, data: bytes) -> float:
        """The post-net strength a file asks for (0: the plain codec's own reconstruction)."""
        return _read_metadata(self.sandwich.codec.decode(data)[1])[4] / STRENGTH_UNIT

    def decode(self, data: bytes) -> np.ndarray:
        """The float32 HxWx3 image in [0, 1] of a file this package encoded."""
        code, comment = self.sandwich.codec.decode(data)
        fingerprint, quality, h, w, strength = _read_metadata(comment)
        model = fingerprint.hex()
        if model != self.fingerprint:
            raise ModelMismatchError(f"file was encoded by sandwich model {model}, this package is {self.fingerprint}")
        s = self.sandwich.scale
        if code.shape[:2] != (-(-h // s), -(-w // s)):
            raise BitstreamError(f"code image is {code.shape[1]}x{code.shape[0]}, metadata says the image is {w}x{h}")
        x_hat = self._reconstruct_fn(self.params, jnp.asarray(code[None], jnp.float32), jnp.array([quality]), (h, w),
                                     jnp.float32(strength / STRENGTH_UNIT))
        return np.asarray(jnp.clip(x_hat[0], 0.0, 1.0))

    def save(self, path: str | Path) -> None:
        """Write the package atomically."""
        with atomic_path(path) as tmp:
            tmp.write_bytes(frame(MAGIC, VERSION, self.config.to_json().encode(), self._params_bytes))


    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> SandwichPackage:
        """Parse package bytes, checking magic, version and checksum."""
        header, body = unframe(data, MAGIC, VERSION, name, "sandwich package (train one with `jaxlic sandwich train`)")
        config = SandwichConfig.from_json(header.decode())
        params = serialization.msgpack_restore(body)
        return cls(config, jax.tree_util.tree_map(jnp.asarray, params))


def _read_metadata(comment: bytes) -> tuple[bytes, int, int, int, int]:
    """(fingerprint, quality, height, width, strength in 16ths) of a file's comment, or BitstreamError."""
    for tag, layout in ((COMMENT_TAG, METADATA), (LEGACY_COMMENT_TAG, LEGACY_METADATA)):
        if comment.startswith(tag):
            try:
                fields = layout.unpack(comment[len(tag):])
            except struct.error as exc:
                raise BitstreamError(f"corrupt sandwich metadata in the file's comment ({exc})") from exc
            if layout is LEGACY_METADATA:
                return (*fields, STRENGTH_UNIT)
            if fields[-1] > MAX_STRENGTH:
                raise BitstreamError(f"corrupt sandwich metadata: post-net strength {fields[-1]}/{STRENGTH_UNIT} is "
                                     f"above {MAX_STRENGTH}/{STRENGTH_UNIT}")
            return fields
    raise BitstreamError("this file has no sandwich metadata: it is a plain image (open it with any viewer), "
                         "or its comment was stripped")


def load_package(path: str | Path) -> SandwichPackage:
    """Read a package written by `SandwichPackage.save`, or a shipped sandwich named NAME."""
    from jaxlic.pretrained import load_pretrained, shipped_name

    if shipped_name(path):
        return load_pretrained(str(path))
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PackageError(f"{path}: cannot read sandwich package ({exc})") from exc
    return SandwichPackage.from_bytes(data, str(path))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint16."""
    return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
