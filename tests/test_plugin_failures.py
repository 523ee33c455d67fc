"""A plugin that loads but fails when nasframe calls it (its op build, cell op, dataset, optimizer or
strategy raises, has the wrong signature or returns the wrong kind of thing) is reported in one line
naming the plugin, where it comes from and what it did, with exit status 2 and no traceback; the
user's own mistakes (an option the plugin does not take) are still located in the config."""

from __future__ import annotations

import sys
import textwrap
from importlib import metadata

import pytest
import torch
from conftest import SPACES, run_cli
from torch import nn

from nasframe import ASNG, Dataset, Op, UserError, registry
from nasframe.cli import main
from nasframe.config import DataConfig
from nasframe.data import load_dataset
from nasframe.errors import cause_traceback
from nasframe.registry import PluginFailure

FAST = ["--set", "search.epochs=1", "--quiet"]
ADVICE = "this is a bug in that plugin: fix it, or report it to its authors"

# A fixed chain (no choices) on digits' vectors: `nasframe train` takes it as it is.
ARCH = """\
version: 1
name: fixed
data: {name: digits}
space:
  layout: linear
  stem: {op: linear, channels: 16}
  stages:
    - name: s1
      transition: linear
      depth: 1
      width: 16
      layer: {op: OP}
train:
  epochs: 1
  batch_size: 64
log: {tensorboard: false, progress: false}
"""


