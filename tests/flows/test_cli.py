"""`imgclf` as a user runs it: help for every subcommand, one-line errors, a real prep."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import COMMANDS
from tests.datagen import write_idx_set

pytestmark = pytest.mark.slow  # the `imgclf` command run as users run it (a process each)


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help(command):
    out = _run(command, "--help")
    assert out.returncode == 0 and ("--store" in out.stdout or command == "cluster")


@pytest.mark.parametrize("args,message", [
    (["--val-fraction", "1.5"], "--val-fraction: Input should be less than 1"),
    (["--dataset", "imagefolder"], "needs --source"),
    (["--name", "../evil"], "--name: '../evil' is not a valid name"),
    (["--source", "/nonexistent/mnist"], "file is missing"),
])
def test_bad_options_give_one_line_errors(tmp_path, args, message):
    out = _run("prepare", "--store", str(tmp_path), *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in out.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "--dropout", "1.5"], "--dropout: Input should be less than 1"),
    (["train", "--model", "rnn"], "argument --family/--model: invalid choice"),
    (["train", "--lr", "0"], "--lr: Input should be greater than 0"),
    (["train", "--widths", "8,x"], "is not a comma-separated list of integers"),
    (["train", "--dataset", "nothing"], "no prepared dataset 'nothing'"),
    (["evaluate", "--model", "dcnn"], "no trained 'dcnn' model for 'mnist'"),
    (["evaluate", "--dataset", "../../outside"], "'../../outside' is not a valid name"),
    (["publish", "--dataset", "../x"], "'../x' is not a valid name"),
])
def test_train_and_evaluate_bad_options(tmp_path, args, message):
    out = _run(*args, "--store", str(tmp_path))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_prepare_prints_the_uri(tmp_path):
    src = write_idx_set(tmp_path / "src")
    out = _run("prepare", "--source", str(src), "--store", str(tmp_path / "s"), "--seed", "3")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["uri"].startswith(str(tmp_path / "s")) and res["counts"]["test"] == 50


def test_the_form_and_the_help_show_the_defaults_that_run():
    """The Prefect form (the flow's parameter schema) and `imgclf pipeline --help` show the
    default profile's values, not the nested classes' own (8 samples, 2 epochs), and every
    top-level parameter has a description."""
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline
    from flows.profiles import build

    schema = parameter_schema(pipeline).model_dump()
    assert all(p.get("description") for p in schema["properties"].values())
    props = schema["definitions"]["PipelineConfig"]["properties"]
    runs = build("default")
    assert props["tune"]["default"]["num_samples"] == runs.tune.num_samples == 2
    assert props["tune"]["default"]["max_epochs"] == runs.tune.max_epochs == 1
    assert [d["dataset"] for d in props["datasets"]["default"]] == \
        ["mnist", "fashion-mnist", "cifar10"]
    out = _run("pipeline", "--help")
    text = " ".join(out.stdout.split())
    assert "PydanticUndefined" not in text
    assert "trials to sample (default: 2)" in text
    assert "(default: mnist,fashion-mnist,cifar10)" in text


def test_a_network_too_large_for_the_machine_is_refused_before_any_work(tiny_dataset):
    store, _ = tiny_dataset
    out = _run("train", "--store", store, "--model", "bp", "--widths", "100000000")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "79,500,000,010 parameters" in last and "GiB, this machine has" in last
    assert not (Path(store) / "ray").exists()  # nothing was started or written
