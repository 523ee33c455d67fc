"""Search spaces, the supernet (only the sampled candidate runs) and the frozen network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SPACES, frozen_round_trip
from torch import nn

from nasframe import (
    SearchSpace,
    Supernet,
    UserError,
    build_network,
    load_config,
    load_space,
    validate_data,
)


def test_load_space_categories_and_paths():
    space = load_space(SPACES / "mnist1d.yaml")
    assert space.paths[:4] == [
        "space.stem.channels",
        "space.stages.s1.depth",
        "space.stages.s1.width",
        "space.stages.s1.layer0.op",
    ]
    assert "space.stages.s3.layer1.op" in space.paths
    assert space.categories[:4] == [3, 3, 3, 5]
    # stem width, then per stage depth, width and one op per possible layer (depth up to 2)
    assert len(space.categories) == 1 + 3 * (2 + 2)
    assert space.size == int(np.prod(space.categories))


def test_single_option_choice_is_a_variable_and_constants_are_not():
    cfg, _ = load_config(
        SPACES / "digits.yaml", ["space.stages.s1.width={choices: [8]}", "space.stages.s2.width=16"]
    )
    space = SearchSpace(cfg)
    assert "space.stages.s1.width" in space.paths
    assert space.categories[space.index("space.stages.s1.width")] == 1
    assert space.index("space.stages.s2.width") is None


@pytest.mark.parametrize("spec", ["digits.yaml", "mlp.yaml", "mnist1d.yaml"])
def test_exported_arch_round_trip(spec, tmp_path):
    cfg, _ = load_config(SPACES / spec)
    space = SearchSpace(cfg)
    rng = np.random.default_rng(0)
    for _ in range(5):
        frozen_round_trip(space, space.random_sample(rng), tmp_path)


def _copy_sliced(supernet: Supernet, frozen: nn.Sequential, space: SearchSpace, sample) -> None:
    """Copy the supernet's sliced weights of ``sample`` into the frozen network, in order."""
    sliced = []
    for slot, ops in zip(supernet.slots, supernet.candidates, strict=True):
        if slot.layer is not None and slot.layer >= space.value(
            slot.depth_path, slot.depth_field, sample
        ):
            continue
        name = space.value(slot.op_path, slot.op, sample) if slot.op_path else slot.op
        sliced.extend(m for m in ops[name].layers)
    sliced.append(supernet.classifier)
    targets = [
        m
        for m in frozen
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))
    ]
    sources = [
        m
        for m in sliced
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))
    ]
    assert len(targets) == len(sources)
    with torch.no_grad():
        for t, s in zip(targets, sources, strict=True):
            for name, p in t.named_parameters(recurse=False):
                src = getattr(s, name)
                idx = tuple(slice(0, n) for n in p.shape)
                p.copy_(src[idx])


@pytest.mark.parametrize(
    "spec,shape", [("digits.yaml", (1, 8, 8)), ("mlp.yaml", (1, 8, 8)), ("mnist1d.yaml", (1, 40))]
)
def test_supernet_equals_frozen_network_of_the_sample(spec, shape):
    cfg, _ = load_config(SPACES / spec)
    space = SearchSpace(cfg)
    torch.manual_seed(0)
    net = Supernet(space, shape, 10)
    rng = np.random.default_rng(1)
    x = torch.randn(16, *shape)
    for _ in range(6):
        sample = space.random_sample(rng)
        frozen = build_network(validate_data(space.freeze(sample)), shape, 10)
        _copy_sliced(net, frozen, space, sample)
        frozen.train()  # batch statistics, as the supernet uses
        torch.testing.assert_close(net(x, sample), frozen(x), rtol=1e-5, atol=1e-5)