def _one_line(args: list[str], capsys) -> str:
    """The one line of stderr of a refused command (exit status 2, no traceback)."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """An installed distribution 'acme-bad-plugins 0.1' in-process: ``installed(kind, name,
    "attr", source)`` makes ``name`` the entry point ``acme_bad:attr`` of module ``source``."""
    added: list[tuple[str, str]] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def add(kind: str, name: str, attr: str, source: str) -> None:
        (tmp_path / "acme_bad.py").write_text(textwrap.dedent(source))
        sys.modules.pop("acme_bad", None)
        ep = metadata.EntryPoint(name, f"acme_bad:{attr}", registry.KINDS[kind])
        info = registry.PluginInfo(kind, name, "acme-bad-plugins", "0.1", ep.value, ep)
        registry._discover()[kind][name] = info
        added.append((kind, name))

    yield add
    for kind, name in added:
        registry._discover()[kind].pop(name, None)
    sys.modules.pop("acme_bad", None)


def _search(tmp_path, text: str) -> list[str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    return ["search", str(cfg), "--out", str(tmp_path / "run"), *FAST]


def _train(tmp_path, op: str) -> list[str]:
    cfg = tmp_path / "arch.yaml"
    cfg.write_text(ARCH.replace("OP", op))
    return ["train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]


def _mlp(old: str, new: str) -> str:
    text = (SPACES / "mlp.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def _cells(ops: str) -> str:
    text = (SPACES / "cells_digits.yaml").read_text()
    old = "ops: [identity, avg_pool3, max_pool3, sep_conv3, sep_conv5]"
    assert old in text
    return text.replace(old, f"ops: [identity, {ops}]")


# ------------------------------------------------------------------------------------------ ops
class BadBuild(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels):  # forgot the other arguments
        return [nn.Linear(in_channels, in_channels)]


class NoneBuild(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        nn.Linear(in_channels, out_channels)  # forgot to return it


def test_an_op_whose_build_has_the_wrong_signature(tmp_path, capsys, plugin):
    plugin("op", "test_bad_build", BadBuild)
    expected = (
        "op plugin 'test_bad_build' (registered in code as test_plugin_failures:BadBuild) failed "
        "in build(64, 128, 1, 'linear'): TypeError: BadBuild.build() takes 2 positional "
        "arguments but 5 were given; nasframe calls it as build(in_channels, out_channels, "
        f"stride, layout) -> list of torch modules; {ADVICE} (NASFRAME_TRACEBACK=1 shows its "
        "traceback)"
    )
    line = _one_line(_search(tmp_path, _mlp("[linear, identity]", "[test_bad_build]")), capsys)
    assert line == expected.replace("(64, 128", "(256, 256")  # the widest
    assert not (tmp_path / "run" / "arch.yaml").exists()
    line = _one_line(_train(tmp_path, "test_bad_build"), capsys)  # the frozen network
    assert line == expected.replace("(64, 128", "(16, 16")


def test_an_op_whose_build_returns_none(tmp_path, capsys, plugin):
    plugin("op", "test_none_build", NoneBuild)
    line = _one_line(_search(tmp_path, _mlp("[linear, identity]", "[test_none_build]")), capsys)
    assert line == (
        "op plugin 'test_none_build' (registered in code as test_plugin_failures:NoneBuild) "
        "returned None from build(256, 256, 1, 'linear'), not a list of torch modules; "
        f"{ADVICE}"
    )
    line = _one_line(_train(tmp_path, "test_none_build"), capsys)
    assert (
        "op plugin 'test_none_build' (registered in code as test_plugin_failures:NoneBuild)" in line
    )
    assert "returned None from build(16, 16, 1, 'linear')" in line


def test_an_op_whose_build_raises_names_the_plugin_not_the_config(plugin):
    class Raising(Op):
        layouts = ("linear",)

        @classmethod
        def build(cls, in_channels, out_channels, stride, layout):
            return {}["missing"]

    plugin("op", "test_raising_op", Raising)
    from nasframe.op_checks import build_op

    with pytest.raises(PluginFailure) as e:
        build_op(Raising, "test_raising_op", 4, 8, 1, "linear")
    message = str(e.value)
    assert message.startswith("op plugin 'test_raising_op' (registered in code as ")
    assert "failed in build(4, 8, 1, 'linear'): KeyError: 'missing'; " in message
    assert isinstance(e.value.__cause__, KeyError)  # kept for the plugin's authors


def test_an_op_entry_point_that_is_not_an_op_names_its_distribution(tmp_path, capsys, installed):
    installed("op", "test_forty_two", "NUMBER", "NUMBER = 42\n")
    line = _one_line(_search(tmp_path, _mlp("[linear, identity]", "[test_forty_two]")), capsys)
    assert line.endswith(
        "op plugin 'test_forty_two' (entry point 'acme_bad:NUMBER' in group nasframe.ops, "
        "distribution acme-bad-plugins 0.1) is 42, not an Op class with a build() classmethod; "
        "this is a bug in that plugin: report it to its authors, or uninstall acme-bad-plugins"
    )
    assert line.startswith(f"{tmp_path / 'c.yaml'}:")  # at the line that names it


def test_an_op_class_without_build_or_layouts_is_the_plugin_s_fault(plugin):
    from nasframe.op_checks import op_class

    plugin("op", "test_no_build", lambda: None)
    with pytest.raises(PluginFailure, match=r"^op plugin 'test_no_build' \(registered in code"):
        op_class("test_no_build", "linear", "space.stem.op")
    plugin("op", "test_no_layouts", type("NoLayouts", (), {"build": classmethod(lambda c: [])}))
    with pytest.raises(PluginFailure, match=r"has layouts = None, not a tuple of layout names"):
        op_class("test_no_layouts", "linear", "space.stem.op")


# ------------------------------------------------------------------------------------- cell ops
def cell_bad_sig(c):
    return nn.Identity()


def cell_five(c, stride, affine, track):
    return 5


def test_a_cell_op_with_the_wrong_signature(tmp_path, capsys, plugin):
    plugin("cell_op", "test_cell_bad_sig", cell_bad_sig)
    line = _one_line(_search(tmp_path, _cells("test_cell_bad_sig")), capsys)
    assert line.startswith(
        "cell_op plugin 'test_cell_bad_sig' (registered in code as "
        "test_plugin_failures:cell_bad_sig) failed in cell_bad_sig("
    )
    assert (
        "TypeError: cell_bad_sig() takes 1 positional argument but 4 were given; nasframe calls "
        "it as (channels, stride, affine, track_running_stats) -> nn.Module; " + ADVICE
    ) in line


def test_a_cell_op_returning_a_number(tmp_path, capsys, plugin):
    plugin("cell_op", "test_cell_five", cell_five)
    line = _one_line(_search(tmp_path, _cells("test_cell_five")), capsys)
    assert line.startswith(
        "cell_op plugin 'test_cell_five' (registered in code as test_plugin_failures:cell_five) "
        "returned 5 from cell_five("
    )
    assert line.endswith(f"not an nn.Module; {ADVICE}")


# ------------------------------------------------------------------------------------- datasets
def dataset_raising(root=None):
    raise ValueError("the plugin's own bug")


def dataset_dict(root=None):
    return {"x_train": torch.zeros(2, 4)}


def dataset_without_root():
    raise AssertionError("not called: nasframe passes root")


def dataset_of_lists(root=None):
    return Dataset("lists", [[0.0]], [0], [[0.0]], [0], 2)


def _digits_to(name: str) -> str:
    return _mlp("data: {name: digits, valid_fraction: 0.5}", f"data: {{name: {name}}}")


@pytest.mark.parametrize(
    "factory, expected",
    [
        (
            dataset_raising,
            "failed in dataset_raising(root=None): ValueError: the plugin's own bug; " + ADVICE,
        ),
        (
            dataset_dict,
            "returned a dict from dataset_dict(root=None), not a nasframe.Dataset; " + ADVICE,
        ),
        (
            dataset_without_root,
            "failed in dataset_without_root(root=None): TypeError: dataset_without_root() got an "
            "unexpected keyword argument 'root'; nasframe calls it as (root=None, "
            "**data.options) -> nasframe.Dataset; " + ADVICE,
        ),
        (
            dataset_of_lists,
            "returned a Dataset whose x_train is [[0.0]], not a tensor; " + ADVICE,
        ),
    ],
)
def test_a_failing_dataset_plugin_is_named(tmp_path, capsys, plugin, factory, expected):
    plugin("dataset", "test_bad_data", factory)
    line = _one_line(_search(tmp_path, _digits_to("test_bad_data")), capsys)
    origin = f"registered in code as test_plugin_failures:{factory.__name__}"
    assert line.startswith(f"dataset plugin 'test_bad_data' ({origin}) "), line
    assert expected in line
    assert "data.options" not in line.split(";")[0]  # nothing blamed on the user's config


def test_a_dataset_option_the_user_gave_is_still_the_user_s(tmp_path, capsys, plugin):
    def takes_n(root=None, n=2):
        raise AssertionError("not called: the option is refused first")

    plugin("dataset", "test_takes_n", takes_n)
    text = _digits_to("test_takes_n").replace(
        "{name: test_takes_n}", "{name: test_takes_n, options: {m: 3}}"
    )
    line = _one_line(_search(tmp_path, text), capsys)
    assert "data.options.m: unknown option of dataset 'test_takes_n'; it takes n" in line

    def checks_n(root=None, **options):
        if options.get("n", 0) < 0:
            raise ValueError(f"n must be positive, got {options['n']}")
        raise TypeError(f"unexpected option(s) {sorted(options)}")

    plugin("dataset", "test_checks_n", checks_n)
    with pytest.raises(UserError, match=r"^data\.options: n must be positive, got -1$") as e:
        load_dataset(DataConfig(name="test_checks_n", options={"n": -1}))
    assert not isinstance(e.value, PluginFailure)
    with pytest.raises(UserError, match=r"^data\.options: unexpected option\(s\) \['k'\]$"):
        load_dataset(DataConfig(name="test_checks_n", options={"k": 1}))
    with pytest.raises(PluginFailure, match=r"failed in checks_n\(root=None\): TypeError: "):
        load_dataset(DataConfig(name="test_checks_n"))  # no option of the user's named


def test_a_plugin_refusing_with_a_user_error_keeps_its_message(plugin):
    def refusing(root=None):
        raise UserError("data.root: give the folder of the images")

    plugin("dataset", "test_refusing", refusing)
    with pytest.raises(UserError) as e:
        load_dataset(DataConfig(name="test_refusing"))
    assert str(e.value) == "data.root: give the folder of the images"
    assert not isinstance(e.value, PluginFailure)


# ------------------------------------------------------------------------ optimizers, strategies
@pytest.mark.parametrize(
    "kind, field, old, new",
    [
        ("optimizer", "search.optimizer.name", "{name: sgd,", "{name: test_text,"),
        ("strategy", "search.strategy", "search:\n", "search:\n  strategy: test_text\n"),
    ],
)
def test_an_entry_point_that_is_text_names_its_distribution(
    tmp_path, capsys, installed, kind, field, old, new
):
    installed(kind, "test_text", "NAME", "NAME = 'sgd'\n")
    line = _one_line(_search(tmp_path, _mlp(old, new)), capsys)
    assert line.endswith(
        f"{field}: {kind} plugin 'test_text' (entry point 'acme_bad:NAME' in group "
        f"{registry.KINDS[kind]}, distribution acme-bad-plugins 0.1) is 'sgd', not "
        f"{registry.WHAT[kind]}; this is a bug in that plugin: report it to its authors, or "
        "uninstall acme-bad-plugins"
    ), line


def test_an_optimizer_plugin_that_fails_or_returns_no_optimizer(tmp_path, capsys, plugin):
    def crashing(params, lr=0.1, momentum=0.0, weight_decay=0.0):
        raise RuntimeError("CUDA kernel missing")

    def nothing(params, lr=0.1, momentum=0.0, weight_decay=0.0):
        return None

    def refusing(params, lr=0.1, momentum=0.0, weight_decay=0.0):
        raise ValueError(f"momentum {momentum} is out of range")

    plugin("optimizer", "test_crashing", crashing)
    text = _mlp("{name: sgd,", "{name: test_crashing,")
    line = _one_line(_search(tmp_path, text), capsys)
    assert line.startswith("optimizer plugin 'test_crashing' (registered in code as ")
    assert ": RuntimeError: CUDA kernel missing; " + ADVICE in line
    plugin("optimizer", "test_nothing", nothing)
    text = _mlp("{name: sgd,", "{name: test_nothing,")
    line = _one_line(_search(tmp_path, text), capsys)
    assert "returned None from test_nothing(" in line and "not a torch.optim.Optimizer" in line
    plugin("optimizer", "test_refusing_opt", refusing)  # an error naming the user's option
    text = _mlp("{name: sgd,", "{name: test_refusing_opt,")
    line = _one_line(_search(tmp_path, text), capsys)
    assert "search.optimizer.momentum: optimizer 'test_refusing_opt': momentum 0.9 is out" in line


class CrashingStrategy:
    def __init__(self, categories, *, lam, seed, alpha=1.0):
        if alpha < 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.counts = [0] * len(categories)
        self.counts[len(categories)]  # an off-by-one


class NoLamStrategy:
    def __init__(self, categories, seed=0):
        pass


def test_a_strategy_plugin_that_fails_is_named(tmp_path, capsys, plugin):
    plugin("strategy", "test_crashing", CrashingStrategy)
    plugin("strategy", "test_no_lam", NoLamStrategy)
    search = "search:\n  strategy: test_crashing\n"
    line = _one_line(_search(tmp_path, _mlp("search:\n", search)), capsys)
    assert line.startswith(
        "strategy plugin 'test_crashing' (registered in code as "
        "test_plugin_failures:CrashingStrategy) failed in CrashingStrategy("
    )
    assert "IndexError: list index out of range; " + ADVICE in line
    text = _mlp("search:\n", search + "  strategy_options: {alpha: -1}\n")
    line = _one_line(_search(tmp_path, text), capsys)  # the user's option, named by the plugin
    assert line.endswith("search.strategy_options: alpha must be positive, got -1")
    line = _one_line(
        _search(tmp_path, _mlp("search:\n", "search:\n  strategy: test_no_lam\n")), capsys
    )
    assert "TypeError: NoLamStrategy.__init__() got an unexpected keyword argument 'lam'" in line
    assert "nasframe calls it as (categories, *, lam, seed, **search.strategy_options)" in line


# ----------------------------------------------------------------- an installed plugin, for real
BAD_OPS = """
from torch import nn
from nasframe import Op


