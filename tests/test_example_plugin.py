"""The example third-party plugin of the docs, installed with pip and used by the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SPACES, run_cli

EXAMPLE = ROOT / "docs" / "examples" / "nasframe-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),  # a copy: pip builds in the source tree
        ],
        check=True,
        capture_output=True,
    )
    return {"PYTHONPATH": str(target)}


def test_example_plugin_is_listed(installed):
    res = run_cli("plugins", env=installed)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert [
        "op",
        "dil_conv3",
        "nasframe-example-plugin",
        "1.0.0",
        "nasframe_example_plugin:DilatedConv3",
    ] in rows
    assert [
        "dataset",
        "noisy_digits",
        "nasframe-example-plugin",
        "1.0.0",
        "nasframe_example_plugin:noisy_digits",
    ] in rows


def test_example_plugin_op_and_dataset_run_a_search(installed, tmp_path):
    cfg = tmp_path / "example.yaml"
    cfg.write_text(
        (SPACES / "digits.yaml")
        .read_text()
        .replace("[conv3, sep_conv3, identity]", "[dil_conv3, conv3]")
        .replace("name: digits,", "name: noisy_digits,")
    )
    out = tmp_path / "run"
    res = run_cli(
        "search", str(cfg), "--out", str(out), "--quiet", "--set", "search.epochs=1", env=installed
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["categories"][-2:] == [2, 2]
    arch = out / "arch.yaml"
    res = run_cli(
        "train",
        str(arch),
        "--out",
        str(tmp_path / "t"),
        "--quiet",
        "--set",
        "space.stages.s2.layers.0.op=dil_conv3",
        "--set",
        "train.epochs=1",
        env=installed,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["test_acc"] > 0.1


def test_the_example_plugins_own_tests_pass_where_it_is_installed(installed, tmp_path):
    """docs/plugins.md: the example comes with its own tests, run as its author would."""
    tests = EXAMPLE / "tests"
    env = {**os.environ, **installed, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-o",
            "addopts=",  # not nasframe's own pytest settings
            "-p",
            "no:cacheprovider",
            str(tests),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\n6 passed in " in done.stdout, done.stdout