def test_an_identity_transition_with_stride_reduces_the_resolution():
    """``transition: identity`` at stride 2 used to build nothing: the stage kept the input's
    length, silently. It subsamples now, in the supernet and the frozen network alike."""
    widths = ["space.stages.s1.width=16", "space.stages.s2.width=16"]
    cfg, _ = load_config(SPACES / "mnist1d.yaml", ["space.stages.s2.transition=identity", *widths])
    space = SearchSpace(cfg)
    torch.manual_seed(0)
    net = Supernet(space, (1, 40), 10)
    x = torch.randn(4, 1, 40)
    sample = space.random_sample(np.random.default_rng(0))
    frozen = build_network(validate_data(space.freeze(sample)), (1, 40), 10)
    seen = []
    pool = next(m for m in frozen if isinstance(m, nn.AdaptiveAvgPool1d))
    pool.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    _copy_sliced(net, frozen, space, sample)
    frozen.train()
    torch.testing.assert_close(net(x, sample), frozen(x), rtol=1e-5, atol=1e-5)
    assert seen == [10]  # 40, halved by s2's identity and by s3's conv


def test_a_linear_space_refuses_max_pooling_which_it_would_ignore():
    from nasframe.errors import UserError

    with pytest.raises(UserError) as e:
        load_config(SPACES / "mlp.yaml", ["space.head.pool=max"])
    assert str(e.value).endswith(
        "space.head.pool: a linear space's vectors have nothing to pool (the classifier takes "
        "the last layer's output); remove head.pool"
    )
    load_config(SPACES / "mlp.yaml", ["space.head.pool=avg"])  # the default, in every arch.yaml


def test_a_linear_space_refuses_a_stride(tmp_path):
    from nasframe.errors import UserError

    text = (
        (SPACES / "mlp.yaml")
        .read_text()
        .replace("transition: linear", "transition: linear\n      stride: 2")
    )
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(UserError) as e:
        load_config(tmp_path / "c.yaml")
    assert str(e.value).endswith(
        "c.yaml:13: space.stages.hidden.stride: a linear space's vectors have no length to reduce: "
        "stride must be 1, got 2"
    )


PER_LAYER_WIDTHS = """
version: 1
data: {name: digits}
space:
  layout: conv2d
  stem: {op: conv3, channels: 8}
  stages:
    - name: s1
      depth: {choices: [0, 1, 2]}
      width: {choices: [8, 16]}
      layers:
        - {op: conv3, width: {choices: [32, 64]}}
        - {op: {choices: [conv3, sep_conv3]}, width: 4}
    - name: s2
      stride: 2
      depth: {choices: [1, 2]}
      width: 12
      layers:
        - {op: conv3, width: {choices: [24, 48]}}
        - {op: conv3, width: 6}
"""


def test_every_depth_runs_with_per_layer_widths(tmp_path):
    # What leaves a stage is the output of whichever layer the depth makes the last one.
    path = tmp_path / "space.yaml"
    path.write_text(PER_LAYER_WIDTHS)
    cfg, _ = load_config(path)
    space = SearchSpace(cfg)
    net = Supernet(space, (1, 8, 8), 10)
    transition = net.candidates[[s.where for s in net.slots].index("s2.transition")]
    assert transition["conv3"].layers[0].weight.shape[1] == 64  # max of 8, 16, 32, 64, 4
    assert net.classifier.in_features == 48  # s2 ends after layer 0 (24, 48) or layer 1 (6)
    x = torch.randn(4, 1, 8, 8)
    for sample in _every(space):
        assert net(x, sample).shape == (4, 10)
        frozen = build_network(validate_data(space.freeze(sample)), (1, 8, 8), 10)
        _copy_sliced(net, frozen, space, sample)
        frozen.train()
        torch.testing.assert_close(net(x, sample), frozen(x), rtol=1e-5, atol=1e-5)


