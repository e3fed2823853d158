"""Each command lives in the module named for it: `eval` in eval_cmds, `demo` in demo_cmds
(both used to sit in train_cmds), `train` in train_cmds."""

import argparse
import importlib

import pytest


@pytest.mark.parametrize("module, commands", [("jaxlic.cli.eval_cmds", {"eval", "bench-codecs", "bdrate", "plot"}),
                                              ("jaxlic.cli.demo_cmds", {"demo"}),
                                              ("jaxlic.cli.train_cmds", {"train"})])
def test_commands_live_in_the_module_named_for_them(module, commands):
    subparsers = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(subparsers)
    assert set(subparsers.choices) == commands
