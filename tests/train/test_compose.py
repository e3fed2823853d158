"""One composed run: each part alone trains what its own task trains (same seed -> same
parameters), all parts together write a shrunk integer-mode package that carries the watermark,
and QAT's ranges can be re-measured during the run (every TrainConfig flag: tests/cli)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxlic.cli import main
from jaxlic.codec import build_tables, compress, decompress, load
from jaxlic.errors import ConfigError, WatermarkError
from jaxlic.images import default_images
from jaxlic.models import build_model, init_params, model_config
from jaxlic.quant.export import integerize
from jaxlic.quant.lowering import Calibration, calibrate
from jaxlic.quant.prune import PruneSchedule, prune_task
from jaxlic.quant.qat import qat_task, range_arrays
from jaxlic.secure.watermark import WatermarkKey, WatermarkTerm, extract
from jaxlic.train.compose import Parts, Recalibration, compose_task, qat_batches, qat_calibration, recalibration_steps
from jaxlic.train.distill import distill_task, distillation_term, student_config
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.parallel import local_value
from jaxlic.train.step import FORWARD_STATE

TRAIN = TrainConfig(steps=3, batch_size=2, crop=32, learning_rate=3e-3, seed=1, checkpoint_every=3)
KEY = WatermarkKey(bytes(range(32)), owner_bits=24, user_bits=8, positions_per_bit=8)  # 24 bits: < 1e-6 false positives


@pytest.fixture(scope="module")
def teacher():
    config = model_config("bmshj2018-factorized", 3, 0.125)
    return build_tables(config, init_params(build_model(config), 3))


def crops(n=2, side=32):
    return np.random.default_rng(0).random((n, side, side, 3), dtype=np.float32)


def trained(task, run_dir):
    """The parameters after TRAIN's steps (from the run's last checkpoint)."""
    trainer = Trainer(TRAIN, task, run_dir, progress=False)
    trainer.run()
    with ocp.CheckpointManager((run_dir / "checkpoints").absolute()) as manager:
        return manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(trainer.initial_state())).params


def assert_same(a, b):
    diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b))
    assert max(diffs) == 0.0


def separate_and_composed(name, teacher):
    """(the part's own task, the composed task with only that part)."""
    params = teacher.params
    if name == "distill":
        student = student_config(teacher.config, 0.0625)
        own = distill_task(teacher, 0.0625, crops())
        term = distillation_term(teacher, student, crops())
        return own, compose_task(student, init_params(build_model(student), TRAIN.seed), Parts(distill=term))
    if name == "prune":
        schedule = PruneSchedule("channel", (1, 2), (0.25, 0.5))
        return prune_task(teacher, schedule), compose_task(teacher.config, params, Parts(prune=schedule))
    calibration = qat_calibration(teacher.config, params, TRAIN)
    terms = [WatermarkTerm(KEY, 7, 10.0)] if name == "qat+watermark" else []
    own = qat_task(teacher, calibration, extra_terms=terms)
    return own, compose_task(teacher.config, params, Parts(qat=calibration, watermark=terms[0] if terms else None))


@pytest.mark.slow  # 15-25 s each; the composed command test covers the parts together
@pytest.mark.parametrize("name", ["distill", "prune", "qat", "qat+watermark"])
def test_one_part_trains_what_its_own_task_trains(name, teacher, tmp_path):
    own, composed = separate_and_composed(name, teacher)
    assert_same(trained(own, tmp_path / "own"), trained(composed, tmp_path / "composed"))
    if name != "distill":  # the artifacts are the same kind: float, shrunk float, integer
        a, b = load(tmp_path / "own" / "model.jxlm"), load(tmp_path / "composed" / "model.jxlm")
        assert a.config == b.config and (a.integer is None) == (b.integer is None)


def test_watermark_needs_qat_and_a_key_the_pruned_model_can_carry(teacher):
    with pytest.raises(ConfigError, match="needs QAT"):
        Parts(watermark=WatermarkTerm(KEY))
    # 11,200 positions: the full model's carriers hold 22,400 weights, halved channels 8,000
    big = WatermarkTerm(WatermarkKey(bytes(32), owner_bits=64, user_bits=48, positions_per_bit=100))
    calibration = qat_calibration(teacher.config, teacher.params, TRAIN)
    compose_task(teacher.config, teacher.params, Parts(qat=calibration, watermark=big))
    with pytest.raises(WatermarkError, match="carrier layers hold 8000"):  # before training, not at the last cut
        compose_task(teacher.config, teacher.params,
                     Parts(prune=PruneSchedule("channel", (1,), (0.5,)), qat=calibration, watermark=big))


def test_composed_command_distills_prunes_quantizes_and_watermarks_in_one_run(teacher, tmp_path, capsys):
    teacher.save(tmp_path / "teacher.jxlm")
    key_path = KEY.save(tmp_path / "owner.wmkey")
    out = tmp_path / "run"
    assert main(["train", "--init", str(tmp_path / "teacher.jxlm"), "--width", "0.0625", "--distill",
                 "--prune", "channel:5:0.25", "--qat", "--watermark", str(key_path), "--user-id", "7",
                 "--strength", "10", "--steps", "30", "--lr", "3e-3", "--batch-size", "2", "--crop", "64",
                 "--calibration", "2", "--checkpoint-every", "30", "--recalibrate", "10,20", "--out", str(out)]) == 0
    package = load(out / "model.jxlm")
    assert package.integer is not None  # an integer-mode package, as `jaxlic quantize` writes
    assert package.config.hidden == (6,) * 6 and package.config.M == 12  # the 0.0625 student, 25% pruned
    result = extract(package, KEY)
    assert result.is_owner and result.bit_error_rate(7) == 0.0
    assert "watermark FOUND" in capsys.readouterr().out
    parts = json.loads((out / "config.json").read_text())["task"]["parts"]
    assert sorted(parts) == ["distill", "prune", "qat", "recalibrate", "watermark"] and "secret" not in json.dumps(parts)
    assert parts["recalibrate"] == [10, 20]
    # one run: one checkpoint folder (its last step 30), one metrics log, one package
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "model.jxlm"]
    assert max(int(p.name) for p in (out / "checkpoints").iterdir()) == 30
    pixels = default_images()[0][1][:64, :64]
    assert decompress(package, compress(package, pixels)).shape == pixels.shape


