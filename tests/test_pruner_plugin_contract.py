"""The pruner plugin contract of docs/pruning.md ("Writing a pruner"): its example pruner runs as
written, a plugin pruner's run records the configured method and threshold, and a pruner whose
output nasframe cannot use (a dict as its report, a network that does not fit the architecture
rebuilt from its widths) is reported in one line naming it, with exit status 2."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from torch import nn

from nasframe import build_network, load_config
from nasframe.cli import main

# A fixed chain of BatchNorm-free dense layers on digits' vectors (what pruning is for).
ARCH = """\
version: 1
name: prunable
data: {name: digits}
space:
  layout: linear
  stem: {op: dense, channels: 32}
  stages:
    - name: s1
      transition: dense
      depth: 1
      width: 32
      layer: {op: dense}
train:
  epochs: 1
  batch_size: 64
  optimizer: {name: adam, lr: 1.0e-2}
log: {tensorboard: false, progress: false}
prune: {method: adam_sparsity, threshold: 1.0e-3}
"""

PAGE = (ROOT / "docs" / "pruning.md").read_text()


def _documented_pruner() -> type:
    """The example class of docs/pruning.md's "Writing a pruner" section, run as written."""
    section = PAGE.split("## Writing a pruner", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict = {}
    exec(compile(code, "docs/pruning.md", "exec"), namespace)
    return namespace["RelativeNormPruner"]


@pytest.fixture
def arch(tmp_path) -> Path:
    path = tmp_path / "arch.yaml"
    path.write_text(ARCH)
    return path


def _train(arch: Path, out: Path, method: str, threshold: float) -> int:
    args = ["train", str(arch), "--out", str(out), "--set", f"prune.method={method}"]
    return main([*args, "--set", f"prune.threshold={threshold}"])


def _refused(arch: Path, out: Path, method: str, capsys) -> str:
    """The one line that refuses a training's `prune:` step (exit 2, no traceback), after the
    training's own lines."""
    assert _train(arch, out, method, 0.5) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-2].startswith("test accuracy: "), err  # the training finished, then this
    return lines[-1]


def test_the_documented_pruner_prunes_a_run_and_its_summary_names_it(
    plugin, arch, tmp_path, capsys
):
    plugin("pruner", "contract_relnorm", _documented_pruner())
    out = tmp_path / "run"
    assert _train(arch, out, "contract_relnorm", 0.9) == 0
    said = capsys.readouterr()
    # its optional check_training hook is asked before training (this config has no train.l2)
    assert "warning: prune (contract_relnorm): no train.l2" in said.out + said.err
    summary = json.loads((out / "pruned" / "summary.json").read_text())
    # the configured pruner and threshold, not what prune_units() reports ("units", None)
    assert summary["method"] == "contract_relnorm"
    assert summary["threshold"] == 0.9
    assert 0 < summary["removed_units"] < summary["prunable_units"]
    assert summary["params_after"] < summary["params_before"]
    cfg, _ = load_config(out / "pruned" / "arch.yaml")
    assert cfg.prune.method == "contract_relnorm"
    net = build_network(cfg, (1, 8, 8), 10)
    net.load_state_dict(torch.load(out / "pruned" / "weights.pt", weights_only=True))
    assert sum(p.numel() for p in net.parameters()) == summary["params_after"]


def test_the_documented_pruner_s_value_error_is_the_user_s_threshold(
    plugin, arch, tmp_path, capsys
):
    plugin("pruner", "contract_relnorm", _documented_pruner())
    assert _train(arch, tmp_path / "run", "contract_relnorm", 1.5) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "prune: threshold must be between 0 and 1 for this pruner, got 1.5" in err


class _DictReport:
    """Returns its report's to_dict() instead of the report."""

    def __init__(self, threshold: float = 1e-4) -> None:
        self.threshold = threshold

    def prune(self, model: nn.Sequential, example_input: torch.Tensor) -> tuple:
        from nasframe_prune import prune_units

        pruned, report = prune_units(model, example_input, {})
        return pruned, report.to_dict()


