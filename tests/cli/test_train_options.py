"""Every training command (train, distill, prune, asym, and the QAT runs of quantize and watermark)
takes its TrainConfig flags from the dataclass, one flag per field."""

import dataclasses

import pytest

from jaxlic.cli import build_parser
from jaxlic.cli.train_cmds import train_config_from_args
from jaxlic.train.loop import TrainConfig


@pytest.mark.parametrize("command", [["train"], ["distill", "--teacher", "t", "--width", "0.5"],
                                     ["prune", "--model", "m", "--schedule", "1:0.5"], ["quantize", "--model", "m"],
                                     ["watermark", "--model", "m", "--key", "k"],
                                     ["asym", "--init", "m", "--stage", "2=res"]])
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
