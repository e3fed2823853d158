"""Multi-host training: 2 processes x 1 CPU device (gloo) train what 1 process x 2 devices trains."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

TRAIN = ["train", "--model", "bmshj2018-factorized", "--quality", "2", "--width", "0.125", "--steps", "3",
         "--batch-size", "4", "--crop", "32", "--lr", "1e-3", "--seed", "3"]
RUN = "import sys; from jaxlic.cli import main; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, **distributed: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    return env | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"} | distributed


def _train(out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, *TRAIN, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out


def _params(run_dir: Path) -> list[np.ndarray]:
    from jaxlic.codec import load

    return [np.asarray(p) for p in jax.tree_util.tree_leaves(load(run_dir / "model.jxlm").params)]


@pytest.mark.slow  # three JAX processes: minutes on a shared 2-core machine
def test_two_hosts_train_what_one_host_with_two_devices_trains(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    hosts = [_train(tmp_path / "hosts", _env(1, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                                             JAX_PROCESS_ID=str(i))) for i in range(2)]
    reference = _train(tmp_path / "devices", _env(2))
    outputs = [_finish(p) for p in hosts]
    _finish(reference)

    assert "wrote" in outputs[0] and "wrote" not in outputs[1]  # files are written once, by process 0
    logged = (tmp_path / "hosts" / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 1  # log_every 10 > 3 steps: only the last step, logged once
    difference = max(float(np.abs(a - b).max()) for a, b in zip(_params(tmp_path / "hosts"),
                                                                _params(tmp_path / "devices")))
    print(f"max parameter difference, 2 processes x 1 device vs 1 process x 2 devices: {difference:.3g}")
    assert difference <= 1e-5


def test_each_host_loads_only_its_rows_of_the_global_batch():
    from jaxlic.train.data import Batches, ImageSet

    images = ImageSet(("a", "b", "c"), tuple(np.full((40, 40, 3), 60 * i, np.uint8) for i in range(3)))
    batches = Batches(images, batch_size=4, crop=32, seed=0)
    whole = batches.batch(5)
    np.testing.assert_array_equal(np.concatenate([batches.batch(5, range(0, 2)), batches.batch(5, range(2, 4))]), whole)


def test_bad_distributed_settings_are_config_errors(monkeypatch):
    from jaxlic.errors import ConfigError
    from jaxlic.train.parallel import initialize_distributed

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES"):
        initialize_distributed()
