"""Quantization-aware watermarking (QAW): an owner and user signature in a model's int8 weights.

Scheme: spread-spectrum sign projections (Uchida et al., 2017) on secret carrier positions
(as in WaterMAS, Mazouz et al., 2024), read from the integer weights alone.
- A `WatermarkKey` is a 32-byte owner secret plus the scheme's sizes. HKDF-SHA256 derives from it
  the owner code (`owner_bits` bits) and, for a model's carrier layers, `positions_per_bit`
  distinct weight positions and a +-1 sign for every message bit (no position is used twice).
- Carriers: the int8 weights of every decoder convolution (hyper-synthesis and synthesis) except
  the last one, which makes the pixels (the hardest layer to mark, and the most visible).
- The message is owner code || user id (`user_bits` bits; user 0 is the owner's own copy).
  Bit i is the sign of the projection p_i = mean_j sign_ij * w[position_ij] of the int8 weights.
- Embedding (`WatermarkTerm`, a loss term of the QAT step): hinge loss
  strength * mean_i relu(1 - b_i p_i / margin) on the fake-quantized integer weights, so what
  is trained is what the exported int8 weights carry; the RD term keeps quality.
- Decision: for a model that was not marked with this key, the secret signs make every
  projection's sign a fair coin, independent across bits (disjoint positions). The owner is
  claimed when the owner code has at most t errors, t the largest with P[Binomial(n, 1/2) <= t]
  <= 1e-6: that probability bounds the false positive rate.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jaxlic.errors import WatermarkError
from jaxlic.secure.keys import PRIVATE_MODE, write_atomic

KEY_FORMAT = "jaxlic-watermark-key"
KEY_VERSION = 1
FALSE_POSITIVE_TARGET = 1e-6
CONV_KINDS = ("conv2d", "conv2d_transpose")


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def _bits_of(data: bytes, count: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, np.uint8))[:count].astype(np.int8)


@dataclass(frozen=True)
class WatermarkKey:
    """The owner's secret and the scheme's sizes (see the module docstring)."""

    secret: bytes
    owner_bits: int = 64
    user_bits: int = 48
    positions_per_bit: int = 64
    margin: float = 4.0  # target |projection|, in int8 units

    def __post_init__(self):
        if len(self.secret) != 32:
            raise WatermarkError("a watermark key's secret must be 32 bytes")
        if not (8 <= self.owner_bits <= 256 and 0 <= self.user_bits <= 64 and self.positions_per_bit >= 1
                and self.margin > 0):
            raise WatermarkError("watermark key sizes out of range (owner_bits 8-256, user_bits 0-64, "
                                 "positions_per_bit >= 1, margin > 0)")

    @classmethod
    def generate(cls, **sizes) -> "WatermarkKey":
        return cls(secrets.token_bytes(32), **sizes)

    @property
    def fingerprint(self) -> str:
        """A public name of the key (SHA-256 of the secret, 16 hex digits); reveals nothing."""
        return hashlib.sha256(b"jaxlic watermark key|" + self.secret).hexdigest()[:16]

    @property
    def message_bits(self) -> int:
        return self.owner_bits + self.user_bits

    def owner_code(self) -> np.ndarray:
        return _bits_of(_hkdf(self.secret, b"jaxlic qaw v1 owner code", 32), self.owner_bits)

    def message(self, user_id: int) -> np.ndarray:
        """The embedded bits (0/1): owner code, then the user id big-endian."""
        if not 0 <= user_id < (1 << self.user_bits) or (self.user_bits == 0 and user_id):
            raise WatermarkError(f"user id {user_id} does not fit the key's {self.user_bits} user bits")
        user = [(user_id >> (self.user_bits - 1 - i)) & 1 for i in range(self.user_bits)]
        return np.concatenate([self.owner_code(), np.asarray(user, np.int8)])

    def carrier_positions(self, layout: "CarrierLayout") -> tuple[np.ndarray, np.ndarray]:
        """(positions, signs), each (message_bits, positions_per_bit), into the flat carriers."""
        needed = self.message_bits * self.positions_per_bit
        if layout.size < needed:
            raise WatermarkError(f"the model's carrier layers hold {layout.size} weights; the key needs {needed}")
        seed = _hkdf(self.secret, b"jaxlic qaw v1 positions|" + layout.describe().encode(), 32)
        rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed, "big")))
        positions = rng.choice(layout.size, needed, replace=False).reshape(self.message_bits, -1)
        signs = rng.choice(np.array([-1, 1], np.int8), positions.shape)
        return positions.astype(np.int64), signs

    # -- key files ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the key as JSON with mode 0600 (refuses to overwrite unless asked)."""
        data = {"format": KEY_FORMAT, "version": KEY_VERSION, "secret": self.secret.hex(),
                "owner_bits": self.owner_bits, "user_bits": self.user_bits,
                "positions_per_bit": self.positions_per_bit, "margin": self.margin}
        return write_atomic(path, json.dumps(data, indent=1).encode(), PRIVATE_MODE, overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WatermarkKey":
        data = _read_json(path, "watermark key", "a jaxlic watermark key")
        if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
            raise WatermarkError(f"{path} is not a jaxlic watermark key")
        if data.get("version") != KEY_VERSION:
            raise WatermarkError(f"{path}: watermark key version {data.get('version')!r} is not supported")
        try:
            return cls(bytes.fromhex(data["secret"]), int(data["owner_bits"]), int(data["user_bits"]),
                       int(data["positions_per_bit"]), float(data["margin"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WatermarkError(f"{path}: malformed watermark key ({exc})") from None


def _read_json(path: str | os.PathLike, what: str, expected: str):
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise WatermarkError(f"cannot read {what} {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WatermarkError(f"{path} is not {expected} (not JSON)") from None


# -- carriers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CarrierLayout:
    """The carrier layers of a model, by name, with their weight shapes (HWIO)."""

    shapes: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def from_names(cls, shapes: dict[str, tuple[int, ...]]) -> "CarrierLayout":
        """Pick the carriers among a model's decoder convolutions (name -> weight shape)."""
        synthesis = [n for n in shapes if n.startswith("g_s_")]
        if not synthesis:
            raise WatermarkError("the model has no synthesis convolutions to carry a watermark")
        pixel_layer = max(synthesis, key=lambda n: int(n.rsplit("_", 1)[1]))
        return cls(tuple((n, tuple(shapes[n])) for n in sorted(shapes) if n != pixel_layer))

    @classmethod
    def of_params(cls, params: dict) -> "CarrierLayout":
        """From float parameters (QAT): decoder layers that have a convolution kernel."""
        return cls.from_names({n: p["kernel"].shape for n, p in params.items()
                               if n.startswith(("g_s_", "h_s_")) and "kernel" in p})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.shapes)

    @property
    def size(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes)

    def describe(self) -> str:
        return ";".join(f"{n}:{'x'.join(map(str, s))}" for n, s in self.shapes)

    def flatten(self, weights: dict, xp=np):
        """The carriers' weights as one flat vector (NumPy or JAX)."""
        return xp.concatenate([xp.ravel(weights[n]).astype(xp.float32) for n in self.names])


def projections(key: WatermarkKey, layout: CarrierLayout, weights: dict, xp=np):
    """p_i = mean_j sign_ij * w[position_ij] for every message bit (int8 units)."""
    positions, signs = key.carrier_positions(layout)
    flat = layout.flatten(weights, xp)
    return (flat[positions] * signs.astype(np.float32)).mean(axis=-1)


# -- embedding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatermarkTerm:
    """QAW loss term: pushes the fake-quantized decoder weights to carry `key.message(user_id)`.

    Needs a QAT forward pass (its outputs carry `integer_weights`). Its train-state entry holds
    the key material: positions, signs and the message as +-1.
    """

    key: WatermarkKey
    user_id: int = 0
    strength: float = 1.0
    name: str = "qaw"

    def init_state(self, params) -> dict:
        layout = CarrierLayout.of_params(params)
        positions, signs = self.key.carrier_positions(layout)
        message = 2.0 * self.key.message(self.user_id) - 1.0
        return {"positions": jnp.asarray(positions, jnp.int32), "signs": jnp.asarray(signs, jnp.float32),
                "message": jnp.asarray(message, jnp.float32)}

    def __call__(self, params, outputs, batch, state):
        if "integer_weights" not in outputs:
            raise WatermarkError("the watermark term needs a QAT forward pass (fake-quantized decoder weights)")
        layout = CarrierLayout.of_params(params)
        flat = layout.flatten(outputs["integer_weights"], jnp)
        margins = state["message"] * (flat[state["positions"]] * state["signs"]).mean(axis=-1)
        loss = self.strength * jnp.mean(jax.nn.relu(1.0 - margins / self.key.margin))
        return loss, {"wm_ber": jnp.mean(margins <= 0), "wm_min_margin": jnp.min(margins)}

    def describe(self) -> dict:
        """What the run description records: never the secret."""
        return {"key": self.key.fingerprint, "user_id": self.user_id, "strength": self.strength,
                "owner_bits": self.key.owner_bits, "user_bits": self.key.user_bits,
                "positions_per_bit": self.key.positions_per_bit, "margin": self.key.margin}


# -- extraction and decisions -------------------------------------------------------------------
def max_errors(bits: int, false_positive: float = FALSE_POSITIVE_TARGET) -> int:
    """Largest t with P[Binomial(bits, 1/2) <= t] <= false_positive (-1 when none)."""
    total, t = 0.0, -1
    while t + 1 <= bits:
        total += math.comb(bits, t + 1) / 2.0**bits
        if total > false_positive:
            break
        t += 1
    return t


def chance_of_at_most(errors: int, bits: int) -> float:
    """P[Binomial(bits, 1/2) <= errors]: how likely an unmarked model matches this well."""
    return sum(math.comb(bits, k) for k in range(errors + 1)) / 2.0**bits


@dataclass(frozen=True)
class Extraction:
    """What the integer weights say under a key."""

    bits: np.ndarray  # extracted message bits (0/1); a zero projection reads as 0
    projections: np.ndarray
    key: WatermarkKey

    @property
    def owner_errors(self) -> int:
        return int(np.sum(self.bits[: self.key.owner_bits] != self.key.owner_code()))

    @property
    def owner_threshold(self) -> int:
        return max_errors(self.key.owner_bits)

    @property
    def is_owner(self) -> bool:
        return self.owner_errors <= self.owner_threshold

    @property
    def false_positive_probability(self) -> float:
        """The chance an unmarked model is claimed (the decision's bound)."""
        return chance_of_at_most(self.owner_threshold, self.key.owner_bits)

    @property
    def p_value(self) -> float:
        """The chance an unmarked model matches the owner code at least this well."""
        return chance_of_at_most(self.owner_errors, self.key.owner_bits)

    @property
    def user_bits(self) -> np.ndarray:
        return self.bits[self.key.owner_bits:]

    def bit_error_rate(self, user_id: int) -> float:
        """BER of the whole message against what was embedded for `user_id`."""
        return float(np.mean(self.bits != self.key.message(user_id)))

    def summary(self) -> dict:
        return {"key": self.key.fingerprint, "owner_errors": self.owner_errors, "owner_bits": self.key.owner_bits,
                "threshold": self.owner_threshold, "is_owner": self.is_owner, "p_value": self.p_value,
                "false_positive_probability": self.false_positive_probability,
                "min_abs_projection": float(np.abs(self.projections).min())}


def integer_weights(package) -> dict[str, np.ndarray]:
    """The int8 weights of an integer-mode package's (or a bare IntegerGraph's) convolution ops
    that are model layers (not GDN pools, whose op names have a dot)."""
    graph = getattr(package, "integer", package)
    if graph is None:
        raise WatermarkError("this model package has no integer weights; watermarks live in integer-mode "
                             "packages (jaxlic watermark / jaxlic quantize)")
    return {op.name: graph.constants[op.consts["weight"]] for op in graph.ops
            if op.kind in CONV_KINDS and "." not in op.name}


def extract(package, key: WatermarkKey) -> Extraction:
    """Read the message bits from an integer-mode package's int8 weights."""
    weights = integer_weights(package)
    p = projections(key, CarrierLayout.from_names({n: w.shape for n, w in weights.items()}), weights)
    return Extraction((p > 0).astype(np.int8), p, key)


@dataclass(frozen=True)
class TraceResult:
    extraction: Extraction
    user: str | None  # None: not the owner's model, or no user matches
    distances: dict[str, int]  # user-bit errors against each candidate
    threshold: int  # largest user-bit distance accepted

    def summary(self) -> dict:
        return {**self.extraction.summary(), "user": self.user, "user_threshold": self.threshold,
                "distances": self.distances}


def read_users(path: str | os.PathLike) -> dict[str, int]:
    """USERS.json: {"name": user id, ...} with distinct ids >= 1 (0 is the owner's own copy)."""
    data = _read_json(path, "users file", '{"name": user_id, ...}')
    if not isinstance(data, dict) or not data or not all(isinstance(v, int) and v >= 1 for v in data.values()):
        raise WatermarkError(f"{path}: expected a non-empty object {{\"name\": user_id >= 1, ...}}")
    if len(set(data.values())) != len(data):
        raise WatermarkError(f"{path}: user ids must be distinct")
    return {str(k): int(v) for k, v in data.items()}


def trace(package, key: WatermarkKey, users: dict[str, int]) -> TraceResult:
    """Which user's copy this is: the unique nearest user id, if the owner code is present and
    the distance keeps the false positive rate over all candidates <= 1e-6."""
    if key.user_bits == 0:
        raise WatermarkError("this watermark key has no user bits; it cannot trace users")
    extraction = extract(package, key)
    distances = {name: int(np.sum(extraction.user_bits != key.message(uid)[key.owner_bits:]))
                 for name, uid in users.items()}
    threshold = max_errors(key.user_bits, FALSE_POSITIVE_TARGET / len(users))
    best = sorted(distances.items(), key=lambda item: item[1])
    unique = len(best) == 1 or best[0][1] < best[1][1]
    user = best[0][0] if extraction.is_owner and unique and best[0][1] <= threshold else None
    return TraceResult(extraction, user, distances, threshold)
