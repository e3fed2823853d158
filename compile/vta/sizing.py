"""Model sizing for a board: the widest decoder whose predicted fps meets a budget.

The distillation paper's idea: instead of tuning the hardware for a model, dimension the model
(its width multiplier) for the hardware. Each candidate width is lowered with the real scheduler
and timed with the cycle model, so the answer includes tiling and channel-padding effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from compile.vta.config import VTAConfig
from compile.vta.network import BASE_CHANNELS, decoder, lower_network, width_channels

DEFAULT_WIDTHS = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)


@dataclass(frozen=True)
class Candidate:
    """One width multiplier with its channels and predicted decode rate."""

    width: float
    channels: tuple[int, int]
    fps: float
    meets: bool


def size_model(config: VTAConfig, arch: str, resolution: tuple[int, int], fps: float,
               widths: tuple[float, ...] = DEFAULT_WIDTHS, base: tuple[int, int] = BASE_CHANNELS["low"],
               progress: bool = True) -> tuple[list[Candidate], Candidate | None]:
    """Predicted fps of every candidate width and the widest that meets `fps` (None if none)."""
    candidates = []
    for width in tqdm(sorted(widths, reverse=True), desc=f"size {arch} on {config.name}", disable=not progress):
        channels = width_channels(width, base)
        rate = lower_network(decoder(arch, resolution, channels), config).fps()
        candidates.append(Candidate(width, channels, rate, rate >= fps))
    return candidates, next((c for c in candidates if c.meets), None)
