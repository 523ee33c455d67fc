"""Latency as the search's cost: networks split into parts, each part timed once, kept in a table."""

from __future__ import annotations

import itertools
import json
import math
import signal
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import SPACES, run_cli, signal_at_first_checkpoint

import nasframe.latency
from nasframe import build_network, count_macs, load_space, validate_data
from nasframe.cli import main
from nasframe.config import LatencyConfig
from nasframe.config_load import load_config
from nasframe.cost import ArchitectureCost
from nasframe.distributed import Group
from nasframe.errors import UserError
from nasframe.latency import LATENCY_TABLE, LatencyTable, measure_ms, open_latency_table
from nasframe.parts import Part

CHAINS = [("mnist1d.yaml", (1, 40)), ("mlp.yaml", (1, 8, 8)), ("digits.yaml", (1, 8, 8))]
CELLS = [("cells_digits.yaml", (1, 8, 8)), ("asng_nas_cifar10.yaml", (3, 32, 32))]


def _part_macs(part: Part) -> int:
    with torch.device("meta"):
        return count_macs(part.build(), *part.inputs)


def _part_parameters(part: Part) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in part.build().parameters())


def _fake_ms(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """A stand-in timer: milliseconds that grow with the part's weights and input size."""
    return 0.001 + sum(p.numel() for p in module.parameters()) * 1e-5 + inputs[0].numel() * 1e-7


@pytest.mark.parametrize("spec, shape", CHAINS)
def test_a_chains_parts_add_up_to_its_frozen_network(spec, shape):
    space = load_space(SPACES / spec)
    cost = ArchitectureCost(space, shape, 10)
    rng = np.random.default_rng(0)
    for _ in range(4):
        sample = space.random_sample(rng)
        parts = cost.parts(sample)
        with torch.device("meta"):
            net = build_network(validate_data(space.freeze(sample)), shape, 10)
        assert sum(map(_part_parameters, parts)) == sum(p.numel() for p in net.parameters())
        assert sum(map(_part_macs, parts)) == count_macs(net, shape)
        assert [p.kind for p in parts[:-1]] == ["chain_op"] * (len(parts) - 1)
        assert parts[-1].kind == "chain_head"


@pytest.mark.parametrize("spec, shape", CELLS)
def test_a_cell_networks_parts_add_up_to_its_macs(spec, shape):
    space = load_space(SPACES / spec)
    cost = ArchitectureCost(space, shape, 10)
    sample = space.random_sample(np.random.default_rng(2))
    parts = cost.parts(sample)
    sp = space.config.space
    edges = sp.nodes * sp.node_inputs
    assert [p.kind for p in parts].count("cell_op") == sp.cells * edges
    assert sum(map(_part_macs, parts)) == cost.count(sample, "macs")


@pytest.mark.parametrize("spec, shape", [CHAINS[2], CELLS[0]])
def test_an_architectures_latency_is_the_sum_of_its_parts_each_timed_once(spec, shape):
    space = load_space(SPACES / spec)
    timed: list[str] = []

    def measure(module, inputs):
        timed.append(module.__class__.__name__)
        return _fake_ms(module, inputs)

    table = LatencyTable(torch.device("cpu"), measure=measure)
    cost = ArchitectureCost(space, shape, 10, "latency", latency=table)
    rng = np.random.default_rng(3)
    samples = [space.random_sample(rng) for _ in range(6)]
    for sample in samples:
        parts = cost.parts(sample)
        assert cost(sample) == pytest.approx(sum(table.entries[p.key] for p in parts))
    distinct = {p.key for s in samples for p in cost.parts(s)}
    assert len(timed) == table.timed == len(distinct) == len(table.entries)


def test_timing_draws_no_random_numbers_and_gives_milliseconds():
    space = load_space(SPACES / "digits.yaml")
    cost = ArchitectureCost(
        space, (1, 8, 8), 10, "latency", latency=LatencyTable(torch.device("cpu"))
    )
    rng = np.random.default_rng(4)
    samples = [space.random_sample(rng) for _ in range(3)]
    torch.manual_seed(5)
    before = torch.get_rng_state()
    values = [cost(s) for s in samples]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(0 < v < 1000 and math.isfinite(v) for v in values)


def test_measure_ms_times_forward_passes_between_its_bounds():
    calls = []
    module = torch.nn.Linear(4, 4)
    module.register_forward_hook(lambda *_: calls.append(1))
    ms = measure_ms(module, (torch.ones(1, 4),), warmup=2, min_repeats=5, max_repeats=7)
    assert 0 < ms and 2 + 5 <= len(calls) <= 2 + 7


def test_each_time_is_saved_at_once_and_a_table_read_back_times_nothing(tmp_path):
    space = load_space(SPACES / "digits.yaml")
    path = tmp_path / LATENCY_TABLE
    table = LatencyTable(torch.device("cpu"), path=path, measure=_fake_ms)
    cost = ArchitectureCost(space, (1, 8, 8), 10, "latency", latency=table)
    sample = space.random_sample(np.random.default_rng(6))
    first = cost(sample)
    saved = json.loads(path.read_text())
    assert saved["entries"] == table.entries and saved["batch_size"] == 1
    assert saved["device"] == "cpu" and saved["threads"] == torch.get_num_threads()

    def refuse(*_):
        raise AssertionError("a part in the table was timed again")

    again = LatencyTable(torch.device("cpu"), entries=saved["entries"], measure=refuse)
    assert ArchitectureCost(space, (1, 8, 8), 10, "latency", latency=again)(sample) == first


def test_a_resumed_run_reads_its_own_table_before_the_configured_one(tmp_path):
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"batch_size": 1, "entries": {"a": 1.0}}))
    run = tmp_path / "run"
    run.mkdir()
    (run / LATENCY_TABLE).write_text(json.dumps({"batch_size": 1, "entries": {"a": 2.0, "b": 3.0}}))
    options = LatencyConfig(table=str(given))
    cpu = torch.device("cpu")
    resumed = open_latency_table(options, cpu, run, True, Group())
    assert resumed.entries == {"a": 2.0, "b": 3.0}
    fresh = open_latency_table(options, cpu, tmp_path / "new", False, Group())
    assert fresh.entries == {"a": 1.0}
    assert json.loads((tmp_path / "new" / LATENCY_TABLE).read_text())["entries"] == {"a": 1.0}


