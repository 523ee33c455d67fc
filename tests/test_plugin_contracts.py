"""Plugins that load and run but break their contract in ways nothing else notices until much
later: an op whose modules do not output ``out_channels`` channels (the supernet slices the next
op's weights to what it gets, so a search runs on; `nasframe train` then crashed with a torch
traceback), a cell op that changes its channels, and a strategy whose ``state_dict()`` holds types
``torch.load(weights_only=True)`` refuses (every checkpoint written, every ``--resume`` refused).
Each is the plugin's bug, in one line naming it, before anything relies on it."""

from __future__ import annotations

import collections
import io

import numpy as np
import pytest
import torch
import yaml
from conftest import SPACES
from torch import nn

from nasframe import ASNG, Op, RandomSearch, SearchSpace, load_config, registry
from nasframe.checkpoint import load_checkpoint
from nasframe.cli import main
from nasframe.config import OptimizerConfig
from nasframe.op_checks import _OUTPUT_CHECKED, build_op, check_cell_op, trial_output
from nasframe.optim import build_optimizer, build_schedule
from nasframe.registry import PluginFailure
from nasframe.runstate import RunState, unloadable

ADVICE = "this is a bug in that plugin: fix it, or report it to its authors"
FAST = ["--set", "search.epochs=1", "--quiet"]


def _one_line(args: list[str], capsys) -> str:
    """The one line of stderr of a refused command (exit status 2, no traceback)."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _config(tmp_path, space: str, old: str, new: str) -> str:
    text = (SPACES / space).read_text()
    assert old in text
    path = tmp_path / "c.yaml"
    path.write_text(text.replace(old, new))
    return str(path)


# ------------------------------------------------------------------------- ops: output channels
class IgnoresOutChannels(Op):
    """walk14's op: a convolution from in_channels to in_channels, unpadded."""

    layouts = ("conv1d", "conv2d")

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        conv = nn.Conv1d if layout == "conv1d" else nn.Conv2d
        return [conv(in_channels, in_channels, 3, stride=stride)]


