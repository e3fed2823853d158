"""The zoo: names, qualities and channel counts as in CompressAI, plus a width multiplier."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlic.errors import ConfigError
from jaxlic.models.architectures import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from jaxlic.models.config import MSE_LAMBDAS, ModelConfig
from jaxlic.models.elic import Elic2022, Elic2022Chandelier
from jaxlic.models.lalic import Lalic

ARCHITECTURES = {
    "bmshj2018-factorized": FactorizedPrior,
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
    "elic2022": Elic2022,
    "elic2022-chandelier": Elic2022Chandelier,
    "lalic": Lalic,
}

# Architectures whose g_s is built from `ModelConfig.decoder` blocks (Balle/Minnen).
BLOCK_DECODERS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")

# (N, M) per quality, from CompressAI's zoo.
_CHANNELS = {
    "bmshj2018-factorized": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "bmshj2018-hyperprior": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "mbt2018-mean": {q: (128, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
    # The paper's and CompressAI's single size (CompressAI ships no ELIC weights).
    "elic2022": {q: (192, 320) for q in range(1, 9)},
    "elic2022-chandelier": {q: (192, 320) for q in range(1, 9)},
    # LALIC's N is its z channels (the official N6); its six trained lambdas are qualities 1-6.
    "lalic": {q: (192, 320) for q in range(1, 9)},
}


def scaled(channels: int, width: float) -> int:
    """Channel count after the width multiplier (N and M scale together)."""
    return max(1, int(round(channels * width)))


def model_config(name: str, quality: int, width: float = 1.0, gdn: str = "gdn") -> ModelConfig:
    """The configuration of zoo model `name` at `quality`, scaled by `width`."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(ARCHITECTURES)}")
    if quality not in _CHANNELS[name]:
        raise ConfigError(f"{name} has qualities 1..8, got {quality}")
    if not 0 < width <= 4:
        raise ConfigError(f"width must be in (0, 4], got {width}")
    N, M = _CHANNELS[name][quality]
    return ModelConfig(
        arch=name, quality=quality, N=scaled(N, width), M=scaled(M, width), width=width,
        gdn=gdn, lmbda=MSE_LAMBDAS[quality - 1],
    )


def build_model(config: ModelConfig):
    """The Flax module for a configuration."""
    if config.arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {config.arch!r}")
    if config.decoder and config.arch not in BLOCK_DECODERS:
        raise ConfigError(f"{config.arch} has no g_s blocks to choose (decoder {list(config.decoder)}); "
                          f"staged decoders are for {', '.join(BLOCK_DECODERS)}")
    return ARCHITECTURES[config.arch](config)


def get_model(name: str, quality: int, width: float = 1.0, gdn: str = "gdn"):
    """The Flax module of zoo model `name` at `quality` (untrained; init it or load a package)."""
    return build_model(model_config(name, quality, width, gdn))


def init_params(model, seed: int) -> dict:
    """Fresh parameters of a zoo model from a seed."""
    size = model.downsampling
    variables = model.init(
        {"params": jax.random.PRNGKey(seed), "noise": jax.random.PRNGKey(seed + 1)},
        jnp.zeros((1, size, size, 3)),
    )
    return variables["params"]