def test_a_layer_s_own_width_is_shown_in_the_architecture(tmp_path):
    """A searched per-layer width was in arch.yaml but in no printed architecture."""
    path = tmp_path / "space.yaml"
    path.write_text(PER_LAYER_WIDTHS)
    space = SearchSpace(load_config(path)[0])
    sample = [0] * len(space.choices)
    sample[space.index("space.stages.s1.depth")] = 2
    sample[space.index("space.stages.s1.layer0.width")] = 1
    sample[space.index("space.stages.s2.layer0.width")] = 1
    lines = space.describe(sample).splitlines()
    assert lines[1] == "s1: conv3 -> 8, depth 2: conv3(64) > conv3(4)"
    assert lines[2] == "s2: conv3 -> 12, stride 2, depth 1: conv3(48)"
    mlp = SearchSpace(load_config(SPACES / "mlp.yaml")[0])  # its own transition, no stride
    assert mlp.describe([0] * len(mlp.choices)).splitlines()[1] == "hidden: linear -> 32, depth 0"


def _every(space):
    import itertools

    return [list(s) for s in itertools.product(*(range(c) for c in space.categories))]


def test_only_the_sampled_candidates_run_and_get_gradients():
    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    net = Supernet(space, (1, 8, 8), 10)
    calls: dict[str, int] = {}
    for i, (slot, ops) in enumerate(zip(net.slots, net.candidates, strict=True)):
        for name, op in ops.items():
            key = f"{i}:{slot.where}:{name}"
            calls[key] = 0
            op.register_forward_hook(
                lambda m, a, o, key=key: calls.__setitem__(key, calls[key] + 1)
            )
    sample = np.zeros(len(space.paths), dtype=int)  # depth 1, first width, conv3 everywhere
    sample[space.index("space.stages.s1.layer0.op")] = 2  # max_pool3
    net(torch.randn(4, 1, 8, 8), sample).sum().backward()
    ran = {k for k, v in calls.items() if v}
    assert ran == {
        "0:stem:conv3",
        "1:s1.transition:conv3",
        "2:s1.layer0:max_pool3",
        "4:s2.transition:conv3",
        "5:s2.layer0:conv3",
    }
    for i, ops in enumerate(net.candidates):
        for name, op in ops.items():
            for p in op.parameters():
                has_grad = p.grad is not None
                assert has_grad == any(
                    k.startswith(f"{i}:") and k.endswith(f":{name}") for k in ran
                )


def test_width_slicing_uses_the_leading_channels():
    cfg, _ = load_config(SPACES / "digits.yaml")
    space = SearchSpace(cfg)
    net = Supernet(space, (1, 8, 8), 10)
    sample = np.zeros(len(space.paths), dtype=int)
    net(torch.randn(4, 1, 8, 8), sample).sum().backward()
    conv = net.candidates[1]["conv3"].layers[0]  # s1 transition, max width 16, sampled 8
    assert conv.weight.shape[0] == 16
    assert conv.weight.grad[:8].abs().sum() > 0
    assert conv.weight.grad[8:].abs().sum() == 0


def test_channel_preserving_op_cannot_change_width():
    from nasframe.errors import UserError

    cfg, _ = load_config(SPACES / "digits.yaml", ["space.stages.s1.transition=max_pool3"])
    with pytest.raises(UserError, match="keeps the number of channels"):
        Supernet(SearchSpace(cfg), (1, 8, 8), 10)


PRESERVING = """
version: 1
data: {name: digits}
space:
  layout: LAYOUT
  stem: {op: STEM, channels: {choices: [8, 16]}}
  stages:
    - name: a
      transition: TRANSITION
      depth: {choices: [1, 2]}
      width: {choices: [8, 16]}
      layers:
        - {op: LAYER, width: LAYER_WIDTH}
        - {op: identity}
"""