class BadBuild(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels):
        return [nn.Linear(in_channels, in_channels)]
"""


@pytest.fixture
def distribution(tmp_path):
    """A distribution 'acme-bad-ops 2.0' on PYTHONPATH, with an op whose build is wrong."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_bad_ops.py").write_text(BAD_OPS)
    dist = site / "acme_bad_ops-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-bad-ops\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[nasframe.ops]\nbad_build = acme_bad_ops:BadBuild\n")
    return {"PYTHONPATH": str(site)}


def test_an_installed_plugin_s_failure_names_its_entry_point_and_distribution(
    tmp_path, distribution
):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_mlp("[linear, identity]", "[bad_build]"))
    res = run_cli("search", str(cfg), "--out", str(tmp_path / "run"), *FAST, env=distribution)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "op plugin 'bad_build' (entry point 'acme_bad_ops:BadBuild' in group nasframe.ops, "
        "distribution acme-bad-ops 2.0) failed in build(256, 256, 1, 'linear'): TypeError: "
        "BadBuild.build() takes 2 positional arguments but 5 were given; nasframe calls it as "
        "build(in_channels, out_channels, stride, layout) -> list of torch modules; this is a "
        "bug in that plugin: report it to its authors, or uninstall acme-bad-ops "
        "(NASFRAME_TRACEBACK=1 shows its traceback)"
    ]


