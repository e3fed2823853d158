"""The training loop: exact resume, multi-device equivalence, the step's loss terms."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.errors import ConfigError
from jaxlic.models import model_config
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.task import codec_task
from jaxlic.train.terms import RateDistortion, bits_per_pixel

TINY = dict(batch_size=4, crop=32, learning_rate=1e-3, log_every=1)
TINY_MODEL = model_config("bmshj2018-factorized", 2, width=0.125)


def tiny_trainer(run_dir, task=None, **overrides):
    config = TrainConfig(**{**TINY, **overrides})
    return Trainer(config, task or codec_task(TINY_MODEL), run_dir, progress=False)


def _params(run_dir):
    from jaxlic.codec import load

    return jax.tree_util.tree_leaves(load(Path(run_dir) / "model.jxlm").params)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    tiny_trainer(tmp_path / "full", steps=6, checkpoint_every=3).run()
    # Stopped after 3 steps, then resumed to 6 by a new Trainer (as a new process would).
    assert tiny_trainer(tmp_path / "split", steps=6, checkpoint_every=3).run(until=3) is None
    tiny_trainer(tmp_path / "split", steps=6, checkpoint_every=3).run()
    for a, b in zip(_params(tmp_path / "full"), _params(tmp_path / "split")):
        np.testing.assert_array_equal(a, b)
    logged = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").open()]
    assert logged == [1, 2, 3, 4, 5, 6]


def test_resuming_with_another_config_is_refused(tmp_path):
    tiny_trainer(tmp_path, steps=1).run()
    with pytest.raises(ConfigError):
        tiny_trainer(tmp_path, steps=2, learning_rate=5e-4).run()
    with pytest.raises(ConfigError):
        tiny_trainer(tmp_path, codec_task(model_config("bmshj2018-factorized", 3, width=0.125)), steps=2).run()


def test_rd_term_matches_its_definition():
    batch = jnp.full((2, 4, 4, 3), 0.5)
    outputs = {"x_hat": batch + 0.1, "likelihoods": {"y": jnp.full((2, 1, 1, 8), 0.25)}}
    loss, metrics = RateDistortion(0.01)({}, outputs, batch, {})
    bpp = 2 * 8 * 2 / (2 * 4 * 4)
    assert float(bits_per_pixel(outputs, batch)) == pytest.approx(bpp)
    assert float(loss) == pytest.approx(bpp + 0.01 * 255**2 * 0.01, rel=1e-5)
    assert float(metrics["psnr"]) == pytest.approx(20.0, rel=1e-5)


MULTI_DEVICE_SCRIPT = """
import json, sys
import jax, numpy as np
from jaxlic.models import model_config
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.task import codec_task
cfg = TrainConfig(steps=3, checkpoint_every=3, **json.loads(sys.argv[2]))
Trainer(cfg, codec_task(model_config("bmshj2018-factorized", 2, width=0.125)), sys.argv[1], progress=False).run()
print(len(jax.devices()))
"""


def _run_with_devices(count, run_dir):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
    out = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT, str(run_dir), json.dumps(TINY)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(count)


@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path):
    assert len(jax.devices()) == 1  # the test process is the one-device run
    tiny_trainer(tmp_path / "one", steps=3, checkpoint_every=3).run()
    _run_with_devices(4, tmp_path / "four")
    for a, b in zip(_params(tmp_path / "one"), _params(tmp_path / "four")):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
