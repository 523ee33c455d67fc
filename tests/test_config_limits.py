"""Values no run can use are refused by the config, at their line: sizes past what the tensors
hold, hyperparameters past float32, a fixed cell's op outside the space's ops, and a section that
is not a mapping (said in YAML's words, not pydantic's class names)."""

from __future__ import annotations

import pytest
from conftest import SPACES

from nasframe import ConfigError, load_config

CHAIN = (SPACES / "digits.yaml").read_text()
CELLS = (SPACES / "cells_digits.yaml").read_text()
HUGE = 10**30


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [str(p) for p in e.value.problems]


def line_with(text: str, part: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), 1) if part in t)


@pytest.mark.parametrize(
    "base, old, new, where, limit",
    [
        (CHAIN, "stride: 2", f"stride: {HUGE}", "space.stages.s2.stride", 1024),
        (
            CHAIN,
            "head: {pool: avg}",
            f"head: {{pool: avg, classes: {HUGE}}}",
            "space.head.classes",
            1 << 20,
        ),
        (CELLS, "stem_multiplier: 3", f"stem_multiplier: {HUGE}", "space.stem_multiplier", 64),
        (CELLS, "  channels: 8\n", f"  channels: 8\n  classes: {HUGE}\n", "space.classes", 1 << 20),
    ],
)
def test_sizes_past_what_a_network_can_hold_are_refused(base, old, new, where, limit, write_yaml):
    assert old in base
    text = base.replace(old, new, 1)
    p = write_yaml(text)
    (msg,) = problems(p)
    line = line_with(text, new.strip().splitlines()[-1])
    assert msg == f"{p}:{line}: {where}: must be at most {limit}, got {HUGE}"


@pytest.mark.parametrize("key, limit", [("crop_padding", 4096), ("cutout", 1 << 16)])
def test_augmentation_sizes_are_bounded(key, limit, write_yaml):
    text = CHAIN.replace(
        "  batch_size: 64\n", f"  batch_size: 64\n  augment: {{{key}: {HUGE}}}\n", 1
    )
    p = write_yaml(text)
    (msg,) = problems(p)
    assert msg.endswith(f"search.augment.{key}: must be at most {limit}, got {HUGE}")


@pytest.mark.parametrize(
    "old, new, where",
    [
        ("lr: 0.05", "lr: 1e39", "search.optimizer.lr"),
        ("momentum: 0.9", "momentum: -1e39", "search.optimizer.momentum"),
    ],
)
def test_optimizer_numbers_past_float32_are_refused(old, new, where, write_yaml):
    text = CHAIN.replace(old, new, 1)
    p = write_yaml(text)
    (msg,) = problems(p)
    value = new.split(": ")[1]
    assert msg == (
        f"{p}:{line_with(text, new)}: {where}: {float(value)} is beyond what a float32 holds "
        "(at most 3.4e38 in size)"
    )


def test_the_largest_float32_learning_rate_is_taken(write_yaml):
    config, _ = load_config(write_yaml(CHAIN.replace("lr: 0.05", "lr: 3.0e38", 1)))
    assert config.search.optimizer.lr == 3.0e38


def test_a_fixed_cell_op_must_be_one_of_the_space_ops(write_yaml):
    node = "{inputs: [0, 1], ops: [identity, identity]}"
    bad = "{inputs: [0, 1], ops: [sep_conv3, dil_conv3]}"
    text = CELLS.replace("  channels: 8\n", f"  channels: 8\n  normal: [{node}, {bad}, {node}]\n")
    p = write_yaml(text)
    (msg,) = problems(p)
    assert msg == (
        f"{p}:{line_with(text, 'dil_conv3')}: space.normal.1.ops.1: op 'dil_conv3' is not one of "
        "space.ops (identity, avg_pool3, max_pool3, sep_conv3, sep_conv5); add it to ops or use "
        "one of them"
    )


@pytest.mark.parametrize(
    "value, said",
    [("null", "null"), ("[1, 2]", "a list"), ("3", "the number 3"), ("x", "the text 'x'")],
)
def test_a_section_that_is_not_a_mapping_is_said_in_yaml_words(value, said, write_yaml):
    text = CHAIN.replace("log: {tensorboard: true}", f"log: {value}")
    assert text != CHAIN
    p = write_yaml(text)
    assert problems(p) == [
        f"{p}:{line_with(text, 'log:')}: log: expected a mapping of keys, got {said}"
    ]
