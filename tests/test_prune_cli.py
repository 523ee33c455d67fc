"""`nasframe prune RUN_DIR` and the `prune:` section: a smaller network that loads like any other."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SPACES

from nasframe import SearchSpace, build_network, load_config, registry
from nasframe.cli import main
from nasframe.yaml_io import dump_yaml


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune")
    cfg, _ = load_config(SPACES / "digits.yaml", ["log.tensorboard=false"])
    space = SearchSpace(cfg)
    arch = space.freeze([1] * len(space.paths))
    arch["train"]["epochs"] = 3
    arch["train"]["optimizer"] = {"name": "adam", "lr": 3.0e-3, "weight_decay": 1.0e-3}
    path = tmp / "arch.yaml"
    dump_yaml(arch, path)
    out = tmp / "train"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def _threshold_removing_some(run) -> float:
    cfg, _ = load_config(run / "config.yaml")
    net = build_network(cfg, (1, 8, 8), 10)
    net.load_state_dict(torch.load(run / "weights.pt", weights_only=True))
    pruner = registry.get("pruner", "adam_sparsity")()
    norms = pruner.unit_norms(net.eval(), torch.zeros(2, 1, 8, 8))
    widest = max(norms.values(), key=len)
    return float(widest.sort().values[len(widest) // 4]) * 1.0001  # a quarter of that layer


def test_prune_writes_a_smaller_arch_that_loads_and_trains(trained, tmp_path):
    xi = _threshold_removing_some(trained)
    out = tmp_path / "pruned"
    assert main(["prune", str(trained), "--threshold", str(xi), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["removed_units"] > 0 and 0 < summary["removed_fraction"] < 1
    assert summary["params_after"] < summary["params_before"]
    assert summary["macs_after"] < summary["macs_before"]
    assert 0 <= summary["acc_after"] <= 1 and summary["threshold"] == pytest.approx(xi)
    cfg, _ = load_config(out / "arch.yaml")
    net = build_network(cfg, (1, 8, 8), 10)
    net.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    assert sum(p.numel() for p in net.parameters()) == summary["params_after"]
    # The pruned network computes what the trained one computes with those units masked off.
    trained_cfg, _ = load_config(trained / "config.yaml")
    full = build_network(trained_cfg, (1, 8, 8), 10)
    full.load_state_dict(torch.load(trained / "weights.pt", weights_only=True))
    x = torch.randn(8, 1, 8, 8)
    pruner = registry.get("pruner", "adam_sparsity")(xi)
    masked = pruner.masked(full.eval(), x)
    torch.testing.assert_close(net.eval()(x), masked(x), rtol=1e-4, atol=1e-4)
    assert (
        main(
            [
                "train",
                str(out / "arch.yaml"),
                "--out",
                str(tmp_path / "retrain"),
                "--quiet",
                "--set",
                "train.epochs=1",
            ]
        )
        == 0
    )


def test_pruning_nothing_is_a_no_op(trained, tmp_path):
    out = tmp_path / "none"
    assert main(["prune", str(trained), "--threshold", "1e-12", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["removed_units"] == 0
    assert summary["acc_after"] == summary["acc_before"]
    before = torch.load(trained / "weights.pt", weights_only=True)
    after = torch.load(out / "weights.pt", weights_only=True)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_emptying_a_layer_is_refused_clearly(trained, tmp_path, capsys):
    assert main(["prune", str(trained), "--threshold", "1e6", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "would remove all" in err and "smaller threshold" in err and "Traceback" not in err


def test_prune_section_runs_after_train(trained, tmp_path, capsys):
    xi = _threshold_removing_some(trained)
    text = (trained / "config.yaml").read_text()
    path = tmp_path / "with_prune.yaml"
    path.write_text(text + f"prune: {{method: adam_sparsity, threshold: {xi}}}\n")
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prune"]["removed_units"] > 0
    assert (out / "pruned" / "arch.yaml").exists()
    # Pruning again never overwrites the pruned network: another --out, or nothing happens.
    before = {p.name: p.read_bytes() for p in (out / "pruned").iterdir() if p.is_file()}
    assert main(["prune", str(out), "--threshold", str(xi / 2)]) == 2
    said = capsys.readouterr().err  # the default --out, not one the user gave
    assert f"{out / 'pruned'} (the default --out): already holds a pruned network" in said
    assert before == {p.name: p.read_bytes() for p in (out / "pruned").iterdir() if p.is_file()}
    assert main(["prune", str(out), "--threshold", str(xi / 2), "--out", str(out / "p2")]) == 0


def test_prune_needs_a_trained_run(tmp_path, capsys):
    assert main(["prune", str(tmp_path)]) == 2
    assert "weights.pt" in capsys.readouterr().err


def test_a_setup_that_cannot_sparsify_is_named_before_training(trained, tmp_path, capsys):
    text = (trained / "config.yaml").read_text()  # conv3 + BatchNorm ops
    path = tmp_path / "adamw.yaml"
    path.write_text(text + "prune: {method: adam_sparsity, threshold: 1.0e-12}\n")
    args = ["--set", "train.optimizer.name=adamw", "--set", "train.epochs=1", "--quiet"]
    assert main(["train", str(path), "--out", str(tmp_path / "run"), *args]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert any("decoupled weight decay" in w for w in warnings)
    assert any("BatchNorm" in w for w in warnings)


def test_shipped_prune_space_trains_adam_with_l2_and_prunes_silently(tmp_path, capsys):
    cfg, _ = load_config(SPACES / "digits_prune.yaml", ["log.tensorboard=false"])
    assert cfg.train.l2 > 0 and cfg.train.optimizer.name == "adam" and cfg.prune is not None
    arch = SearchSpace(cfg).freeze([0] * len(SearchSpace(cfg).paths))
    arch["train"]["epochs"] = 25
    path = tmp_path / "arch.yaml"
    dump_yaml(arch, path)
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    assert "warning:" not in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())["prune"]
    assert summary["removed_units"] > 0  # dense layers trained by Adam + L2 lose units
    assert summary["acc_after"] >= summary["acc_before"] - 0.005


def test_show_of_a_pruned_directory_gives_its_before_and_after(trained, tmp_path, capsys):
    out = tmp_path / "pruned"
    xi = _threshold_removing_some(trained)
    capsys.readouterr()
    assert main(["prune", str(trained), "--threshold", str(xi), "--out", str(out)]) == 0
    said = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert f"MACs {summary['macs_before']:,} -> {summary['macs_after']:,}," in said
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"params_before: {summary['params_before']}" in shown
    assert f"params_after: {summary['params_after']}" in shown
    assert f"macs_before: {summary['macs_before']}" in shown
    assert f"macs_after: {summary['macs_after']}" in shown
    assert "None" not in shown


def test_show_reads_a_pruned_summary_of_an_older_version(trained, tmp_path, capsys):
    # nasframe 0.1.0 named a pruned run's MAC counts flops_before/flops_after
    new = tmp_path / "new"
    xi = _threshold_removing_some(trained)
    assert main(["prune", str(trained), "--threshold", str(xi), "--out", str(new)]) == 0
    summary = json.loads((new / "summary.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    for name in ("arch.yaml", "weights.pt"):
        (old / name).write_bytes((new / name).read_bytes())
    before, after = summary.pop("macs_before"), summary.pop("macs_after")
    (old / "summary.json").write_text(
        json.dumps({**summary, "flops_before": before, "flops_after": after})
    )
    capsys.readouterr()
    assert main(["show", str(old)]) == 0
    out, err = capsys.readouterr()
    assert f"macs_before: {before}" in out and f"macs_after: {after}" in out
    assert "flops" not in out and not err
    assert main(["show", str(old), str(new)]) == 0
    out, err = capsys.readouterr()
    head, *rows = out.splitlines()
    column = head.split().index("MACS")
    assert [row.split()[column] for row in rows] == [str(after), str(after)], out
    assert not err