class LinearIgnoresOut(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [nn.Linear(in_channels, in_channels), nn.ReLU()]


def test_an_op_ignoring_out_channels_is_refused_by_search_validate_and_train(
    tmp_path, capsys, plugin
):
    plugin("op", "test_bad_out", IgnoresOutChannels)
    origin = "registered in code as test_plugin_contracts:IgnoresOutChannels"
    expected = (
        f"op plugin 'test_bad_out' ({origin}) returned from build(1, 16, 1, 'conv2d') modules "
        f"whose output has 1 channel, not 16; {ADVICE}"
    )
    cfg = _config(tmp_path, "digits.yaml", "stem: {op: conv3,", "stem: {op: test_bad_out,")
    run = tmp_path / "run"
    assert _one_line(["search", cfg, "--out", str(run), *FAST], capsys) == expected
    assert not (run / "checkpoint.pt").exists() and not (run / "arch.yaml").exists()
    assert _one_line(["validate", "--data", cfg], capsys) == f"{cfg}: {expected}"
    arch = tmp_path / "arch.yaml"  # a fixed architecture: the frozen network of `train`
    text = (SPACES / "digits.yaml").read_text()
    for old, new in [
        ("- name: s1\n", "- name: s1\n      transition: test_bad_out\n"),
        ("depth: {choices: [1, 2]}", "depth: 1"),
        ("width: {choices: [8, 16]}", "width: 8"),
        ("width: {choices: [16, 32]}", "width: 16"),
        ("op: {choices: [conv3, sep_conv3, max_pool3, identity]}", "op: conv3"),
        ("op: {choices: [conv3, sep_conv3, identity]}", "op: conv3"),
    ]:
        assert old in text
        text = text.replace(old, new)
    arch.write_text(text)
    line = _one_line(["train", str(arch), "--out", str(tmp_path / "t"), "--quiet"], capsys)
    assert line == expected.replace("build(1, 16, 1,", "build(16, 8, 1,").replace(
        "1 channel, not 16", "16 channels, not 8"
    )


def test_an_op_ignoring_out_channels_in_the_linear_layout(plugin):
    plugin("op", "test_lin_out", LinearIgnoresOut)
    with pytest.raises(PluginFailure) as e:
        build_op(LinearIgnoresOut, "test_lin_out", 64, 128, 1, "linear")
    assert str(e.value) == (
        "op plugin 'test_lin_out' (registered in code as test_plugin_contracts:LinearIgnoresOut) "
        "returned from build(64, 128, 1, 'linear') modules whose output has 64 channels, not 128; "
        f"{ADVICE}"
    )
    build_op(LinearIgnoresOut, "test_lin_out", 32, 32, 1, "linear")  # right where in == out


def test_an_op_that_changes_the_layout_is_refused(plugin):
    class Flattens(Op):
        layouts = ("conv2d",)

        @classmethod
        def build(cls, in_channels, out_channels, stride, layout):
            return [nn.Conv2d(in_channels, out_channels, 1), nn.Flatten()]

    plugin("op", "test_flattens", Flattens)
    with pytest.raises(PluginFailure, match=r"returned from build\(3, 5, 1, 'conv2d'\) modules "):
        build_op(Flattens, "test_flattens", 3, 5, 1, "conv2d")
    with pytest.raises(PluginFailure) as e:
        build_op(Flattens, "test_flattens", 3, 5, 1, "conv2d")  # the cached verdict, again
    assert "that turn an input shaped (1, 3, 2, 2) into (1, 20), not (N, C, H, W)" in str(e.value)


def test_every_built_in_op_passes_and_is_really_checked():
    for name in registry.names("op"):
        info = registry._discover()["op"][name]
        if info.source != "nasframe":
            continue
        cls = registry.get("op", name)
        for layout in cls.layouts:
            for stride in (1, 2) if layout != "linear" else (1,):
                c_in, c_out = (6, 6) if cls.channel_preserving else (3, 5)
                modules = build_op(cls, name, c_in, c_out, stride, layout)
                shape = (1, c_in, *(2 * stride,) * {"linear": 0, "conv1d": 1, "conv2d": 2}[layout])
                y = trial_output(nn.Sequential(*modules), shape)
                assert isinstance(y, torch.Tensor), (name, layout, stride)  # run, not skipped
                assert y.shape[1] == c_out, (name, layout, stride)
                if stride == 2:  # an input of side 4 comes out at side 2
                    assert all(n == 2 for n in y.shape[2:]), (name, layout)


def test_an_op_ignoring_stride_is_refused(plugin):
    """An op that keeps the resolution at stride 2 made a strided stage reduce nothing, silently
    (the built-in identity did, until it subsampled)."""

    class IgnoresStride(Op):
        layouts = ("conv1d", "conv2d")

        @classmethod
        def build(cls, in_channels, out_channels, stride, layout):
            conv = nn.Conv1d if layout == "conv1d" else nn.Conv2d
            return [conv(in_channels, out_channels, 3, padding=1)]

    plugin("op", "test_no_stride", IgnoresStride)
    build_op(IgnoresStride, "test_no_stride", 3, 5, 1, "conv1d")  # right at stride 1
    with pytest.raises(PluginFailure) as e:
        build_op(IgnoresStride, "test_no_stride", 3, 5, 2, "conv1d")
    assert (
        "returned from build(3, 5, 2, 'conv1d') modules that ignore stride 2: an input shaped "
        "(1, 3, 4) comes out as (1, 5, 4), no smaller; " + ADVICE
    ) in str(e.value)


def test_the_check_runs_once_per_signature_and_leaves_modules_and_rng_alone(monkeypatch):
    import nasframe.op_checks as op_checks

    calls = []
    real = op_checks._output_problem

    def counting(*args):
        calls.append(args[1:])
        return real(*args)

    monkeypatch.setattr(op_checks, "_output_problem", counting)

    class WithDropout(Op):
        layouts = ("conv2d",)

        @classmethod
        def build(cls, in_channels, out_channels, stride, layout):
            return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                    nn.Dropout(0.5)]  # fmt: skip

    _OUTPUT_CHECKED.pop((WithDropout, 3, 7, 1, "conv2d"), None)
    torch.manual_seed(0)
    modules = build_op(WithDropout, "with_dropout", 3, 7, 1, "conv2d")
    after_build = torch.get_rng_state()
    torch.manual_seed(0)
    plain = WithDropout.build(3, 7, 1, "conv2d")
    assert torch.equal(after_build, torch.get_rng_state())  # the check drew no random number
    assert all(
        torch.equal(a, b)
        for a, b in zip(modules[0].parameters(), plain[0].parameters(), strict=True)
    )
    bn = modules[1]
    assert bn.training and modules[2].training  # modes restored
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(7))
    for _ in range(3):
        build_op(WithDropout, "with_dropout", 3, 7, 1, "conv2d")
    build_op(WithDropout, "with_dropout", 3, 9, 1, "conv2d")
    assert calls == [(3, 7, 1, "conv2d"), (3, 9, 1, "conv2d")]