# ----------------------------------------------------------------------------- NASFRAME_TRACEBACK
def test_the_plugin_s_traceback_is_kept_for_its_authors(monkeypatch, plugin):
    plugin("dataset", "test_raising_data", dataset_raising)
    with pytest.raises(PluginFailure) as e:
        load_dataset(DataConfig(name="test_raising_data"))
    assert isinstance(e.value.__cause__, ValueError)
    assert cause_traceback(e.value) == ""  # not asked for
    monkeypatch.setenv("NASFRAME_TRACEBACK", "1")
    shown = cause_traceback(e.value)
    assert shown.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("the plugin\'s own bug")' in shown
    assert shown.rstrip().endswith("ValueError: the plugin's own bug")
    with pytest.raises(PluginFailure) as e:  # no hint about the variable once it is set
        load_dataset(DataConfig(name="test_raising_data"))
    assert "NASFRAME_TRACEBACK" not in str(e.value)


def test_nasframe_traceback_prints_the_plugin_s_traceback_above_the_line(
    tmp_path, capsys, monkeypatch, plugin
):
    plugin("dataset", "test_raising_data", dataset_raising)
    monkeypatch.setenv("NASFRAME_TRACEBACK", "1")
    assert main(_search(tmp_path, _digits_to("test_raising_data"))) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in dataset_raising" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dataset plugin 'test_raising_data' (registered in code as ")