@pytest.mark.parametrize(
    "layout, stem, transition, layer, layer_width, refused, message",
    [
        # the same widths on both sides, chosen apart: stem 8 with stage 16 is an architecture
        (
            "conv2d",
            "conv3",
            "max_pool3",
            "conv3",
            "{choices: [8, 16]}",
            "space.stages.a.transition",
            "its input width (space.stem.channels: 8 or 16) and its output width "
            "(space.stages.a.width: 8 or 16) can differ; use an op that changes the width here "
            "(e.g. conv3)",
        ),
        # the second layer's input is the first layer's own width, its output the stage's
        (
            "conv2d",
            "conv3",
            "conv3",
            "conv3",
            "{choices: [8, 16]}",
            "space.stages.a.layers.1.op",
            "input width (space.stages.a.layers.0.width: 8 or 16) and its output width "
            "(space.stages.a.width: 8 or 16) can differ",
        ),
        (
            "linear",
            "linear",
            "linear",
            "linear",
            "{choices: [8, 16]}",
            "space.stages.a.layers.1.op",
            "can differ; use an op that changes the width here (linear or dense)",
        ),
    ],
)
def test_a_channel_preserving_op_between_widths_chosen_apart_is_refused(
    tmp_path, layout, stem, transition, layer, layer_width, refused, message
):
    """The check compared the sets of widths: with equal sets, validate said ok, the search
    trained architectures whose frozen network is refused, and `train` failed after it."""
    from nasframe.chain_widths import check_ops
    from nasframe.errors import UserError

    text = PRESERVING
    for key, value in [("LAYOUT", layout), ("STEM", stem), ("TRANSITION", transition)]:
        text = text.replace(key, value)
    text = text.replace("LAYER_WIDTH", layer_width).replace("LAYER", layer)
    (tmp_path / "c.yaml").write_text(text)
    cfg, _ = load_config(tmp_path / "c.yaml")
    with pytest.raises(UserError) as e:
        check_ops(cfg)
    op = "max_pool3" if refused.endswith("transition") else "identity"
    assert str(e.value).startswith(f"{refused}: op '{op}' keeps the number of channels, but its")
    assert message in str(e.value)


def test_every_channel_preserving_op_between_widths_chosen_apart_is_reported(tmp_path):
    """Each at its own line, not only the first: a space is mended in one go; a width written
    in a `layers:` list is named where it is written (layers.0.width), not by its choice path."""
    text = PRESERVING.replace("LAYOUT", "conv2d").replace("STEM", "conv3")
    text = text.replace("TRANSITION", "max_pool3").replace("LAYER_WIDTH", "{choices: [4, 8]}")
    (tmp_path / "c.yaml").write_text(text.replace("LAYER", "conv3"))
    cfg, _ = load_config(tmp_path / "c.yaml")
    with pytest.raises(UserError) as e:
        Supernet(SearchSpace(cfg), (1, 8, 8), 10)
    lines = str(e.value).splitlines()
    assert [line.split(": op ")[0] for line in lines] == [
        "space.stages.a.transition",
        "space.stages.a.layers.1.op",
    ]
    assert "(space.stages.a.layers.0.width: 4 or 8)" in lines[1]
    assert cfg.locate(str(e.value)).splitlines()[1].startswith(f"{tmp_path / 'c.yaml'}:14: ")


def test_a_channel_preserving_op_on_one_width_choice_is_accepted(tmp_path):
    """A layer's input and output width decided by the stage's one width choice are always
    equal, whatever it picks; fixed widths of the same value are too."""
    from nasframe.chain_widths import check_ops

    for text in (
        PRESERVING.replace("LAYER_WIDTH", "null").replace("TRANSITION", "conv3"),
        PRESERVING.replace("{choices: [8, 16]}", "16")
        .replace("LAYER_WIDTH", "16")
        .replace("TRANSITION", "max_pool3"),
    ):
        text = text.replace("LAYOUT", "conv2d").replace("STEM", "conv3").replace("LAYER", "conv3")
        (tmp_path / "c.yaml").write_text(text)
        cfg, _ = load_config(tmp_path / "c.yaml")
        check_ops(cfg)
        Supernet(SearchSpace(cfg), (1, 8, 8), 10)


def test_layout_mismatch_is_a_user_error():
    from nasframe.errors import UserError

    cfg, _ = load_config(SPACES / "mnist1d.yaml")
    with pytest.raises(UserError, match="layout 'conv2d'"):
        Supernet(SearchSpace(cfg), (1, 8, 8), 10)