def test_an_op_that_cannot_run_on_the_small_input_is_left_unchecked(plugin):
    class Picky(nn.Module):
        def forward(self, x):
            raise RuntimeError("only on real data")

    class PickyOp(Op):
        layouts = ("conv2d",)

        @classmethod
        def build(cls, in_channels, out_channels, stride, layout):
            return [nn.Conv2d(in_channels, out_channels, 1), Picky()]

    assert len(build_op(PickyOp, "test_picky", 3, 5, 1, "conv2d")) == 2


def test_ops_built_on_the_meta_device_are_not_checked_there():
    with torch.device("meta"):
        modules = build_op(IgnoresOutChannels, "test_bad_out", 4, 8, 1, "conv2d")
    assert modules[0].weight.device.type == "meta"
    assert (IgnoresOutChannels, 4, 8, 1, "conv2d") not in _OUTPUT_CHECKED  # left to a real build


# ------------------------------------------------------------------- cell ops: the same contract
def test_check_cell_op_refuses_a_cell_op_that_changes_channels_or_ignores_stride(plugin):
    def halves(c, stride, affine, track):
        return nn.Conv2d(c, c // 2, 3, stride=stride, padding=1)

    def no_stride(c, stride, affine, track):
        return nn.Conv2d(c, c, 3, padding=1)

    plugin("cell_op", "test_halves", halves)
    plugin("cell_op", "test_no_stride", no_stride)
    with pytest.raises(PluginFailure) as e:
        check_cell_op("test_halves", halves(6, 1, True, True), 6, 1)
    assert str(e.value) == (
        "cell_op plugin 'test_halves' (registered in code as test_plugin_contracts:"
        "test_check_cell_op_refuses_a_cell_op_that_changes_channels_or_ignores_stride.<locals>."
        "halves) returned from test_halves(6, 1, ...) a module that turns an input shaped "
        f"(1, 6, 8, 8) into (1, 3, 8, 8), not (1, 6, 8, 8); {ADVICE}"
    )
    check_cell_op("test_no_stride", no_stride(6, 1, True, True), 6, 1)  # right at stride 1
    with pytest.raises(PluginFailure, match=r"into \(1, 6, 8, 8\), not \(1, 6, 4, 4\)"):
        check_cell_op("test_no_stride", no_stride(6, 2, True, True), 6, 2)


def test_every_built_in_cell_op_keeps_the_contract():
    from nasframe.cell_ops import build_cell_op

    for name in registry.names("cell_op"):
        if registry._discover()["cell_op"][name].source != "nasframe":
            continue
        for stride in (1, 2):
            module = build_cell_op(name, 6, stride, False, False)
            y = trial_output(module, (1, 6, 8, 8))
            assert isinstance(y, torch.Tensor) and y.shape == (1, 6, 8 // stride, 8 // stride)
            check_cell_op(name, module, 6, stride)


# --------------------------------------------------------------- strategies: a resumable state
class NumpyState(ASNG):
    """walk14's strategy: a numpy array in its state."""

    def state_dict(self) -> dict:
        return {**super().state_dict(), "extra": np.arange(3)}


class LaterNumpy(ASNG):
    """Fine at first; a numpy number in its state once it has been updated."""

    best = None

    def update(self, samples, losses):
        super().update(samples, losses)
        self.best = np.float64(min(losses))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best": [1.0, self.best]}


class CrashingState(ASNG):
    def state_dict(self) -> dict:
        raise KeyError("theta_old")


def test_a_strategy_whose_state_holds_numpy_is_refused_before_any_checkpoint(
    tmp_path, capsys, plugin
):
    plugin("strategy", "test_np_state", NumpyState)
    cfg = _config(tmp_path, "mlp.yaml", "search:\n", "search:\n  strategy: test_np_state\n")
    run = tmp_path / "run"
    line = _one_line(["search", cfg, "--out", str(run), *FAST], capsys)
    assert line == (
        "strategy plugin 'test_np_state' (registered in code as test_plugin_contracts:NumpyState) "
        "returned from NumpyState.state_dict() a numpy.ndarray at 'extra', which "
        "torch.load(weights_only=True) refuses, so that no checkpoint of this run could be "
        "resumed (a state_dict() may hold tensors, numbers, strings, None, and lists, tuples and "
        f"dicts of them); {ADVICE}"
    )
    assert not (run / "checkpoint.pt").exists()


def _run_state(tmp_path, strategy) -> RunState:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return RunState("search", "hash", tmp_path, model=model, optimizer=optimizer, strategy=strategy)


def test_a_state_that_goes_bad_later_is_refused_before_it_overwrites_a_good_checkpoint(
    tmp_path, plugin
):
    plugin("strategy", "test_later_np", LaterNumpy)
    strategy = LaterNumpy([2, 3], lam=2, seed=0)
    state = _run_state(tmp_path, strategy)
    state.start(torch.device("cpu"), resume=False)  # [1.0, None]: fine
    state.save()
    samples = strategy.sample(2)
    strategy.update(samples, [0.5, 0.25])
    with pytest.raises(PluginFailure) as e:
        state.save()
    assert "returned from LaterNumpy.state_dict() a numpy.float64 at 'best[1]', which " in str(
        e.value
    )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["strategy"]["best"] == [1.0, None]


def test_a_state_dict_that_raises_is_the_plugin_s_bug(tmp_path, plugin):
    plugin("strategy", "test_crash_state", CrashingState)
    state = _run_state(tmp_path, CrashingState([2, 3], lam=2, seed=0))
    with pytest.raises(PluginFailure) as e:
        state.start(torch.device("cpu"), resume=False)
    assert "failed in CrashingState.state_dict(): KeyError: 'theta_old'; " + ADVICE in str(e.value)


def test_a_plugin_class_with_no_registered_name_is_still_named(tmp_path):
    class Handmade(ASNG):  # made by a plugin's function, or passed in from Python
        def state_dict(self) -> dict:
            return {"rng": np.random.default_rng(0)}

    state = _run_state(tmp_path, Handmade([2], lam=2, seed=0))
    with pytest.raises(PluginFailure) as e:
        state.start(torch.device("cpu"), resume=False)
    message = str(e.value)
    assert message.startswith("strategy ")
    assert "Handmade (from test_plugin_contracts) returned from " in message
    assert "a numpy.random._generator.Generator at 'rng'" in message
    assert message.endswith("this is a bug in the plugin that made it")


def test_nasframe_s_own_parts_are_not_walked(tmp_path, monkeypatch):
    import nasframe.runstate as runstate

    walked = []
    monkeypatch.setattr(runstate, "unloadable", lambda state, *a: walked.append(state))
    state = _run_state(tmp_path, ASNG([2, 3], lam=2, seed=0))
    state.start(torch.device("cpu"), resume=False)
    state.save()
    assert walked == []


@pytest.mark.parametrize(
    "state, found",
    [
        ({"theta": [1.0, 2.0, np.float64(3.0)]}, ("theta[2]", "refuses")),
        ({"a": {"b": (1, np.int64(2))}}, ("a.b[1]", "refuses")),
        ({"counts": {np.int64(1): 2}}, ("counts[np.int64(1)]", "as a key, which")),
        ({3: {"x": frozenset([1])}}, ("[3].x", "refuses")),
        ({"f": lambda: 1}, ("f", "which torch.save cannot write (")),
        (np.zeros(2), ("", "refuses")),
    ],
)
def test_unloadable_names_the_key_path_of_the_first_bad_value(state, found):
    where, _, why = unloadable(state)
    assert where == found[0]
    assert found[1] in why


def test_what_weights_only_reads_is_accepted():
    plain = {
        "t": torch.zeros(2),
        "p": nn.Parameter(torch.ones(1)),
        "n": [1, 2.5, True, None, "s", b"b", 1j],
        "shape": torch.Size([2, 3]),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
        "od": collections.OrderedDict(a=(1, 2)),
        "set": {1, 2},
        1: {(1, 2): 3},
    }
    assert unloadable(plain) is None


def test_nasframe_s_own_parts_save_what_the_walk_accepts():
    """The walk agrees with torch on what nasframe's own parts save (so a plugin subclassing
    them is never refused for their part of the state)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    parts = [
        ASNG([2, 3, 4], lam=2, seed=0, ordinal=[2]),
        RandomSearch([2, 3], lam=2, seed=0),
        model,
    ]
    for name in ("sgd", "adam", "sgd_gc", "adam_gc"):
        cfg = OptimizerConfig(name=name, lr=0.1)
        opt = build_optimizer(model.parameters(), cfg, "train.optimizer")
        model(torch.rand(2, 1, 5, 5)).sum().backward()
        opt.step()
        parts += [opt, build_schedule(opt, cfg, 10)]
    for part in parts:
        state = part.state_dict()
        assert unloadable(state) is None, type(part)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)


def _halves(c, stride, affine, track):
    return nn.Conv2d(c, c // 2, 3, stride=stride, padding=1)


def test_a_search_with_a_cell_op_that_changes_channels_is_refused_at_its_start(
    tmp_path, plugin, capsys
):
    plugin("cell_op", "test_halves_run", _halves)
    old = "ops: [identity, avg_pool3, max_pool3, sep_conv3, sep_conv5]"
    cfg = _config(tmp_path, "cells_digits.yaml", old, "ops: [identity, test_halves_run]")
    out = tmp_path / "run"
    line = _one_line(["search", cfg, "--out", str(out), "--quiet"], capsys)
    assert line.startswith("cell_op plugin 'test_halves_run' (registered in code as ")
    assert "a module that turns an input shaped" in line and ADVICE in line
    assert not out.exists()


# ----------------------------------------------------------- ops: what the supernet can slice
class GroupNormConv(Op):
    """An everyday block, conv + GroupNorm: GroupNorm's per-channel weights cannot be sliced."""

    layouts = ("conv2d",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        return [conv, nn.GroupNorm(4, out_channels), nn.GELU()]


class LayerNormDense(Op):
    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [nn.Linear(in_channels, out_channels), nn.LayerNorm(out_channels)]


class GroupedConv(Op):
    layouts = ("conv2d",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=2)]


class DoubleConv(Op):
    layouts = ("conv2d",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1).double()]


@pytest.mark.parametrize(
    "op, space, old, said",
    [
        (  # was a traceback from nasframe's slicing.py, after `validate --data` said ok
            GroupNormConv,
            "digits.yaml",
            "[conv3, sep_conv3, identity]",
            "op 'test_gn_conv' (registered in code), built for 32 -> 32 channels, fails "
            "(RuntimeError: Expected weight to be a vector of size equal to the number of channels "
            "in input",
        ),
        (
            LayerNormDense,
            "mlp.yaml",
            "[linear, identity]",
            "op 'test_ln_dense' (registered in code), built for 256 -> 256 channels, fails "
            "(RuntimeError: Given normalized_shape=[256]",
        ),
        (  # said "cannot slice Conv2d(...)", naming neither the op nor its line
            GroupedConv,
            "digits.yaml",
            "[conv3, sep_conv3, identity]",
            "op 'test_grouped' (registered in code) cannot run at a sampled width: cannot slice "
            "Conv2d(32, 32,",
        ),
    ],
    ids=["groupnorm", "layernorm", "grouped"],
)
def test_an_op_the_supernet_cannot_run_at_a_sampled_width_is_refused_at_its_line(
    tmp_path, capsys, plugin, op, space, old, said
):
    name = {GroupNormConv: "test_gn_conv", LayerNormDense: "test_ln_dense"}.get(op, "test_grouped")
    plugin("op", name, op)
    cfg = _config(tmp_path, space, old, f"[{name}, identity]")
    line = _one_line(["validate", "--data", cfg], capsys)
    where = "space.stages.s2.layer.op.choices.0" if space == "digits.yaml" else None
    assert line.startswith(f"{cfg}:"), line
    assert (where is None or f": {where}: " in line) and said in line, line
    assert line.endswith(
        "the supernet shares weights across widths by slicing Conv (groups 1 or depth-wise), "
        "Linear and BatchNorm weights and runs other modules unchanged: fix this op's widths (one "
        "value), or build it from those"
    )
    fixed = _config(tmp_path, space, old, f"[{name}, identity]")  # one width: nothing to slice
    text = open(fixed).read()
    text = text.replace("{choices: [16, 32]}", "32").replace("{choices: [32, 64, 128, 256]}", "256")
    open(fixed, "w").write(text.replace("{choices: [64, 128]}", "64"))
    if op is not GroupedConv:  # a grouped conv is refused even then: it cannot be sliced
        assert main(["validate", "--data", fixed]) == 0


def test_an_op_with_float64_weights_is_the_plugins_bug(tmp_path, capsys, plugin):
    """Its build's full-width check ran in float64 and passed; the search's float32 batches then
    failed in nasframe's own code, with a traceback."""
    plugin("op", "test_double_conv", DoubleConv)
    cfg = _config(tmp_path, "digits.yaml", "[conv3, sep_conv3, identity]", "[test_double_conv]")
    line = _one_line(["search", cfg, "--out", str(tmp_path / "r"), *FAST], capsys)
    assert line.startswith("op plugin 'test_double_conv' (registered in code as "), line
    assert line.endswith(
        ") modules with float64 weights; nasframe keeps weights in float32 (bf16 runs under "
        f"autocast); {ADVICE}"
    ), line


class NotAGrowthStrategy:
    """A growth entry point naming a class without controller(): an AttributeError traceback
    from nasframe's train.py, and `validate` said ok."""


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_growth_plugin_without_a_controller_is_the_plugins_bug(tmp_path, capsys, plugin, command):
    plugin("growth", "test_no_controller", NotAGrowthStrategy)
    cfg, _ = load_config(SPACES / "digits_prune.yaml")
    space = SearchSpace(cfg)
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(space.freeze([0] * len(space.choices))))
    args = [command, str(arch), "--set", "train.growth.strategy=test_no_controller"]
    args += ["--out", str(tmp_path / "t"), "--quiet"] if command == "train" else []
    line = _one_line(args, capsys)
    assert "growth plugin 'test_no_controller' (registered in code as " in line, line
    assert "which has no controller(model, every=..., steps=..., ...) for nasframe to call" in line


