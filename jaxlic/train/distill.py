"""Knowledge distillation: a frozen teacher package teaches a narrower student of its family.

The student is the teacher's zoo architecture at another width (N and M scale together) and the
teacher's lambda. Its loss is the ordinary rate-distortion loss plus a `Distillation` term on the
two things that decide RD performance:

- latents: the student's latent channel i is pulled towards the teacher's i-th most informative
  latent channel (ranked once by the bits the teacher spends on each channel over a batch of
  training crops). The projection is a fixed channel selection, not a learned map: the teacher's
  channels are already shaped for rounding and its entropy model, which a rotation or a learned
  projection would blur, and the student's own rate term keeps training the rest;
- reconstructions: the student's image is pulled towards the teacher's decoded image, in the
  same units as the RD distortion (lambda * 255^2 * MSE), so weight 1 counts it as much as the
  real distortion.

The teacher runs in the same jitted step, on parameters held in the term's state under
`stop_gradient`, with rounding (what its decoder really produces), so it needs no RNG.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.codec import ModelPackage
from jaxlic.errors import ConfigError
from jaxlic.models import ModelConfig, build_model, model_config
from jaxlic.train.data import Batches, ImageSet
from jaxlic.train.task import Task, codec_task

PyTree = Any


def student_config(teacher: ModelConfig, width: float) -> ModelConfig:
    """The teacher's architecture, quality, GDN and lambda at zoo width `width`."""
    config = model_config(teacher.arch, teacher.quality, width, teacher.gdn)
    return dataclasses.replace(config, lmbda=teacher.lmbda)


def rank_latent_channels(teacher: ModelPackage, images: np.ndarray) -> np.ndarray:
    """Teacher latent channels, most bits first, over `images` (float NHWC in [0, 1])."""
    images = np.asarray(images, np.float32)
    multiple = teacher.model.downsampling
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] % multiple or images.shape[2] % multiple:
        raise ConfigError(f"calibration images must be NHWC RGB with sides divisible by {multiple}, "
                          f"got shape {images.shape}")
    outputs = teacher.model.apply({"params": teacher.params}, jnp.asarray(images), "round")
    bits = -np.log2(np.asarray(outputs["likelihoods"]["y"], np.float64)).sum(axis=(0, 1, 2))
    return np.argsort(-bits, kind="stable")


def calibration_crops(folders: Sequence[str], crop: int, count: int = 16, seed: int = 0) -> np.ndarray:
    """`count` random training crops (float NHWC in [0, 1]) to rank the teacher's latent channels
    (built-in images when `folders` is empty); `crop` must suit the model's downsampling."""
    source = ImageSet.from_folders(*folders, progress=False) if folders else ImageSet.default()
    return Batches(source, count, crop, seed).batch(0)


def teacher_crops(teacher: ModelPackage, folders: Sequence[str], crop: int, count: int = 16,
                  seed: int = 0) -> np.ndarray:
    """`calibration_crops` at the largest side <= `crop` that the teacher's downsampling divides."""
    multiple = teacher.model.downsampling
    return calibration_crops(folders, max(multiple, crop - crop % multiple), count, seed)


class Distillation:
    """Loss term: latent matching to the teacher's most informative channels plus
    reconstruction matching to the teacher's decoded image (see the module docstring)."""

    name = "distill"

    def __init__(self, teacher: ModelPackage, channels: np.ndarray, lmbda: float,
                 latent_weight: float = 1.0, output_weight: float = 1.0):
        if latent_weight < 0 or output_weight < 0 or latent_weight + output_weight == 0:
            raise ConfigError(f"distillation weights must be >= 0 and not both 0, got "
                              f"latent {latent_weight}, output {output_weight}")
        self.teacher = teacher
        # A host copy: the step donates its state, which must not free the package's arrays.
        self._teacher_params = jax.device_get(teacher.params)
        self.teacher_model = build_model(teacher.config)
        self.channels = np.asarray(channels, np.int32)
        self.lmbda = lmbda
        self.latent_weight = latent_weight
        self.output_weight = output_weight

    def init_state(self, params: PyTree) -> PyTree:
        return {"teacher": jax.tree_util.tree_map(jnp.asarray, self._teacher_params),
                "channels": jnp.asarray(self.channels)}

    def __call__(self, params, outputs, batch, term_state):
        teacher_params = jax.lax.stop_gradient(term_state["teacher"])
        target = self.teacher_model.apply({"params": teacher_params}, batch, "round")
        pixels = batch.shape[0] * batch.shape[1] * batch.shape[2]
        k = self.channels.shape[0]
        y_teacher = jax.lax.stop_gradient(jnp.take(target["y"], term_state["channels"], axis=-1))
        latent = jnp.sum((outputs["y"][..., :k] - y_teacher) ** 2) / pixels
        x_teacher = jax.lax.stop_gradient(target["x_hat"])
        output = self.lmbda * 255.0**2 * jnp.mean((outputs["x_hat"] - x_teacher) ** 2)
        loss = self.latent_weight * latent + self.output_weight * output
        teacher_mse = jnp.mean((x_teacher - batch) ** 2)
        return loss, {"distill/latent": latent, "distill/output": output,
                      "teacher_psnr": -10.0 * jnp.log10(jnp.maximum(teacher_mse, 1e-10))}

    def describe(self) -> dict:
        """What the run description records about the teacher and the weights."""
        return {"teacher": self.teacher.fingerprint.hex(), "teacher_model": json.loads(self.teacher.config.to_json()),
                "latent_weight": self.latent_weight, "output_weight": self.output_weight,
                "channels": self.channels.tolist()}


def distillation_term(teacher: ModelPackage, student: ModelConfig, calibration: np.ndarray,
                      latent_weight: float = 1.0, output_weight: float = 1.0) -> Distillation:
    """The term for `student`, its latent channels matched to the teacher's most informative
    ones as ranked on `calibration` (training crops, float NHWC in [0, 1])."""
    channels = rank_latent_channels(teacher, calibration)[: min(student.M, teacher.config.M)]
    return Distillation(teacher, channels, student.lmbda, latent_weight, output_weight)


def distill_task(teacher: ModelPackage, width: float, calibration: np.ndarray, latent_weight: float = 1.0,
                 output_weight: float = 1.0, metric: str = "mse") -> Task:
    """Train a width-`width` student of `teacher` for RD plus distillation, into a package.

    `calibration` (training crops, float NHWC in [0, 1]) ranks the teacher's latent channels.
    """
    config = student_config(teacher.config, width)
    term = distillation_term(teacher, config, calibration, latent_weight, output_weight)
    task = codec_task(config, metric, extra_terms=[term])
    description = {**task.description, "distill": term.describe()}
    return dataclasses.replace(task, description=description, log_keys=("bpp", "psnr", "teacher_psnr"))