def test_open_choices_are_counted_in_words():
    from nasframe.errors import UserError
    from nasframe.network import refuse_open_choices

    fixed = [
        f"space.{key}"
        for key in (
            "stem.channels=16",
            "stages.s1.depth=1",
            "stages.s1.width=8",
            "stages.s2.depth=1",
            "stages.s2.width=16",
            "stages.s2.layer.op=conv3",
        )
    ]
    one = SearchSpace(load_config(SPACES / "digits.yaml", fixed)[0])
    with pytest.raises(UserError, match=r"still has 1 open choice \(space.stages.s1.layer0.op\);"):
        refuse_open_choices(one)
    two = SearchSpace(load_config(SPACES / "digits.yaml", fixed[:-1])[0])
    with pytest.raises(UserError, match=r"still has 2 open choices \(space.stages.s1.layer0.op, "):
        refuse_open_choices(two)


def test_layers_no_depth_reaches_are_warned_about_not_refused(tmp_path, capsys):
    """They were silently never built: a depth written too small, most likely. An arch.yaml
    retrained with --set ...depth=1 is the same situation, legitimately: a warning, not an
    error."""
    from nasframe.cli import main

    text = PER_LAYER_WIDTHS.replace("depth: {choices: [1, 2]}", "depth: 1")
    path = tmp_path / "space.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{path}: ok (search config)\n"
    line = text.splitlines().index("        - {op: conv3, width: 6}") + 1
    assert captured.err == (
        f"{path}:{line}: warning: space.stages.s2.layers.1: this layer is never built (depth is "
        "at most 1); remove it, or allow a larger depth\n"
    )
    assert main(["validate", str(SPACES / "digits.yaml")]) == 0
    assert capsys.readouterr().err == ""


def test_a_linear_space_s_unwritten_ops_are_linear(tmp_path):
    """The defaults were conv3 for every layout: an MLP without its ops written was refused with
    "op 'conv3' does not support layout 'linear'", at keys the user never wrote."""
    from nasframe.chain_widths import check_ops

    text = """
version: 1
data: {name: digits}
space:
  layout: linear
  stem: {channels: 32}
  stages:
    - {width: {choices: [16, 32]}, depth: {choices: [0, 1]}}
    - {width: 16, depth: 1, layer: {width: {choices: [8, 16]}}}
    - {width: 16, depth: 0}
"""
    (tmp_path / "c.yaml").write_text(text)
    cfg, _ = load_config(tmp_path / "c.yaml")
    sp = cfg.space
    assert sp.stem.op == "linear"
    assert [st.transition for st in sp.stages] == ["linear"] * 3
    assert [layer.op for st in sp.stages for layer in st.layer_configs()] == ["linear"] * 2
    assert sp.stages[2].layer is None  # nothing added where no layer is built
    check_ops(cfg)
    space = SearchSpace(cfg)
    net = Supernet(space, (1, 8, 8), 10)
    assert net(torch.randn(2, 1, 8, 8), [1] * len(space.choices)).shape == (2, 10)
    conv, _ = load_config(SPACES / "digits.yaml")  # other layouts keep conv3
    assert conv.space.stages[0].transition == "conv3"


def test_fixed_widths_that_differ_are_said_to_differ():
    from nasframe.chain_widths import check_ops
    from nasframe.errors import UserError

    cfg, _ = load_config(SPACES / "digits.yaml", ["space.stem.op=identity"])
    check_ops(cfg)  # the data's channels unknown: not checked
    with pytest.raises(UserError) as e:
        check_ops(cfg, in_channels=1)
    assert str(e.value) == (
        "space.stem.op: op 'identity' keeps the number of channels, but its input width (1) and "
        "its output width (space.stem.channels: 16) differ; use an op that changes the width "
        "here (e.g. conv3)"
    )