def test_an_optimizer_plugin_that_drops_the_configured_lr_is_the_plugins_bug(
    tmp_path, capsys, plugin
):
    """It trained at a rate of its own, silently (and no tag showed the learning rate)."""

    def fixed_lr(params, lr=0.01, **kwargs):
        return torch.optim.SGD(params, lr=0.5)

    plugin("optimizer", "test_fixed_lr", fixed_lr)
    args = ["validate", "--data", str(SPACES / "digits.yaml")]
    line = _one_line([*args, "--set", "search.optimizer={name: test_fixed_lr, lr: 0.01}"], capsys)
    assert "optimizer plugin 'test_fixed_lr' (registered in code as " in line, line
    assert "not a torch.optim.Optimizer with the lr given (0.01) in its param_groups" in line, line


def test_an_optimizer_holding_its_lr_as_a_float32_tensor_or_scaling_other_groups_is_accepted(
    plugin,
):
    """torch takes an lr tensor (float32: 0.0010000000475 for 0.001), and a plugin may give
    some groups a multiple of the rate (layer-wise rates) beside one that holds it."""

    def tensor_lr(params, lr=0.01, **kwargs):
        return torch.optim.Adam(params, lr=torch.tensor(lr), **kwargs)

    def layerwise(params, lr=0.01, **kwargs):
        params = list(params)
        groups = [{"params": params[:1]}, {"params": params[1:], "lr": lr * 0.1}]
        return torch.optim.SGD(groups, lr=lr)

    plugin("optimizer", "test_tensor_lr", tensor_lr)
    plugin("optimizer", "test_layerwise", layerwise)
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    for name in ("test_tensor_lr", "test_layerwise"):
        optimizer = build_optimizer(params, OptimizerConfig(name=name, lr=1e-3))
        assert isinstance(optimizer, torch.optim.Optimizer)