def test_only_the_main_process_times_and_every_process_gets_its_time(tmp_path):
    space = load_space(SPACES / "digits.yaml")
    sample = space.random_sample(np.random.default_rng(7))
    main_table = LatencyTable(torch.device("cpu"), path=tmp_path / "main.json", measure=_fake_ms)
    shared = iter([main_table(p) for p in ArchitectureCost(space, (1, 8, 8), 10).parts(sample)])

    def refuse(*_):
        raise AssertionError("a process other than the main one timed a part")

    other = LatencyTable(
        torch.device("cpu"),
        path=tmp_path / "other.json",
        measure=refuse,
        share=lambda value: (value is None or pytest.fail("sent a time")) and next(shared),
        main=False,
    )
    cost = ArchitectureCost(space, (1, 8, 8), 10, "latency", latency=other)
    assert cost(sample) == pytest.approx(sum(main_table.entries.values()))
    assert not (tmp_path / "other.json").exists()


def _complete_table(spec: str, shape, path) -> dict[str, float]:
    """A table of every part of every architecture of a small space (stand-in times)."""
    space = load_space(SPACES / spec)
    table = LatencyTable(torch.device("cpu"), path=path, measure=_fake_ms)
    cost = ArchitectureCost(space, shape, 10, "latency", latency=table)
    every = {s: cost(s) for s in itertools.product(*(range(c) for c in space.categories))}
    return every


