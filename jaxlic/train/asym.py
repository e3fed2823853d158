"""AsymLLIC's training scheme: decoder blocks replaced one at a time by lighter ones.

A Balle/Minnen g_s is four blocks (`ModelConfig.decoder`): blocks 0-2 are a stride-2 transposed
conv (`g_s_{2i}`) and the slot after it (`g_s_{2i+1}`: inverse GDN, simplified inverse GDN, ReLU,
or with a 3x3 conv a `ResidualUnit`), block 3 is the conv to RGB (`g_s_6`, 5x5 or 3x3). A stage
is one `Substitution` (`BLOCK=KIND[:CHANNELS]`, e.g. `2=res:24`). Each stage is one run of the
ordinary step (`jaxlic.train.loop.Trainer`):

- init: every parameter of the previous stage's package, but the replaced block projected: its
  kernel centre-cropped to the new size, its output channels narrowed to the ones pruning would
  keep (`jaxlic.quant.prune.channel_scores`), the next conv's input channels cut to match, a GDN
  kept on those channels; a new `ResidualUnit` starts as the identity (its 1x1 expand at zero);
- loss: rate-distortion plus `jaxlic.train.distill.Distillation` with the previous stage's
  package as the teacher (reconstruction matching; latent matching only matters when the
  encoder trains, `latent_weight`);
- encoder: everything outside g_s (g_a, h_a, h_s, the entropy model) frozen by default
  (`encoder_lr_scale` 0: stop_gradient, so Adam leaves it exactly unchanged and every stage codes
  the same symbols); a scale in (0, 1] trains it at that fraction of the learning rate.

The baseline (`scratch_task`) trains the final light g_s from a fresh init on the same kept
encoder with rate-distortion alone, for the stages' total steps.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxlic.codec import ModelPackage
from jaxlic.errors import ConfigError
from jaxlic.models import ModelConfig, build_model, init_params
from jaxlic.models.complexity import DECODER_PARTS, macs_per_pixel, param_count
from jaxlic.models.config import HIDDEN_BLOCKS, OUTPUT_BLOCKS
from jaxlic.models.layers import zoo_blocks
from jaxlic.models.registry import BLOCK_DECODERS
from jaxlic.quant.prune import channel_scores
from jaxlic.train.distill import Distillation
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.task import Task, codec_task

PyTree = Any
DECODER = "g_s_"  # parameter prefix of what the stages train
_SPEC = re.compile(r"^([0-3])=([a-z0-9]+)(?::(\d+))?$")


@dataclass(frozen=True)
class Substitution:
    """One stage: g_s block `block` becomes `kind` (with `channels` outputs, blocks 0-2 only)."""

    block: int
    kind: str
    channels: int | None = None

    def __post_init__(self):
        kinds = OUTPUT_BLOCKS if self.block == 3 else HIDDEN_BLOCKS
        if self.block not in range(4):
            raise ConfigError(f"g_s has blocks 0-3, got block {self.block}")
        if self.kind not in kinds:
            raise ConfigError(f"block {self.block} takes one of {kinds}, got {self.kind!r}")
        if self.channels is not None and (self.block == 3 or self.channels < 1):
            raise ConfigError(f"channels must be >= 1 and only for blocks 0-2, got block {self.block}:{self.channels}")

    @classmethod
    def parse(cls, text: str) -> Substitution:
        """`BLOCK=KIND[:CHANNELS]`, e.g. `2=res:24` or `3=deconv3`."""
        match = _SPEC.match(text.strip())
        if match is None:
            raise ConfigError(f"a stage is BLOCK=KIND[:CHANNELS] (e.g. 2=res:24, 3=deconv3), got {text!r}")
        return cls(int(match[1]), match[2], int(match[3]) if match[3] else None)

    def __str__(self) -> str:
        return f"{self.block}={self.kind}" + (f":{self.channels}" if self.channels is not None else "")


def decoder_blocks(config: ModelConfig) -> tuple[str, ...]:
    """The g_s block kinds of a config (the zoo's when it names none)."""
    return config.decoder or zoo_blocks(config.gdn)


def substitute(config: ModelConfig, sub: Substitution) -> ModelConfig:
    """`config` with one g_s block replaced; ConfigError when that changes nothing."""
    if config.arch not in BLOCK_DECODERS:
        raise ConfigError(f"staged decoders are for {', '.join(BLOCK_DECODERS)}, not {config.arch}")
    blocks = list(decoder_blocks(config))
    blocks[sub.block] = sub.kind
    hidden = list(config.hidden_channels)
    if sub.channels is not None:
        hidden[3 + sub.block] = sub.channels
    new = dataclasses.replace(config, decoder=tuple(blocks),
                              hidden=() if hidden == [config.N] * len(hidden) else tuple(hidden))
    if decoder_blocks(new) == decoder_blocks(config) and new.hidden_channels == config.hidden_channels:
        raise ConfigError(f"stage {sub} changes nothing: block {sub.block} is already {sub.kind} "
                          f"with {config.hidden_channels[3 + sub.block] if sub.block < 3 else 3} channels")
    return new


def _centred(kernel: np.ndarray, size: int, fresh: np.ndarray) -> np.ndarray:
    """A (k, k, ...) kernel cropped (or zero-padded) about its centre to (size, size, ...)."""
    k = kernel.shape[0]
    if size == k:
        return kernel
    if size < k:
        lo = (k - size) // 2
        return kernel[lo:lo + size, lo:lo + size]
    out = np.zeros_like(fresh)
    lo = (size - k) // 2
    out[lo:lo + k, lo:lo + k] = kernel
    return out


def fresh_decoder(config: ModelConfig, seed: int = 0) -> PyTree:
    """Freshly initialized g_s parameters of `config` (only g_s is traced: cheap)."""
    model = build_model(config)
    latent = jnp.zeros((1, 1, 1, config.M), jnp.float32)
    return jax.device_get(jax.jit(lambda: model.init(jax.random.PRNGKey(seed), latent, method="synthesis"))()["params"])


def _check_fits(config: ModelConfig, params: PyTree, what: str) -> PyTree:
    """`params` as float32 host arrays; ConfigError unless they fit `config`'s model."""
    expected = jax.eval_shape(lambda: init_params(build_model(config), 0))
    if jax.tree.map(np.shape, params) != jax.tree.map(lambda a: a.shape, expected):
        raise ConfigError(f"the parameters do not fit {what} (not a package of this architecture?)")
    return jax.tree.map(lambda a: np.asarray(a, np.float32), params)


def stage_params(old: ModelConfig, params: PyTree, new: ModelConfig, sub: Substitution, seed: int = 0) -> PyTree:
    """Parameters of `new` (= `substitute(old, sub)`): `params` everywhere but the replaced
    block, which is projected from the old one (module docstring)."""
    fresh = fresh_decoder(new, seed)
    params = jax.device_get(params)
    conv, slot, nxt = f"g_s_{2 * sub.block}", f"g_s_{2 * sub.block + 1}", f"g_s_{2 * sub.block + 2}"
    out = {k: v for k, v in params.items() if k not in (conv, slot, nxt) and (k in fresh or not k.startswith(DECODER))}
    kernel, bias = np.asarray(params[conv]["kernel"]), np.asarray(params[conv]["bias"])
    kernel = _centred(kernel, fresh[conv]["kernel"].shape[0], np.asarray(fresh[conv]["kernel"]))
    c_old, c_new = kernel.shape[-1], fresh[conv]["kernel"].shape[-1]
    if c_new < c_old:
        outgoing = np.asarray(params[nxt]["kernel"])
        keep = np.sort(np.argsort(-channel_scores(np.asarray(params[conv]["kernel"]), outgoing), kind="stable")[:c_new])
    else:
        keep = np.arange(c_old)
    if c_new > c_old:  # widened: nothing to project
        out[conv] = fresh[conv]
    else:
        out[conv] = {"kernel": kernel[..., keep], "bias": bias[keep]}
    if sub.block < 3:
        old_slot, new_slot = params.get(slot), fresh.get(slot)
        if new_slot is None:  # ReLU: no parameters
            pass
        elif "beta" in new_slot and old_slot is not None and "beta" in old_slot and c_new <= c_old:
            out[slot] = {"beta": np.asarray(old_slot["beta"])[keep],
                         "gamma": np.asarray(old_slot["gamma"])[np.ix_(keep, keep)]}
        elif "expand" in new_slot and old_slot is not None and "expand" in old_slot and c_new == c_old:
            out[slot] = old_slot
        elif "expand" in new_slot:  # a new residual unit: the identity
            expand = {k: np.zeros_like(v) for k, v in new_slot["expand"].items()}
            out[slot] = {**new_slot, "expand": expand}
        else:
            out[slot] = new_slot
        next_kernel = np.asarray(params[nxt]["kernel"])
        out[nxt] = {**params[nxt], "kernel": next_kernel[:, :, keep] if c_new <= c_old else fresh[nxt]["kernel"]}
    return _check_fits(new, out, f"stage {sub} of {old.arch}")


def freeze_encoder(params: PyTree) -> PyTree:
    """Everything outside g_s under stop_gradient (its Adam updates are then exactly zero)."""
    return {k: v if k.startswith(DECODER) else jax.lax.stop_gradient(v) for k, v in params.items()}


def _decoder_task(config: ModelConfig, params: PyTree, terms: Sequence, encoder_lr_scale: float,
                  metric: str, description: dict) -> Task:
    """The codec task of `config` from `params` with the encoder frozen or at a scaled learning rate."""
    if not 0.0 <= encoder_lr_scale <= 1.0:
        raise ConfigError(f"the encoder's learning-rate scale must be in [0, 1], got {encoder_lr_scale}")
    base = codec_task(config, metric, extra_terms=terms, initial_params=params)
    forward, optimizer = base.forward, None
    if encoder_lr_scale == 0.0:
        def forward(p, batch, rng):
            return base.forward(freeze_encoder(p), batch, rng)
    elif encoder_lr_scale < 1.0:
        def labels(p):
            return {k: jax.tree.map(lambda _: "decoder" if k.startswith(DECODER) else "encoder", v)
                    for k, v in p.items()}

        def optimizer(tx):
            parts = {"decoder": optax.identity(), "encoder": optax.scale(encoder_lr_scale)}
            return optax.chain(tx, optax.multi_transform(parts, labels))
    description = {**base.description, "asym": {**description, "encoder_lr_scale": encoder_lr_scale}}
    log_keys = ("bpp", "psnr", "teacher_psnr") if terms else base.log_keys
    return dataclasses.replace(base, forward=forward, optimizer=optimizer, description=description, log_keys=log_keys)


def stage_task(teacher: ModelPackage, sub: Substitution, seed: int = 0, output_weight: float = 1.0,
               latent_weight: float = 0.0, encoder_lr_scale: float = 0.0, metric: str = "mse") -> Task:
    """One stage: `teacher` (the previous stage) with block `sub` replaced, trained for RD plus
    distillation from the teacher."""
    config = substitute(teacher.config, sub)
    params = stage_params(teacher.config, teacher.params, config, sub, seed)
    # Same latent channels in teacher and student: the identity selection, not a ranking.
    term = Distillation(teacher, np.arange(config.M), config.lmbda, latent_weight, output_weight)
    return _decoder_task(config, params, [term], encoder_lr_scale, metric,
                         {"stage": str(sub), "distill": term.describe() | {"channels": "identity"}})


def final_config(config: ModelConfig, subs: Sequence[Substitution]) -> ModelConfig:
    """The config after every stage."""
    if not subs:
        raise ConfigError("name at least one stage (BLOCK=KIND[:CHANNELS])")
    for sub in subs:
        config = substitute(config, sub)
    return config


def scratch_task(package: ModelPackage, subs: Sequence[Substitution], seed: int = 0,
                 encoder_lr_scale: float = 0.0, metric: str = "mse") -> Task:
    """The baseline: the final light g_s freshly initialized on `package`'s encoder, RD only."""
    config = final_config(package.config, subs)
    params = {k: v for k, v in jax.device_get(package.params).items() if not k.startswith(DECODER)}
    params = _check_fits(config, params | fresh_decoder(config, seed), f"{config.arch} with g_s {config.decoder}")
    return _decoder_task(config, params, [], encoder_lr_scale, metric,
                         {"scratch": [str(s) for s in subs], "encoder": package.fingerprint.hex()})


def run_stages(package: ModelPackage, subs: Sequence[Substitution], train: TrainConfig, out: Path,
               output_weight: float = 1.0, latent_weight: float = 0.0, encoder_lr_scale: float = 0.0,
               metric: str = "mse", progress: bool = True) -> list[ModelPackage]:
    """Train the stages one after another into `out/stage{k}` (`train.steps` each, seed
    `train.seed + k` so each stage sees other crops); a rerun resumes. Writes the last stage's
    package to `out/model.jxlm` and returns every stage's package."""
    final_config(package.config, subs)  # a bad stage fails before any training
    packages, teacher = [], package
    for k, sub in enumerate(tqdm(subs, desc="stages", unit="stage", disable=not progress), 1):
        task = stage_task(teacher, sub, train.seed + k, output_weight, latent_weight, encoder_lr_scale, metric)
        config = dataclasses.replace(train, seed=train.seed + k)
        teacher = Trainer(config, task, Path(out) / f"stage{k}", progress).run()
        packages.append(teacher)
    teacher.save(Path(out) / "model.jxlm")
    return packages


def run_scratch(package: ModelPackage, subs: Sequence[Substitution], train: TrainConfig, out: Path,
                encoder_lr_scale: float = 0.0, metric: str = "mse", progress: bool = True) -> ModelPackage:
    """The baseline run: `train.steps` per stage, all in one run (equal total steps)."""
    config = dataclasses.replace(train, steps=train.steps * len(subs))
    return Trainer(config, scratch_task(package, subs, train.seed, encoder_lr_scale, metric), out, progress).run()


def decoder_complexity(package: ModelPackage) -> dict:
    """Decoder (h_s + g_s) kMAC/pixel and parameters, and the g_s blocks."""
    params = {k: v for k, v in package.params.items() if k.startswith(DECODER_PARTS)}
    return {"blocks": list(decoder_blocks(package.config)), "g_s_channels": list(package.config.hidden_channels[3:]),
            "decoder_kmacs": macs_per_pixel(package.config, DECODER_PARTS) / 1e3, "decoder_params": param_count(params)}

