"""One composed run: each part alone trains what its own task trains (same seed -> same
parameters), all parts together write a shrunk integer-mode package that carries the watermark,
and every TrainConfig field has a flag in every training command."""

import dataclasses
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxlic.cli import build_parser, main
from jaxlic.cli.train_cmds import train_config_from_args
from jaxlic.codec import build_tables, compress, decompress, load
from jaxlic.errors import ConfigError, WatermarkError
from jaxlic.images import default_images
from jaxlic.models import build_model, init_params, model_config
from jaxlic.quant.prune import PruneSchedule, prune_task
from jaxlic.quant.qat import qat_task
from jaxlic.secure.watermark import WatermarkKey, WatermarkTerm, extract
from jaxlic.train.compose import Parts, compose_task, qat_calibration
from jaxlic.train.distill import distill_task, distillation_term, student_config
from jaxlic.train.loop import TrainConfig, Trainer

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
                 "--calibration", "2", "--checkpoint-every", "30", "--out", str(out)]) == 0
    package = load(out / "model.jxlm")
    assert package.integer is not None  # an integer-mode package, as `jaxlic quantize` writes
    assert package.config.hidden == (6,) * 6 and package.config.M == 12  # the 0.0625 student, 25% pruned
    result = extract(package, KEY)
    assert result.is_owner and result.bit_error_rate(7) == 0.0
    assert "watermark FOUND" in capsys.readouterr().out
    parts = json.loads((out / "config.json").read_text())["task"]["parts"]
    assert sorted(parts) == ["distill", "prune", "qat", "watermark"] and "secret" not in json.dumps(parts)
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


@pytest.mark.parametrize("command", [["train"], ["distill", "--teacher", "t", "--width", "0.5"],
                                     ["prune", "--model", "m", "--schedule", "1:0.5"]])
def test_every_train_config_field_has_a_flag(command):
    """Fails when a TrainConfig field cannot be set from a training command."""
    values = {"data": ("a", "b"), "steps": 7, "batch_size": 3, "crop": 48, "learning_rate": 0.25, "warmup": 2,
              "decay": "constant", "clip_norm": 0.5, "seed": 9, "checkpoint_every": 4, "log_every": 6}
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(values) == sorted(fields), "give the new TrainConfig field a test value here"
    parser = build_parser()
    flags = {a.dest: a.option_strings[0] for a in parser._subparsers._group_actions[0].choices[command[0]]._actions}
    missing = [name for name in fields if name not in flags]
    assert not missing, f"TrainConfig fields without a flag in `jaxlic {command[0]}`: {missing}"
    argv = [*command, "--out", "o"]
    for name, value in values.items():
        argv += [x for v in (value if isinstance(value, tuple) else (value,)) for x in (flags[name], str(v))]
    assert train_config_from_args(parser.parse_args(argv)) == TrainConfig(**values)