def test_a_large_latency_penalty_finds_the_fastest_architecture_of_the_table(tmp_path):
    given = tmp_path / "given.json"
    every = _complete_table("mlp.yaml", (1, 8, 8), given)
    out = tmp_path / "run"
    args = ["--set", "search.epochs=10", "--quiet", "--set", "search.cost=latency"]
    args += ["--set", "search.cost_penalty=100", "--set", f"search.latency.table={given}"]
    assert main(["search", str(SPACES / "mlp.yaml"), "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["most_likely_latency_ms"] == pytest.approx(min(every.values()))
    assert min(every.values()) < max(every.values())
    own = json.loads((out / LATENCY_TABLE).read_text())
    assert own["entries"] == json.loads(given.read_text())["entries"]  # nothing timed again


def _search_cmd(out, *extra):
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(out), "--quiet"]
    args += ["--set", "search.epochs=6", "--set", "search.checkpoint_every=3"]
    args += ["--set", "search.cost=latency", "--set", "search.cost_penalty=20", *extra]
    return [sys.executable, "-m", "nasframe", *args]


def test_a_search_against_a_runs_table_resumes_to_exactly_that_run(tmp_path):
    ref = tmp_path / "ref"
    done = run_cli(*_search_cmd(ref)[3:])
    assert done.returncode == 0, done.stderr
    table = ["--set", f"search.latency.table={ref / LATENCY_TABLE}"]
    run = tmp_path / "run"
    stopped = signal_at_first_checkpoint(_search_cmd(run, *table), run, signal.SIGKILL)
    assert stopped.returncode == -signal.SIGKILL
    resumed = run_cli("search", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((run / "summary.json").read_text())
    assert b["theta"] == a["theta"] and b["final"] == a["final"]
    assert b["most_likely_latency_ms"] == a["most_likely_latency_ms"] > 0
    ours = json.loads((run / LATENCY_TABLE).read_text())["entries"]
    assert ours == json.loads((ref / LATENCY_TABLE).read_text())["entries"]


def _digits_with(tmp_path, search_lines: str):
    """digits.yaml with ``search_lines`` added to its search section."""
    text = (SPACES / "digits.yaml").read_text().replace("search:\n", "search:\n" + search_lines)
    path = tmp_path / "digits.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "lines, message",
    [
        ("  latency: {batch_size: 2}\n", ":25: search.latency: is set, but search.cost is"),
        ("  cost: latency\n  latency: {device: gpu}\n", ":26: search.latency.device: must be"),
        (
            "  cost: latency\n  latency: {table: nope.json}\n",
            "search.latency.table: nope.json: no latency table there",
        ),
    ],
)
def test_bad_latency_settings_are_refused_at_their_line(tmp_path, lines, message):
    done = run_cli("validate", "--data", str(_digits_with(tmp_path, lines)), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_table_timed_at_another_batch_size_or_not_a_table_is_refused(tmp_path):
    given = tmp_path / "given.json"
    config = _digits_with(tmp_path, f"  cost: latency\n  latency: {{table: {given}}}\n")
    given.write_text(json.dumps({"batch_size": 8, "entries": {}}))
    done = run_cli("validate", "--data", str(config))
    assert done.returncode == 2
    assert "timed at batch 8" in done.stderr and "batch_size: 8" in done.stderr
    given.write_text(json.dumps({"batch_size": 1, "entries": {"x": -1}}))
    done = run_cli("validate", "--data", str(config))
    assert done.returncode == 2 and f"{given}: not a latency table" in done.stderr


def test_the_latency_command_fills_a_table_that_searches_reuse(tmp_path):
    table = tmp_path / "table.json"
    done = run_cli("latency", str(SPACES / "digits.yaml"), "--out", str(table), "--draws", "200")
    assert done.returncode == 0, done.stderr
    filled = json.loads(table.read_text())
    assert filled["batch_size"] == 1 and filled["device"] == "cpu" and filled["entries"]
    again = run_cli("latency", str(SPACES / "digits.yaml"), "--out", str(table), "--draws", "50")
    assert again.returncode == 0 and "(0 timed now" in again.stdout
    assert json.loads(table.read_text())["entries"] == filled["entries"]
    out = tmp_path / "run"
    args = ["--set", "search.epochs=2", "--quiet", "--set", "search.cost=latency"]
    args += ["--set", "search.cost_penalty=1", "--set", f"search.latency.table={table}"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(out), *args]) == 0
    used = json.loads((out / LATENCY_TABLE).read_text())["entries"]
    assert {k: used[k] for k in filled["entries"]} == filled["entries"]


def test_the_latency_command_refuses_bad_draws_and_a_table_of_another_batch(tmp_path):
    table = tmp_path / "table.json"
    done = run_cli("latency", str(SPACES / "digits.yaml"), "--out", str(table), "--draws", "0")
    assert done.returncode == 2 and "--draws 0" in done.stderr
    table.write_text(json.dumps({"batch_size": 4, "entries": {}}))
    done = run_cli("latency", str(SPACES / "digits.yaml"), "--out", str(table))
    assert done.returncode == 2 and "timed at batch 4" in done.stderr
    assert "Traceback" not in done.stderr


def test_cpu_parts_are_timed_on_the_threads_asked_for_and_the_run_keeps_its_own(tmp_path):
    seen = []

    def measure(module, inputs):
        seen.append(torch.get_num_threads())
        return 1.0

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        table = LatencyTable(
            torch.device("cpu"), path=tmp_path / "t.json", measure=measure, threads=1
        )
        table(Part("cell_head", (4, 3), ((4, 2, 2),)))
        assert seen == [1] and torch.get_num_threads() == 2
        assert json.loads((tmp_path / "t.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError, match="search.latency.threads: CPU threads"):
        open_latency_table(LatencyConfig(threads=1), torch.device("cuda"), None, False, Group())


def test_training_a_latency_searched_architecture_times_the_trained_network(tmp_path, capsys):
    search = tmp_path / "search"
    args = ["--quiet", "--set", "search.epochs=1", "--set", "search.cost=latency"]
    assert main(["search", str(SPACES / "digits.yaml"), "--out", str(search), *args]) == 0
    train = tmp_path / "train"
    assert main(["train", str(search / "arch.yaml"), "--out", str(train), "--quiet"]) == 0
    summary = json.loads((train / "summary.json").read_text())
    assert 0 < summary["latency_ms"] < 1000
    assert summary["latency_device"] == "cpu" and summary["latency_batch_size"] == 1
    assert "ms per batch of 1 on cpu" in capsys.readouterr().err


def test_the_latency_command_takes_latency_options_whatever_the_configs_cost(tmp_path, capsys):
    """docs/latency.md's command: mnist1d.yaml prices by parameters, yet its table is made with
    ``--set search.latency.*``; a search refuses those options without ``search.cost: latency``,
    naming the --set item that made them."""
    table = tmp_path / "t.json"
    args = ["--out", str(table), "--draws", "3", "--set", "search.latency.batch_size=2"]
    assert main(["latency", str(SPACES / "mnist1d.yaml"), *args]) == 0
    assert json.loads(table.read_text())["batch_size"] == 2
    capsys.readouterr()
    given = "search.latency.device=cpu"
    assert main(["search", str(SPACES / "mnist1d.yaml"), "--set", given]) == 2
    assert capsys.readouterr().err.startswith(f"--set {given}: search.latency: is set, but ")


@pytest.mark.parametrize(
    "change, message",
    [
        ("search.latency.batch_size=2", "timed at batch 1, but search.latency.batch_size is 2"),
        ("search.latency.device=cuda", "timed on cpu, but search.latency.device now gives cuda"),
    ],
)
def test_a_resume_that_would_mix_latency_times_is_refused_and_leaves_the_table(
    tmp_path, capsys, monkeypatch, change, message
):
    """A resumed run keeps its own table: parts timed at another batch size or on another
    device would be priced against the others as if alike."""
    run = tmp_path / "run"
    args = ["--out", str(run), "--set", "search.epochs=1", "--quiet"]
    args += ["--set", "search.cost=latency", "--set", "search.cost_penalty=1"]
    assert main(["search", str(SPACES / "digits.yaml"), *args]) == 0
    before = (run / LATENCY_TABLE).read_bytes()
    capsys.readouterr()
    if "cuda" in change:  # as on a machine with CUDA (nothing is timed: refused before)
        monkeypatch.setattr(
            nasframe.latency, "latency_device", lambda options, run: (torch.device("cuda"), None)
        )
    assert main(["search", "--resume", str(run), "--set", change, "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert (run / LATENCY_TABLE).read_bytes() == before


def test_the_latency_command_reports_a_bad_search_section_at_its_line(tmp_path, capsys):
    raw = yaml.safe_load((SPACES / "digits.yaml").read_text())
    raw["search"] = 3
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["latency", str(path), "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    line = path.read_text().splitlines().index("search: 3") + 1
    assert err.startswith(f"{path}:{line}: search: "), err
    assert "--set" not in err  # the command's own cost setting is nobody's --set


def test_a_null_section_is_filled_by_set(tmp_path):
    path = _digits_with(tmp_path, "  cost: latency\n  latency: null\n")
    config, _ = load_config(path, ["search.latency.batch_size=2"])
    assert config.search.latency.batch_size == 2
