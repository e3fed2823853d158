"""Model configurations: frozen, JSON-serializable, and carried in packages and bitstreams."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from jaxlic.errors import ConfigError

# CompressAI's training lambdas (loss = lambda * 255^2 * MSE + bpp), qualities 1..8.
MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
GDN_KINDS = ("gdn", "simplified")


@dataclass(frozen=True)
class ModelConfig:
    """What it takes to rebuild a zoo model: architecture, channel counts and options."""

    arch: str
    quality: int
    N: int
    M: int
    width: float = 1.0
    gdn: str = "gdn"
    lmbda: float = 0.0

    def __post_init__(self):
        if not 1 <= self.quality <= len(MSE_LAMBDAS):
            raise ConfigError(f"quality must be 1..{len(MSE_LAMBDAS)}, got {self.quality}")
        if self.N < 1 or self.M < 1:
            raise ConfigError(f"channel counts must be positive, got N={self.N}, M={self.M}")
        if self.gdn not in GDN_KINDS:
            raise ConfigError(f"gdn must be one of {GDN_KINDS}, got {self.gdn!r}")

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the form that is hashed into fingerprints."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict) -> "ModelConfig":
        """Parse JSON (or a dict), with a ConfigError for unknown or missing fields."""
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
            return cls(**data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"malformed model config: {exc}") from None