class _ExtraLayer:
    """Returns a network with a layer the architecture does not have."""

    def __init__(self, threshold: float = 1e-4) -> None:
        self.threshold = threshold

    def prune(self, model: nn.Sequential, example_input: torch.Tensor) -> tuple:
        from nasframe_prune import prune_units

        pruned, report = prune_units(model, example_input, {})
        return nn.Sequential(*pruned, nn.Linear(10, 3)), report


class _NarrowsOnlyOneSide:
    """Removes a unit from the stem's Linear but leaves the next layer reading it."""

    def __init__(self, threshold: float = 1e-4) -> None:
        self.threshold = threshold

    def prune(self, model: nn.Sequential, example_input: torch.Tensor) -> tuple:
        from nasframe_prune import prune_units

        pruned, report = prune_units(model, example_input, {})
        first = next(i for i, m in enumerate(pruned) if isinstance(m, nn.Linear))
        old = pruned[first]
        narrow = nn.Linear(old.in_features, old.out_features - 1)
        with torch.no_grad():
            narrow.weight.copy_(old.weight[1:])
            narrow.bias.copy_(old.bias[1:])
        pruned[first] = narrow
        return pruned, report


def test_a_dict_as_the_report_is_the_plugin_s_failure_naming_the_type(
    plugin, arch, tmp_path, capsys
):
    plugin("pruner", "contract_dict_report", _DictReport)
    line = _refused(arch, tmp_path / "run", "contract_dict_report", capsys)
    assert line.startswith("pruner plugin 'contract_dict_report' (")
    assert "returned a dict as the report of prune(model, example_input)" in line
    assert "not a nasframe_prune.PruneReport" in line
    assert "return the report itself, not its to_dict()" in line


def test_a_network_with_an_added_layer_is_the_plugin_s_failure_with_the_mismatch(
    plugin, arch, tmp_path, capsys
):
    plugin("pruner", "contract_extra_layer", _ExtraLayer)
    line = _refused(arch, tmp_path / "run", "contract_extra_layer", capsys)
    assert line.startswith("pruner plugin 'contract_extra_layer' (")  # not the config's prune line
    assert "does not fit the architecture rebuilt from its widths" in line
    assert 'Unexpected key(s) in state_dict: "' in line
    assert "Error(s) in loading" not in line


def test_a_network_narrowed_on_one_side_only_says_which_weight_does_not_fit(
    plugin, arch, tmp_path, capsys
):
    plugin("pruner", "contract_one_side", _NarrowsOnlyOneSide)
    line = _refused(arch, tmp_path / "run", "contract_one_side", capsys)
    assert line.startswith("pruner plugin 'contract_one_side' (")
    assert re.search(
        r"size mismatch for \S+\.weight: torch\.Size\(\[\d+, 32\]\) in the pruned network, "
        r"torch\.Size\(\[\d+, 31\]\) in the rebuilt one",
        line,
    ), line


class _EmptiesALayer:
    """Removes every unit of the stem's Linear (and the next layer's inputs with them)."""

    def __init__(self, threshold: float = 1e-4) -> None:
        self.threshold = threshold

    def prune(self, model: nn.Sequential, example_input: torch.Tensor) -> tuple:
        from nasframe_prune import prune_units

        pruned, report = prune_units(model, example_input, {})
        first, second = [i for i, m in enumerate(pruned) if isinstance(m, nn.Linear)][:2]
        with warnings.catch_warnings():  # torch: initializing zero-element tensors is a no-op
            warnings.simplefilter("ignore", UserWarning)
            pruned[first] = nn.Linear(pruned[first].in_features, 0)
            pruned[second] = nn.Linear(0, pruned[second].out_features)
        return pruned, report


def test_a_network_with_an_emptied_layer_is_the_plugin_s_failure(plugin, arch, tmp_path, capsys):
    plugin("pruner", "contract_empties", _EmptiesALayer)
    line = _refused(arch, tmp_path / "run", "contract_empties", capsys)
    assert line.startswith("pruner plugin 'contract_empties' (")
    assert "returned a network whose widths make no valid architecture" in line
    assert "must be greater than 0, got 0" in line