@pytest.mark.parametrize("bad, message", [(["--distill"], "needs the teacher"), (["--watermark"], "needs QAT")])
def test_composed_command_refuses_incomplete_parts(bad, message, tmp_path, capsys):
    key = [str(KEY.save(tmp_path / "k.wmkey"))] if "--watermark" in bad else []
    assert main(["train", "--width", "0.0625", "--steps", "2", "--out", str(tmp_path / "r"), *bad, *key]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # 24 s (calibrate compiles); the composed command test runs --recalibrate by default
def test_qat_ranges_are_recalibrated_between_steps_and_exported(teacher, tmp_path):
    """QAT's ranges live in the train state: the decoder trains in float until the first step a
    Recalibration names (the ranges of an untrained student are a random network's; they were
    fixed at step 0 before), then fake-quantized with ranges re-measured on the current
    parameters; the package is written with the last ranges."""
    batches = qat_batches(TRAIN, 1)
    fresh = calibrate(teacher.config, teacher.params, batches)
    stale = Calibration({name: tuple(e - 3 for e in exps) for name, exps in fresh.exponents.items()})
    task = compose_task(teacher.config, teacher.params, Parts(qat=stale, recalibrate=Recalibration((2,), tuple(batches))))
    state = jax.device_put(Trainer(TRAIN, task, tmp_path, progress=False).initial_state())

    def forward_state(state):
        qat = local_value(state.term_states[FORWARD_STATE])
        return {k: v.tolist() for k, v in qat["ranges"].items()}, bool(qat["quantized"])

    assert forward_state(task.between_steps(state.replace(step=jnp.asarray(1)), None)) == forward_state(state)
    assert forward_state(state)[1] is False
    recalibrated = task.between_steps(state.replace(step=jnp.asarray(2)), None)
    assert forward_state(recalibrated) == ({k: v.tolist() for k, v in range_arrays(fresh).items()}, True)
    package = task.finalize(teacher.params, tmp_path, local_value(recalibrated.term_states[FORWARD_STATE]))
    assert package.fingerprint == integerize(teacher.config, teacher.params, fresh).fingerprint


def test_default_recalibration_starts_qat_at_half_the_run_and_follows_later_cuts():
    assert recalibration_steps(400) == (200,)
    assert recalibration_steps(400, PruneSchedule("channel", (100, 230), (0.1, 0.25))) == (200, 230)
    with pytest.raises(ConfigError, match="needs QAT"):
        Parts(recalibrate=Recalibration((1,), (np.zeros((1, 16, 16, 3)),)))
    with pytest.raises(ConfigError, match="increasing steps"):
        Recalibration((2, 1), (np.zeros((1, 16, 16, 3)),))
