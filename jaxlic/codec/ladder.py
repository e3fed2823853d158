"""Complexity-aware encoding: per image, the package of a ladder (architectures, widths, qualities)
with the best rate-distortion trade-off under a decoder budget.

Every image is coded with every package the budget allows (real bitstreams, decoded to measure
the MSE). A candidate costs J = bpp + lambda * MSE (pixels 0..255: the zoo's training loss, so
lambda 0.0067 trades like quality 3, image by image); with a target `bpp` instead (the
pixel-weighted mean of the images coded together), J = bpp - t * PSNR with the largest t that
meets it: the highest mean PSNR at that rate (a shared lambda on MSE would maximize the PSNR of
the mean MSE, and gives hard images bits that buy the mean PSNR less). The budget bounds the
decoder:
- kMAC/pixel (`jaxlic.models.complexity`, decoder parts) per image, or with `mean` as the
  pixel-weighted mean over the images: J gains mu * kMAC/pixel with the smallest mu that meets
  it, so the heavy decoders go to the images they help most;
- frames per second on a VTA board at each image's size: the VTA layers' cycle model of the
  package's decoder graph (`compile.vta.network`, as `jaxlic-compile estimate --model
  hyperprior`), without host ops or entropy decoding, so an upper bound on the board's rate.
The chosen bitstream is an ordinary one of its package; `package_for` finds that package again
by the fingerprint every bitstream carries. Choosing needs every candidate stream of every image
in memory (a few tens of kB per image and package).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from jaxlic.codec.api import ImageLike, as_rgb_uint8, compress, decompress
from jaxlic.codec.bitstream import Bitstream
from jaxlic.codec.package import ModelPackage
from jaxlic.errors import ConfigError, ModelMismatchError
from jaxlic.images import MAX_PIXELS
from jaxlic.models.complexity import DECODER_PARTS, macs_per_pixel
from jaxlic.models.config import HIDDEN_LAYERS, ModelConfig

VTA_DECODERS = {"bmshj2018-factorized": "factorized", "bmshj2018-hyperprior": "hyperprior"}
_SEARCH = (1e-9, 1e6, 100)  # log-spaced bisection range and steps of the Lagrange multipliers


@dataclass(frozen=True)
class Rung:
    """One package of a ladder, as the user named it, with its decoder kMAC per pixel."""

    name: str
    package: ModelPackage
    kmac: float


@dataclass(frozen=True)
class Budget:
    """A decoder budget: kMAC/pixel per image (or the images' mean with `mean`), and/or frames per
    second on the VTA `board`; nothing set: no bound."""

    kmac: float | None = None
    fps: float | None = None
    board: str | None = None
    mean: bool = False

    def __post_init__(self):
        for name in ("kmac", "fps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"the {name} budget must be positive, got {value}")
        if (self.fps is None) != (self.board is None):
            raise ConfigError("an fps budget needs a VTA board (and a board an fps budget)")
        if self.mean and self.kmac is None:
            raise ConfigError("a mean budget bounds kMAC/pixel; give a kMAC budget with it")

    def __str__(self) -> str:
        parts = [f"{'mean ' if self.mean else ''}{self.kmac:g} kMAC/pixel"] if self.kmac is not None else []
        parts += [f"{self.fps:g} fps on {self.board}"] if self.fps is not None else []
        return " and ".join(parts) or "no budget"


@dataclass
class Coded:
    """Images coded with every rung their budget allows: bytes, bpp and MSE per (image, rung),
    None / NaN where a rung was not allowed."""

    names: list[str]
    sizes: np.ndarray  # (images, 2) height, width
    data: list[list[bytes | None]]
    bpp: np.ndarray  # (images, rungs)
    mse: np.ndarray  # (images, rungs), pixels 0..255

    @property
    def weights(self) -> np.ndarray:
        """Each image's share of the pixels (means are pixel-weighted, like a folder's bpp)."""
        pixels = self.sizes.prod(axis=1).astype(np.float64)
        return pixels / pixels.sum()

    @property
    def psnr(self) -> np.ndarray:
        """PSNR in dB per (image, rung); inf where lossless."""
        with np.errstate(divide="ignore"):
            return 10 * np.log10(255.0**2 / self.mse)

    def only(self, rungs: Sequence[int]) -> "Coded":
        """The measurements of these rungs (indexes), in this order."""
        return Coded(self.names, self.sizes, [[row[r] for r in rungs] for row in self.data],
                     self.bpp[:, rungs], self.mse[:, rungs])


@dataclass(frozen=True)
class Choice:
    """The rung picked for each image, the multipliers that picked it and the pixel-weighted means."""

    rungs: np.ndarray  # (images,) rung index
    lmbda: float  # the multiplier of the distortion: MSE given lambda, -PSNR (dB) with a target bpp
    mu: float
    bpp: float
    kmac: float


def build_ladder(named: Iterable[tuple[str, ModelPackage]]) -> list[Rung]:
    """Rungs of (name, package) pairs; ConfigError for an empty ladder or a package named twice."""
    named = list(named)
    if not named:
        raise ConfigError("the ladder is empty: name at least one package")
    seen: dict[bytes, str] = {}
    for name, package in named:
        if package.fingerprint in seen:
            raise ConfigError(f"{name} and {seen[package.fingerprint]} are the same package ({package.fingerprint.hex()})")
        seen[package.fingerprint] = name
    return [Rung(name, package, decoder_kmac(package.config)) for name, package in named]


@functools.lru_cache(maxsize=None)
def decoder_kmac(config: ModelConfig) -> float:
    """Decoder kMAC per pixel of a model configuration."""
    return macs_per_pixel(config, DECODER_PARTS) / 1e3


def decoder_fps(config: ModelConfig, board: str, size: tuple[int, int]) -> float:
    """VTA-layer frames per second of the config's decoder on `board` at an image of `size`
    (height, width); ConfigError for an architecture the VTA decoder graphs do not cover."""
    if config.arch not in VTA_DECODERS or config.decoder:  # AsymLLIC blocks have no VTA decoder graph
        raise ConfigError(f"the fps budget needs a decoder graph of the VTA toolchain ({', '.join(VTA_DECODERS)}); "
                          f"{config.arch} has none: use a kMAC budget")
    return _vta_fps(VTA_DECODERS[config.arch], config.N, config.M,
                    config.hidden_channels[HIDDEN_LAYERS.index("g_s_0"):], board, tuple(size))


@functools.lru_cache(maxsize=None)
def _vta_fps(kind: str, n: int, m: int, hidden: tuple[int, ...], board: str, size: tuple[int, int]) -> float:
    from compile.vta.config import load_config
    from compile.vta.network import decoder, lower_network

    return lower_network(decoder(kind, size[::-1], (n, m), hidden), load_config(board)).fps()


def allowed(rungs: Sequence[Rung], budget: Budget, size: tuple[int, int], name: str = "the image") -> np.ndarray:
    """Which rungs an image of `size` (height, width) may use under a per-image budget (a mean
    kMAC budget allows every rung here); ConfigError naming the cheapest rung when none fits."""
    ok, fps = np.ones(len(rungs), bool), np.zeros(len(rungs))
    if budget.kmac is not None and not budget.mean:
        ok &= np.array([r.kmac <= budget.kmac for r in rungs])
    if budget.fps is not None:
        fps = np.array([decoder_fps(r.package.config, budget.board, size) for r in rungs])
        ok &= fps >= budget.fps
    if not ok.any():
        best = max(range(len(rungs)), key=lambda i: (fps[i], -rungs[i].kmac))  # fastest, then fewest MACs
        speed = f", {fps[best]:.2f} fps on {budget.board}" if budget.fps is not None else ""
        raise ConfigError(f"no package of the ladder meets {budget} for {name} ({size[0]}x{size[1]}); the cheapest "
                          f"is {rungs[best].name} at {rungs[best].kmac:.2f} kMAC/pixel{speed}")
    return ok


def code_all(rungs: Sequence[Rung], images: Sequence[tuple[str, ImageLike]], budget: Budget = Budget(),
             max_pixels: int = MAX_PIXELS, progress: bool = True) -> Coded:
    """Code every (name, image) with every rung `allowed` for it and decode it to measure the MSE."""
    n = len(images)
    data: list[list[bytes | None]] = [[None] * len(rungs) for _ in range(n)]
    bpp, mse, sizes = np.full((n, len(rungs)), np.nan), np.full((n, len(rungs)), np.nan), np.zeros((n, 2), int)
    with tqdm(total=n * len(rungs), desc="ladder", unit="code", disable=not progress) as bar:
        for i, (name, image) in enumerate(images):
            array = as_rgb_uint8(image, max_pixels)
            sizes[i] = array.shape[:2]
            ok = allowed(rungs, budget, array.shape[:2], name)
            for r, rung in enumerate(rungs):
                if ok[r]:
                    data[i][r] = compress(rung.package, array, max_pixels)
                    decoded = decompress(rung.package, data[i][r], max_pixels=max_pixels)
                    bpp[i, r] = 8 * len(data[i][r]) / sizes[i].prod()
                    mse[i, r] = np.mean((decoded.astype(np.float64) - array) ** 2)
                bar.update()
    return Coded([name for name, _ in images], sizes, data, bpp, mse)


def choose(coded: Coded, rungs: Sequence[Rung], budget: Budget = Budget(), lmbda: float | None = None,
           bpp: float | None = None) -> Choice:
    """Per image, among the rungs coded for it that its budget `allowed`, the one of least
    bpp + lambda * MSE, or with a target mean `bpp` the one of least bpp - t * PSNR (t: the
    largest that meets the target); under a mean budget + mu * kMAC/pixel. Exactly one of
    `lmbda` and `bpp`."""
    if (lmbda is None) == (bpp is None):
        raise ConfigError("give either a lambda or a target bpp")
    if lmbda is not None and not lmbda > 0:
        raise ConfigError(f"lambda must be positive, got {lmbda}")
    kmac, w, images = np.array([r.kmac for r in rungs]), coded.weights, np.arange(len(coded.names))
    ok = np.array([allowed(rungs, budget, tuple(size), name) for name, size in zip(coded.names, coded.sizes)])
    rates = np.where(ok, coded.bpp, np.nan)
    distortion = coded.mse if bpp is None else -coded.psnr
    pick = functools.partial(_pick, rates, distortion, kmac)
    mu_for = functools.partial(_meet_mean_kmac, pick, w, kmac, budget)
    weight = lmbda
    if bpp is not None:
        lowest = w @ coded.bpp[images, pick(0.0, mu_for(0.0))]
        if lowest > bpp:
            raise ConfigError(f"the target {bpp:g} bpp is below the lowest rate the ladder reaches under "
                              f"{budget} ({lowest:.4f} bpp)")
        weight = _bracket(lambda t: w @ coded.bpp[images, pick(t, mu_for(t))] > bpp)[0]
    mu = mu_for(weight)
    picked = pick(weight, mu)
    return Choice(picked, weight, mu, float(w @ coded.bpp[images, picked]), float(w @ kmac[picked]))


def _pick(bpp: np.ndarray, distortion: np.ndarray, kmac: np.ndarray, weight: float, mu: float) -> np.ndarray:
    """Each image's rung of least bpp + weight * distortion + mu * kMAC (NaN: not coded); mu = inf:
    the least of that among each image's cheapest rungs."""
    cost = bpp + weight * distortion
    if np.isinf(mu):
        coded_kmac = np.where(np.isnan(cost), np.inf, kmac)
        cost = np.where(coded_kmac == coded_kmac.min(axis=1, keepdims=True), cost, np.nan)
    else:
        cost = cost + mu * kmac
    return np.argmin(np.where(np.isnan(cost), np.inf, cost), axis=1)


