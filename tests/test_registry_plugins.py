"""The registry: entry points (built-in and third-party), @register, suggestions, broken plugins."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import SPACES, run_cli

from nasframe import registry
from nasframe.registry import PluginError


def test_builtins_come_from_entry_points_of_this_distribution():
    info = {(i.kind, i.name): i for i in registry.plugins()}
    for key in [
        ("optimizer", "sgd"),
        ("optimizer", "adam"),
        ("optimizer", "adamw"),
        ("strategy", "asng"),
        ("dataset", "mnist1d"),
        ("dataset", "digits"),
        ("dataset", "synthetic"),
        ("op", "sep_conv3"),
    ]:
        assert info[key].source == "nasframe", key
    import torch

    assert registry.get("optimizer", "SGD") is torch.optim.SGD  # case-insensitive
    assert registry.get("op", "sep-conv3") is registry.get("op", "sep_conv3")


def test_unknown_name_suggests_close_matches_and_lists_available():
    with pytest.raises(PluginError, match="did you mean 'max_pool3'"):
        registry.get("op", "maxpool3")
    with pytest.raises(PluginError, match="available: .*digits.*mnist1d"):
        registry.get("dataset", "qqqq")
    with pytest.raises(PluginError, match="unknown plugin kind"):
        registry.get("layer", "x")


def test_register_decorator_and_duplicates():
    @registry.register("op", "test_only_op")
    class TestOnlyOp:
        layouts = ("conv1d",)

    try:
        assert registry.get("op", "test_only_op") is TestOnlyOp
        with pytest.raises(PluginError, match="registered twice.*user code"):
            registry.register("op", "test_only_op")(object)
        with pytest.raises(PluginError, match="registered twice.*nasframe"):
            registry.register("op", "conv3")(object)
        replacement = type("Other", (), {})
        registry.register("op", "test_only_op", override=True)(replacement)
        assert registry.get("op", "test_only_op") is replacement
    finally:  # a plugin registered in code changes the hints runs print (how_to_go_on)
        registry._discover()["op"].pop("test_only_op", None)


GOOD_PLUGIN = '''
from torch import nn
from nasframe import Op, layer_types

class WideConv(Op):
    """A 9-wide convolution + BatchNorm + ReLU."""

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        t = layer_types(layout)
        return [t["conv"](in_channels, out_channels, 9, stride=stride, padding=4, bias=False),
                t["bn"](out_channels), nn.ReLU()]
'''


@pytest.fixture
def third_party(tmp_path):
    """A temporary distribution 'acme-nas-ops' with one good and one broken entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_ops.py").write_text(GOOD_PLUGIN)
    (site / "acme_broken.py").write_text("raise RuntimeError('acme is broken')\n")
    dist = site / "acme_nas_ops-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nas-ops\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [nasframe.ops]
        wide_conv = acme_ops:WideConv
        broken_conv = acme_broken:BrokenConv
    """)
    )
    return {"PYTHONPATH": str(site)}


def test_third_party_plugins_listed_with_their_distribution(third_party):
    res = run_cli("plugins", env=third_party)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert ["op", "wide_conv", "acme-nas-ops", "1.2.3", "acme_ops:WideConv"] in rows
    assert ["op", "broken_conv", "acme-nas-ops", "1.2.3", "acme_broken:BrokenConv"] in rows
    assert any(r[:3] == ["optimizer", "sgd", "nasframe"] for r in rows)


def test_good_third_party_op_is_searchable_and_broken_one_fails_alone(third_party, tmp_path):
    cfg = tmp_path / "acme.yaml"
    cfg.write_text(
        (SPACES / "digits.yaml")
        .read_text()
        .replace("[conv3, sep_conv3, identity]", "[wide_conv, conv3]")
    )
    out = tmp_path / "run"
    res = run_cli(
        "search",
        str(cfg),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "search.epochs=1",
        env=third_party,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["categories"][-1] == 2  # wide_conv and conv3 for each s2 layer
    assert summary["paths"][-1] == "space.stages.s2.layer1.op"

    broken = tmp_path / "broken.yaml"
    broken.write_text(cfg.read_text().replace("[wide_conv, conv3]", "[broken_conv, conv3]"))
    res = run_cli(
        "search",
        str(broken),
        "--out",
        str(tmp_path / "b"),
        "--quiet",
        "--set",
        "search.epochs=1",
        env=third_party,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "broken_conv" in res.stderr and "acme-nas-ops 1.2.3" in res.stderr
    assert "acme is broken" in res.stderr


def test_validate_reports_a_plugin_that_fails_to_import_at_its_line(third_party, tmp_path):
    cfg = tmp_path / "broken.yaml"
    text = (SPACES / "digits.yaml").read_text()
    cfg.write_text(text.replace("[conv3, sep_conv3, identity]", "[broken_conv, conv3]"))
    res = run_cli("validate", str(cfg), env=third_party)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if "broken_conv" in t)
    assert f"broken.yaml:{line}:" in res.stderr and "acme is broken" in res.stderr


def test_a_name_provided_twice_is_listed_for_both_and_refused_at_its_line(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "rival_ops.py").write_text(GOOD_PLUGIN)
    dist = site / "rival_ops-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rival-ops\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nasframe.ops]\nconv3 = rival_ops:WideConv\n")
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("plugins", env=env)
    rows = [line.split() for line in listed.stdout.splitlines() if line.startswith("op ")]
    conv3 = [r for r in rows if r[1] == "conv3"]
    assert {r[2] for r in conv3} == {"nasframe", "rival-ops"} and all(
        r[3] == "(conflict)" for r in conv3
    )
    done = run_cli("validate", str(SPACES / "digits.yaml"), env=env)
    assert done.returncode == 2 and "provided by several distributions" in done.stderr
    assert "digits.yaml:" in done.stderr


def test_a_run_with_a_plugin_registered_in_code_says_how_to_go_on_in_python(
    tmp_path, plugin, capsys
):
    """The command line finds installed plugins only: `nasframe train arch.yaml` would refuse
    the op that a program registered, so the run says what to call instead, and why."""
    from nasframe import Op, load_config, run_search
    from nasframe.interrupt import resume_hint

    assert resume_hint("search", "r") == "nasframe search --resume r"  # nothing in code yet

    class TestOnlyDense(Op):
        layouts = ("linear",)

        @classmethod
        def build(cls, in_channels, out_channels, stride, layout):
            return registry.get("op", "linear").build(in_channels, out_channels, stride, layout)

    plugin("op", "test_only_dense", TestOnlyDense)
    plugin("op", "test_only_unused", TestOnlyDense)  # registered, not used: not named
    text = (SPACES / "mlp.yaml").read_text().replace("[linear, identity]", "[test_only_dense]")
    (tmp_path / "c.yaml").write_text(text)
    config, _ = load_config(tmp_path / "c.yaml", ["search.epochs=1", "log.tensorboard=false"])
    run_search(config, tmp_path / "r", progress=False)
    arch = tmp_path / "r" / "arch.yaml"
    out = capsys.readouterr()
    assert (
        f"retrain it with: nasframe.run_train(nasframe.load_config('{arch}')[0], RUN_DIR) (in "
        f"Python: op 'test_only_dense' is registered in code, not installed, so `nasframe train "
        f"{arch}` would not find it)"
    ) in out.out + out.err
    assert "test_only_unused" not in out.out + out.err
    assert resume_hint("train", "t").startswith(
        "nasframe.run_train(config, 't', resume=True) (in Python: op 'test_only_dense' is"
    )
