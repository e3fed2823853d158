"""Model configurations: frozen, JSON-serializable, and carried in packages and bitstreams."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from jaxlic.errors import ConfigError

# CompressAI's training lambdas (loss = lambda * 255^2 * MSE + bpp), qualities 1..8.
MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
GDN_KINDS = ("gdn", "simplified")
# The transform layers whose output channels may differ from N (each feeds a GDN); a
# channel-pruned model lists its counts for these in `ModelConfig.hidden`, in this order.
HIDDEN_LAYERS = ("g_a_0", "g_a_2", "g_a_4", "g_s_0", "g_s_2", "g_s_4")
# Kinds of the four synthesis blocks of a Balle/Minnen g_s (`ModelConfig.decoder`): blocks 0-2
# (g_s_{2i} and the slot g_s_{2i+1} after it) and block 3 (g_s_6, to RGB); see jaxlic.train.asym.
HIDDEN_BLOCKS = ("igdn", "sgdn", "relu", "res")
OUTPUT_BLOCKS = ("deconv5", "deconv3")


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
    hidden: tuple[int, ...] = ()  # per-layer channels of HIDDEN_LAYERS; empty: all N
    decoder: tuple[str, ...] = ()  # kinds of the 4 g_s blocks (HIDDEN_BLOCKS x 3, OUTPUT_BLOCKS); empty: the zoo's

    def __post_init__(self):
        if not 1 <= self.quality <= len(MSE_LAMBDAS):
            raise ConfigError(f"quality must be 1..{len(MSE_LAMBDAS)}, got {self.quality}")
        if self.N < 1 or self.M < 1:
            raise ConfigError(f"channel counts must be positive, got N={self.N}, M={self.M}")
        if self.gdn not in GDN_KINDS:
            raise ConfigError(f"gdn must be one of {GDN_KINDS}, got {self.gdn!r}")
        if not isinstance(self.hidden, (tuple, list)):
            raise ConfigError(f"hidden must be a list of channel counts, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))  # JSON gives a list
        if self.hidden and (len(self.hidden) != len(HIDDEN_LAYERS)
                            or not all(isinstance(c, int) and c >= 1 for c in self.hidden)):
            raise ConfigError(f"hidden must be {len(HIDDEN_LAYERS)} positive channel counts "
                              f"(for {', '.join(HIDDEN_LAYERS)}), got {list(self.hidden)}")
        if not isinstance(self.decoder, (tuple, list)):
            raise ConfigError(f"decoder must be a list of block kinds, got {self.decoder!r}")
        object.__setattr__(self, "decoder", tuple(self.decoder))
        if self.decoder and (len(self.decoder) != 4 or any(k not in HIDDEN_BLOCKS for k in self.decoder[:3])
                             or self.decoder[3] not in OUTPUT_BLOCKS):
            raise ConfigError(f"decoder must be 3 blocks of {HIDDEN_BLOCKS} then one of {OUTPUT_BLOCKS}, "
                              f"got {list(self.decoder)}")

    @property
    def hidden_channels(self) -> tuple[int, ...]:
        """Output channels of each of HIDDEN_LAYERS (N everywhere unless channel-pruned)."""
        return self.hidden or (self.N,) * len(HIDDEN_LAYERS)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the form that is hashed into fingerprints.

        `hidden` and `decoder` are left out while empty, so configs (and fingerprints) from
        before they existed are unchanged."""
        data = dataclasses.asdict(self)
        for key in ("hidden", "decoder"):
            if not data[key]:
                del data[key]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

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