# ------------------------------------------------------------- the user's, not the plugin's
def test_a_malformed_theta_for_asng_is_the_user_s_option(tmp_path, capsys):
    text = _mlp("search:\n", "search:\n  strategy_options: {theta_int: [1, 2, 3]}\n")
    line = _one_line(_search(tmp_path, text), capsys)
    assert "search.strategy_options: cannot reshape array of size 3" in line
    assert "bug" not in line


def test_torch_s_own_refusal_of_an_option_combination_is_the_user_s(tmp_path, capsys):
    opt = "{name: sgd, nesterov: true, dampening: 0.5,"
    line = _one_line(_search(tmp_path, _mlp("{name: sgd,", opt)), capsys)
    assert "optimizer 'sgd': Nesterov momentum requires a momentum and zero dampening" in line
    assert "bug" not in line


def test_fused_with_foreach_is_refused_by_the_run_and_by_validate(tmp_path, capsys):
    """torch refuses it only once given parameters: validate without --data said ok."""
    opt = "{name: sgd, fused: true, foreach: true,"
    args = _search(tmp_path, _mlp("{name: sgd,", opt))
    cfg = args[1]
    line = _one_line(args, capsys)
    expected = (
        "search.optimizer.fused: cannot be true together with foreach: true (a step is fused or "
        "multi-tensor, not both); remove one"
    )
    assert line.startswith(f"{cfg}:") and line.endswith(expected), line
    assert _one_line(["validate", cfg], capsys) == line


def test_fused_alone_is_not_combined_with_foreach():
    from nasframe.config import OptimizerConfig
    from nasframe.optim import build_optimizer

    cfg = OptimizerConfig(name="sgd", lr=0.1, fused=True)
    opt = build_optimizer([nn.Parameter(torch.zeros(2))], cfg, "search.optimizer")
    assert opt.defaults["fused"] is True and not opt.defaults["foreach"]


class _GrowthPlugin:
    """A growth strategy whose controller refuses a setting, or crashes on its own bug."""

    crash = False

    @classmethod
    def controller(cls, model, *, every, steps, start_fraction, layers, options):
        if cls.crash:
            return len(5)  # the plugin's bug
        raise ValueError(f"steps must be at most 2 here, got {steps}")