def _meet_mean_kmac(pick: Callable, w: np.ndarray, kmac: np.ndarray, budget: Budget, weight: float) -> float:
    """The smallest mu (to the bisection's precision) whose picks meet a mean kMAC budget (0
    without one)."""
    if not budget.mean:
        return 0.0
    meets = lambda mu: w @ kmac[pick(weight, mu)] <= budget.kmac  # noqa: E731
    if meets(0.0):
        return 0.0
    if not meets(np.inf):
        raise ConfigError(f"no choice of the ladder's packages meets {budget}: the least mean is "
                          f"{w @ kmac[pick(weight, np.inf)]:.2f} kMAC/pixel")
    return _bracket(meets)[1]


def _bracket(turns: Callable[[float], bool]) -> tuple[float, float]:
    """(lo, hi) around where a monotone predicate turns from false to true as its argument grows
    (log-spaced bisection): `turns(hi)` holds and `turns(lo)` does not, 0 and inf at the ends."""
    lo, hi = np.log10(_SEARCH[0]), np.log10(_SEARCH[1])
    if turns(10**lo):
        return 0.0, float(10**lo)
    if not turns(10**hi):
        return float(10**hi), np.inf
    for _ in range(_SEARCH[2]):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if turns(10**mid) else (mid, hi)
    return float(10**lo), float(10**hi)


def package_for(packages: Sequence[tuple[str, ModelPackage]], data: bytes) -> tuple[str, ModelPackage]:
    """The (name, package) that made the bitstream `data`, by fingerprint; ModelMismatchError if none."""
    fingerprint = Bitstream.from_bytes(bytes(data)).fingerprint
    for name, package in packages:
        if package.fingerprint == fingerprint:
            return name, package
    raise ModelMismatchError(f"bitstream was made by model {fingerprint.hex()}, which is not in the ladder "
                             f"({', '.join(f'{name} {package.fingerprint.hex()}' for name, package in packages)})")