def _growing_arch(tmp_path, growth: str):
    """A linear arch.yaml whose training grows as ``growth`` (a YAML mapping) says."""
    cfg = tmp_path / "arch.yaml"
    cfg.write_text(
        ARCH.replace("OP", "linear").replace(
            "  batch_size: 64\n", f"  batch_size: 64\n  growth: {growth}\n"
        )
    )
    return cfg


@pytest.mark.parametrize("crash", [False, True], ids=["refusal", "crash"])
def test_a_growth_plugin_s_refusal_is_the_user_s_and_its_crash_its_own(
    tmp_path, capsys, plugin, monkeypatch, crash
):
    monkeypatch.setattr(_GrowthPlugin, "crash", crash)
    plugin("growth", "test_growth", _GrowthPlugin)
    cfg = _growing_arch(tmp_path, "{strategy: test_growth, every: 1, steps: 3}")
    line = _one_line(["train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    if crash:
        assert line.startswith("growth plugin 'test_growth' (registered in code as ")
        assert "TypeError: object of type 'int' has no len()" in line and ADVICE in line
    else:
        assert line.endswith("train.growth: steps must be at most 2 here, got 3")


def test_nasframe_traceback_prints_the_cause_for_validate_too(
    tmp_path, capsys, plugin, monkeypatch
):
    plugin("dataset", "test_raising_data", dataset_raising)
    monkeypatch.setenv("NASFRAME_TRACEBACK", "1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_digits_to("test_raising_data"))
    assert main(["validate", "--data", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in dataset_raising" in err


def test_fused_sgd_with_momentum_is_refused_for_a_supernet(tmp_path, capsys):
    # torch's fused SGD fails once an option is first sampled after its first step
    line = _one_line(_search(tmp_path, _mlp("{name: sgd,", "{name: sgd, fused: true,")), capsys)
    assert line.endswith(
        "search.optimizer.fused: torch's fused SGD with momentum fails on a "
        "supernet (options first sampled after its first step have no momentum "
        "buffer); remove fused: the search already takes multi-tensor (foreach) steps"
    )
    assert not (tmp_path / "run").exists()


def _last_line(args: list[str], capsys) -> str:
    """The last line of stderr of a command that failed once it ran (exit status 2, no
    traceback), after the run's first lines."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


# A strategy plugin (an ASNG subclass, as a user would write one) that fails once the search runs.
class UpdateCrashes(ASNG):
    def update(self, samples, losses):
        raise KeyError("oops")


class UpdateTakesOneArgument(ASNG):
    def update(self, samples):  # nasframe calls update(samples, losses)
        pass


class SamplesTooFewChoices(ASNG):
    def sample(self, n=1):
        return super().sample(n)[:, :-1]


class SamplesFloats(ASNG):
    def sample(self, n=1):
        return super().sample(n) + 0.5


class SamplesBeyondTheOptions(ASNG):
    def sample(self, n=1):
        x = super().sample(n)
        x[:, 0] = 99
        return x


class MleCrashes(ASNG):
    def mle(self):
        raise ValueError("no idea")


class StepCrashes(torch.optim.SGD):
    def step(self, closure=None):
        raise RuntimeError("step went wrong")


@pytest.mark.parametrize(
    "cls, said",
    [
        (UpdateCrashes, "failed in update(a NumPy array, a list): KeyError: 'oops'; this"),
        (
            UpdateTakesOneArgument,
            "failed in update(a NumPy array, a list): TypeError: UpdateTakesOneArgument.update() "
            "takes 2 positional arguments but 3 were given; nasframe calls it as "
            "update(samples, losses); this",
        ),
        (
            SamplesTooFewChoices,
            "returned an array of shape (2, 4) and type int64 from sample, not integers of shape "
            "(2, 5) (an option index per choice); this",
        ),
        (SamplesFloats, "returned an array of shape (2, 5) and type float64 from sample, not"),
        (SamplesBeyondTheOptions, "returned option 99 for choice 0 from sample, which has"),
        (MleCrashes, "failed in mle(): ValueError: no idea; this"),
    ],
)
def test_a_strategy_plugin_that_fails_while_the_search_runs_is_named(
    tmp_path, capsys, plugin, cls, said
):
    plugin("strategy", "test_runtime", cls)
    text = _mlp("search:\n", "search:\n  strategy: test_runtime\n")
    line = _last_line(_search(tmp_path, text), capsys)
    assert line.startswith(
        "strategy plugin 'test_runtime' (registered in code as "
        f"test_plugin_failures:{cls.__name__}) {said}"
    ), line
    assert ADVICE in line


def test_an_optimizer_plugin_whose_step_raises_is_named(tmp_path, capsys, plugin):
    plugin("optimizer", "test_step_crash", StepCrashes)
    text = _mlp(
        "optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}",
        "optimizer: {name: test_step_crash, lr: 0.1}",
    )
    line = _last_line(_search(tmp_path, text), capsys)
    assert line.startswith(
        "optimizer plugin 'test_step_crash' (registered in code as "
        "test_plugin_failures:StepCrashes) failed in step: RuntimeError: step went wrong; this"
    ), line


def test_nasframes_own_bug_still_shows_its_traceback(tmp_path, monkeypatch):
    from nasframe import search

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug of nasframe's own")

    monkeypatch.setattr(search._SearchRun, "_update_strategy", broken)
    text = (SPACES / "mlp.yaml").read_text()
    with pytest.raises(ZeroDivisionError):
        main(_search(tmp_path, text))


class _PackagedOp(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [nn.Linear(in_channels, out_channels)]


def test_a_failure_names_the_plugin_whose_code_raised_it_among_a_packages_plugins(
    tmp_path, capsys, plugin
):
    """Two plugins of one package (this test module): an optimizer's step raising is the
    optimizer's, though the op of the same package was loaded first."""
    plugin("op", "test_packaged_op", _PackagedOp)
    registry.get("op", "test_packaged_op")
    plugin("optimizer", "test_step_crash2", StepCrashes)
    text = _mlp(
        "optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 3.0e-4}",
        "optimizer: {name: test_step_crash2, lr: 0.1}",
    )
    line = _last_line(_search(tmp_path, text), capsys)
    assert line.startswith("optimizer plugin 'test_step_crash2' "), line
    assert "failed in step: RuntimeError: step went wrong" in line


class SamplesRagged(ASNG):
    def sample(self, n=1):
        return [[0, 1], [0]]


def test_a_strategy_plugin_returning_ragged_samples_is_named(tmp_path, capsys, plugin):
    plugin("strategy", "test_ragged", SamplesRagged)
    text = _mlp("search:\n", "search:\n  strategy: test_ragged\n")
    line = _last_line(_search(tmp_path, text), capsys)
    assert line.startswith("strategy plugin 'test_ragged' "), line
    assert "returned [[0, 1], [0]] from sample, which is no array of option indices" in line


def test_a_checked_strategy_copies_pickles_and_sets_through(plugin):
    import copy
    import pickle

    import numpy as np

    from nasframe.checked_strategy import CheckedStrategy, unchecked

    plugin("strategy", "test_subclass", UpdateCrashes)
    wrapped = CheckedStrategy(UpdateCrashes([3, 4], seed=1), "test_subclass", [3, 4])
    for make in (copy.copy, copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))):
        expected = copy.deepcopy(wrapped).sample(3)
        assert np.array_equal(make(wrapped).sample(3), expected)
    theta = np.full_like(wrapped.theta, 0.0)
    theta[:, 0] = 1.0
    wrapped.theta = theta  # set through, to the plugin's own
    assert unchecked(wrapped).theta is theta and not hasattr(wrapped, "_missing")


def _tensors(**changes):
    """A 2-class dataset of 8 samples of 3 floats, with ``changes`` to its tensors."""
    parts = {
        "x_train": torch.randn(8, 3),
        "y_train": torch.tensor([0, 1] * 4),
        "x_test": torch.randn(4, 3),
        "y_test": torch.tensor([1, 0] * 2),
    }
    parts.update(changes)
    return Dataset("t", parts["x_train"], parts["y_train"], parts["x_test"], parts["y_test"], 2)


@pytest.mark.parametrize(
    "changes, said",
    [
        (
            {"x_train": torch.zeros(8, 3, dtype=torch.uint8)},
            "x_train holds torch.uint8, not floats",
        ),
        ({"y_train": torch.zeros(8)}, "y_train holds torch.float32, not integer class labels"),
        ({"y_train": torch.zeros(8, 1, dtype=torch.long)}, "y_train has shape (8, 1), not (8,)"),
        ({"y_test": torch.tensor([0, 1, 2, 0])}, "y_test holds the label 2, outside 0..1"),
        ({"x_test": torch.randn(4, 5)}, "test samples have shape (5,), the training samples (3,)"),
    ],
)
def test_a_dataset_plugins_tensors_no_run_could_train_on_are_its_failure(plugin, changes, said):
    plugin("dataset", "test_tensors", lambda root=None: _tensors(**changes))
    with pytest.raises(PluginFailure) as e:
        load_dataset(DataConfig(name="test_tensors"))
    assert f"returned a Dataset whose {said}" in str(e.value)


def test_a_dataset_plugins_other_float_and_integer_types_are_converted(plugin):
    data = _tensors(
        x_train=torch.randn(8, 3, dtype=torch.float64),
        y_test=torch.tensor([1, 0] * 2, dtype=torch.int32),
    )
    plugin("dataset", "test_float64", lambda root=None: data)
    loaded = load_dataset(DataConfig(name="test_float64"))
    assert loaded.x_train.dtype == torch.float32 and loaded.y_test.dtype == torch.int64


class _Explodes(nn.Module):
    def forward(self, x):
        raise RuntimeError("helper exploded")


class ExplodingOp(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [_Explodes()]


def test_a_helper_of_a_package_of_several_plugins_names_the_package(tmp_path, capsys, plugin):
    """The forward of a module an op builds is no plugin's own code; in a package of one plugin
    that one is named, in a package of several the package and its plugins are."""
    plugin("op", "test_explode", ExplodingOp)
    plugin("op", "test_packaged_op", _PackagedOp)
    registry.get("op", "test_packaged_op")
    text = _mlp("op: {choices: [linear, identity]}", "op: {choices: [test_explode, identity]}")
    line = _last_line(_search(tmp_path, text), capsys)
    assert line.startswith(
        "code of package test_plugin_failures (which provides the plugins op 'test_explode', "
        "op 'test_packaged_op') failed in forward: RuntimeError: helper exploded; this is a bug"
    ), line


class EvenLamOnly(ASNG):
    def __init__(self, categories, *, lam, seed):
        if lam % 2:
            raise ValueError(f"lam must be even, got {lam}")
        super().__init__(categories, lam=lam, seed=seed)


class SamplesTensors(ASNG):
    def sample(self, n=1):
        return torch.as_tensor(super().sample(n))


class SamplesGradTensors(ASNG):
    def sample(self, n=1):
        return torch.as_tensor(super().sample(n), dtype=torch.float32).requires_grad_()


def test_a_strategy_refusing_the_users_lam_is_located_there(tmp_path, capsys, plugin):
    plugin("strategy", "test_even", EvenLamOnly)
    text = _mlp("search:\n", "search:\n  strategy: test_even\n  lam: 3\n")
    line = _last_line(_search(tmp_path, text), capsys)
    assert line.endswith("search.lam: strategy 'test_even': lam must be even, got 3"), line


def test_tensor_samples_are_taken_and_float_ones_refused(tmp_path, capsys, plugin):
    plugin("strategy", "test_tensors", SamplesTensors)
    assert main(_search(tmp_path, _mlp("search:\n", "search:\n  strategy: test_tensors\n"))) == 0
    capsys.readouterr()
    plugin("strategy", "test_grad", SamplesGradTensors)
    text = _mlp("search:\n", "search:\n  strategy: test_grad\n")
    (tmp_path / "g").mkdir()
    line = _last_line(_search(tmp_path / "g", text), capsys)
    assert "returned an array of shape (2, 5) and type float32 from sample" in line, line


def test_a_growth_plugin_that_grows_nan_weights_is_named_not_the_learning_rate(
    tmp_path, capsys, plugin
):
    """The next step's loss was NaN and the message said to try a smaller train.optimizer.lr."""
    from nasframe_growth import RandomGrowth

    class NaNGrowth(RandomGrowth):
        name = "test_nan_growth"

        def outgoing(self, ctx):
            return torch.full_like(ctx.random_outgoing(), float("nan"))

    plugin("growth", "test_nan_growth", NaNGrowth)
    cfg = _growing_arch(tmp_path, "{strategy: test_nan_growth, every: 2, steps: 1}")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "smaller" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("growth plugin 'test_nan_growth' (registered in code as "), line
    assert "grew weights that hold NaN or infinity (" in line and ") at step 2; " in line, line
