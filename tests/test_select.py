"""Random search with weight sharing: the uniform strategy, drawing candidates, scoring them with
the shared weights, and the whole search through the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import SPACES

from nasframe import ASNG, RandomSearch, SearchSpace, load_config
from nasframe.cli import main
from nasframe.selection import draw_candidates, score_candidates


def test_random_search_draws_every_option_uniformly():
    cats = [1, 2, 3, 5]
    samples = RandomSearch(cats, seed=0).sample(30_000)
    assert samples.shape == (30_000, 4) and (samples[:, 0] == 0).all()
    for k, c in enumerate(cats[1:], start=1):
        freq = np.bincount(samples[:, k], minlength=c) / len(samples)
        assert len(freq) == c and np.abs(freq - 1 / c).max() < 0.01


def test_random_search_learns_nothing_and_resumes_its_stream_exactly():
    a, b = RandomSearch([2, 3, 4], seed=3), RandomSearch([2, 3, 4], seed=3)
    theta = a.theta
    a.update(a.sample(), [0.1, 5.0])
    b.update(b.sample(), [7.0, 0.0])
    assert np.array_equal(a.theta, theta) and np.allclose(theta.sum(axis=1), 1)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = RandomSearch([2, 3, 4], seed=99)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert c.updates == 1
    ahead = a.sample(5)
    assert np.array_equal(c.sample(5), ahead) and np.array_equal(b.sample(5), ahead)
    with pytest.raises(ValueError, match="categories"):
        RandomSearch([2, 3], seed=0).load_state_dict(a.state_dict())


def test_candidates_start_with_the_most_likely_and_hold_each_network_once():
    space = SearchSpace(load_config(SPACES / "digits.yaml")[0])
    asng = ASNG(space.categories, seed=0)
    asng.theta[:, :] = np.where(asng.theta > 0, 0.05, 0.0)
    asng.theta[:, 1] = 1.0 - 0.05 * (np.array(space.categories) - 1)
    drawn = draw_candidates(asng, 50, space.network_key)
    assert np.array_equal(drawn[0], asng.mle())
    keys = [space.network_key(a) for a in drawn]
    assert len(set(keys)) == len(keys) < 50  # a concentrated distribution repeats itself
    # depth 1 in s1: the op of its second layer does not change the network
    s1_depth, second_op = (
        space.paths.index("space.stages.s1.depth"),
        space.paths.index("space.stages.s1.layer1.op"),
    )
    a = np.zeros(len(space.paths), dtype=np.int64)
    b = a.copy()
    b[second_op] = 2
    assert a[s1_depth] == 0 and space.network_key(a) == space.network_key(b)
    b[s1_depth] = 1
    assert space.network_key(a) != space.network_key(b)


class _Confidence(torch.nn.Module):
    """Logits that favour the label stored in x[:, 0], by the candidate's option 0 (its
    confidence) and only if option 1 is 0."""

    def forward(self, x: torch.Tensor, arch: np.ndarray) -> torch.Tensor:
        target = x[:, 0].long()
        sign = 1.0 if arch[1] == 0 else -1.0
        return F.one_hot(target, 3).float() * float(arch[0]) * sign


def test_candidates_are_ranked_by_mean_valid_loss_on_the_first_batches():
    y = torch.arange(40) % 3
    x = torch.stack([y.float(), torch.zeros(40)], dim=1)
    x[24:, 0] = (y[24:] + 1) % 3  # beyond the 3 batches scored, the stored label is wrong
    candidates = np.array([[1, 0], [3, 0], [2, 1], [0, 0]])
    sel = score_candidates(_Confidence(), candidates, x, y, 8, 3)
    assert sel is not None and sel.samples == 24
    for k, arch in enumerate(candidates):
        logits = _Confidence()(x[:24], arch)
        expected = F.cross_entropy(logits, y[:24]).item()
        assert sel.losses[k] == pytest.approx(expected, rel=1e-6)
        assert sel.accuracies[k] == (logits.argmax(1) == y[:24]).sum().item() / 24
    assert sel.best == 1 and np.array_equal(sel.chosen, [3, 0])
    whole = score_candidates(_Confidence(), candidates, x, y, 8, None)
    expected = [F.cross_entropy(_Confidence()(x, a), y).item() for a in candidates]
    assert whole.samples == 40 and np.allclose(whole.losses, expected, rtol=1e-6)
    assert whole.best == 0  # with 16 wrong labels of 40, the milder confidence wins
    costly = score_candidates(
        _Confidence(), candidates, x, y, 8, 3, penalty=lambda a: 10.0 * (a[0] == 3)
    )
    assert costly.best == 0 and np.allclose(costly.scores - costly.losses, [0, 10, 0, 0])


def test_a_stop_request_ends_the_scoring_without_a_result():
    y = torch.zeros(16, dtype=torch.long)
    x = torch.zeros(16, 2)
    calls = []
    stop = lambda: calls.append(1) or len(calls) >= 2  # noqa: E731
    assert (
        score_candidates(_Confidence(), np.array([[1, 0]] * 3), x, y, 8, None, stopped=stop) is None
    )
    assert len(calls) == 2


# --- through the CLI -----------------------------------------------------------------------------


def _search(out, *sets: str) -> None:
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(out), "--quiet"]
    for kv in ("search.epochs=2", *sets):
        args += ["--set", kv]
    assert main(args) == 0


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "random"
    _search(out, "search.strategy=random", "search.select.candidates=12")
    return out


def test_random_search_exports_the_best_scored_candidate(random_run):
    summary = json.loads((random_run / "summary.json").read_text())
    assert summary["most_likely"] is None and "test/acc" not in summary["final"]
    sel = summary["selection"]
    losses = np.array(sel["valid_losses"])
    assert 1 < len(sel["candidates"]) <= 12 and len(losses) == len(sel["candidates"])
    assert sel["chosen_index"] == int(np.argmin(losses)) and sel["valid_loss"] == losses.min()
    assert sel["samples"] == 10 * 64  # the default 10 batches of search.batch_size
    space = SearchSpace(load_config(SPACES / "digits.yaml")[0])
    keys = {space.network_key(a) for a in sel["candidates"]}
    assert len(keys) == len(sel["candidates"])
    chosen = sel["candidates"][sel["chosen_index"]]
    assert space.decode(chosen) == sel["chosen"]
    arch = yaml.safe_load((random_run / "arch.yaml").read_text())
    assert arch["space"] == json.loads(json.dumps(space.freeze(chosen)["space"]))


def test_the_selection_is_in_tensorboard(random_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(random_run))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"select/valid_loss", "select/valid_acc", "select/candidates"} <= set(tags)
    assert "test/acc" not in tags and "arch/parameters_most_likely" not in tags
    summary = json.loads((random_run / "summary.json").read_text())
    (event,) = acc.Scalars("select/valid_loss")
    assert event.value == pytest.approx(summary["selection"]["valid_loss"], rel=1e-6)


def test_resuming_a_finished_random_search_selects_the_same_architecture(random_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(random_run, copy)
    (copy / "arch.yaml").unlink()
    assert main(["search", "--resume", str(copy), "--quiet"]) == 0
    before = json.loads((random_run / "summary.json").read_text())["selection"]
    after = json.loads((copy / "summary.json").read_text())["selection"]
    assert after["candidates"] == before["candidates"]
    assert after["valid_losses"] == before["valid_losses"]
    assert (copy / "arch.yaml").read_text() == (random_run / "arch.yaml").read_text()


def test_asng_with_select_scores_its_most_likely_architecture_first(tmp_path):
    out = tmp_path / "asng"
    _search(out, "search.select.candidates=6", "search.select.batches=2")
    summary = json.loads((out / "summary.json").read_text())
    sel = summary["selection"]
    space = SearchSpace(load_config(SPACES / "digits.yaml")[0])
    assert space.decode(sel["candidates"][0]) == summary["most_likely"]
    assert sel["samples"] == 2 * 64 and summary["final"]["test/acc"] >= 0
    assert sel["chosen"] == space.decode(sel["candidates"][int(np.argmin(sel["valid_losses"]))])


@pytest.mark.parametrize(
    "setting, message",
    [
        ("search.select.candidates=0", "search.select.candidates: "),
        ("search.select.batches=0", "search.select.batches: "),
        ("search.select.candidate=5", "search.select.candidate: "),
    ],
)
def test_bad_select_settings_are_one_located_line(setting, message, tmp_path, capsys):
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "r")]
    assert main([*args, "--set", "search.strategy=random", "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith(f"--set {setting}")


def test_random_search_cannot_stop_at_convergence(tmp_path, capsys):
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "r")]
    sets = ["--set", "search.strategy=random", "--set", "search.stop_when_converged=0.9"]
    assert main([*args, *sets]) == 2
    assert "strategy 'random' has no converged()" in capsys.readouterr().err


def test_ctrl_c_during_the_selection_stops_and_resume_selects_the_same(tmp_path, monkeypatch):
    import os
    import signal

    import nasframe.selection as selection_module

    clean = tmp_path / "clean"
    _search(clean, "search.strategy=random", "search.select.candidates=5")
    real = selection_module.draw_candidates

    def draw_then_interrupt(*args, **kwargs):
        drawn = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came once the candidates are drawn
        return drawn

    monkeypatch.setattr(selection_module, "draw_candidates", draw_then_interrupt)
    out = tmp_path / "stopped"
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(out), "--quiet"]
    sets = ["search.epochs=2", "search.strategy=random", "search.select.candidates=5"]
    assert main([*args, *[x for kv in sets for x in ("--set", kv)]]) == 130
    assert not (out / "arch.yaml").exists() and (out / "checkpoint.pt").exists()
    monkeypatch.setattr(selection_module, "draw_candidates", real)
    assert main(["search", "--resume", str(out), "--quiet"]) == 0
    assert (out / "arch.yaml").read_text() == (clean / "arch.yaml").read_text()
    one = json.loads((clean / "summary.json").read_text())["selection"]
    two = json.loads((out / "summary.json").read_text())["selection"]
    assert one["candidates"] == two["candidates"] and one["valid_losses"] == two["valid_losses"]


# --- evolution (Single Path One-Shot) ------------------------------------------------------------


def _distance_scorer(target: np.ndarray, log: list[int]):
    """Scores candidates by their number of choices off ``target`` (a stand-in for the supernet)."""
    from nasframe.selection import Selection

    def score(cands: np.ndarray) -> Selection:
        log.append(len(cands))
        d = (cands != target).sum(axis=1).astype(float)
        return Selection(cands, d, 1 - d / len(target), d, samples=1)

    return score


def test_evolution_breeds_towards_better_candidates_within_its_budget():
    from nasframe.selection import evolve_candidates

    cats = [5] * 12
    target = np.arange(12) % 5
    initial = RandomSearch(cats, seed=0).sample(20)
    calls: list[int] = []
    sel = evolve_candidates(_distance_scorer(target, calls), initial, cats, 200, 5, 0.1, seed=0)
    assert len(sel.candidates) == 200 and calls == [20] * 10  # generations as large as the first
    assert len({a.tobytes() for a in sel.candidates}) == 200  # nothing scored twice
    assert list(sel.generations) == sorted(sel.generations) and sel.generations[-1] == 9
    first = sel.scores[sel.generations == 0].min()
    assert sel.scores.min() <= first - 4  # well beyond the best of the random first population
    # random search with the same budget does worse
    drawn = np.concatenate([initial, RandomSearch(cats, seed=1).sample(180)])
    assert sel.scores.min() < (drawn != target).sum(axis=1).min()
    again = evolve_candidates(_distance_scorer(target, []), initial, cats, 200, 5, 0.1, seed=0)
    assert np.array_equal(again.candidates, sel.candidates)  # seeded


def test_evolution_breeds_generations_of_the_population_asked_for():
    """The first population is the distinct ones of ``population`` draws, so it can be smaller;
    the generations bred were that small too, not ``search.select.population``."""
    from nasframe.selection import evolve_candidates

    cats = [5] * 12
    initial = RandomSearch(cats, seed=0).sample(7)  # 10 drawn, 3 of them repeats
    calls: list[int] = []
    score = _distance_scorer(np.arange(12) % 5, calls)
    evolve_candidates(score, initial, cats, 37, 5, 0.1, seed=0, population=10)
    assert calls == [7, 10, 10, 10]


def test_evolution_stops_when_no_new_network_can_be_bred_or_when_told():
    from nasframe.selection import evolve_candidates

    cats = [2, 2]
    every = np.array([[0, 0], [1, 1]])
    sel = evolve_candidates(_distance_scorer(np.array([1, 0]), []), every, cats, 50, 2, 1.0, 0)
    assert len(sel.candidates) == 4  # the whole space: nothing left to breed
    calls: list[int] = []
    stopping = _distance_scorer(np.array([1, 0]), calls)

    def stop_in_generation_1(cands):
        return None if calls else stopping(cands)

    assert evolve_candidates(stop_in_generation_1, every, cats, 50, 2, 1.0, 0) is None


def test_an_evolutionary_selection_through_the_cli(tmp_path):
    out = tmp_path / "evo"
    sets = ["search.strategy=random", "search.select.method=evolution"]
    sets += [
        "search.select.candidates=30",
        "search.select.population=10",
        "search.select.batches=2",
    ]
    _search(out, *sets)
    sel = json.loads((out / "summary.json").read_text())["selection"]
    per_generation = np.bincount(sel["generations"])
    assert len(sel["candidates"]) == 30 and sel["generations"] == sorted(sel["generations"])
    assert len(per_generation) >= 3 and per_generation.max() <= 10  # repeats drawn are dropped
    assert sel["chosen_index"] == int(np.argmin(sel["scores"]))
    space = SearchSpace(load_config(SPACES / "digits.yaml")[0])
    assert len({space.network_key(a) for a in sel["candidates"]}) == 30
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out))
    acc.Reload()
    curve = acc.Scalars("select/best_score_by_generation")
    gens, scores = np.array(sel["generations"]), np.array(sel["scores"])
    assert [e.step for e in curve] == list(range(len(per_generation)))
    for e in curve:  # the best score after each generation, never rising
        assert e.value == pytest.approx(scores[gens <= e.step].min(), rel=1e-6)


def test_more_parents_than_population_is_refused_at_its_line(tmp_path, capsys):
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "r")]
    sets = ["search.select.method=evolution", "search.select.parents=30"]
    assert main([*args, *[x for kv in sets for x in ("--set", kv)]]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "--set search.select.parents=30: search.select.parents: parents (30) cannot outnumber the "
        "population (20); lower parents or raise the population"
    )


def test_evolution_over_a_cell_space(tmp_path):
    out = tmp_path / "cells"
    args = ["search", str(SPACES / "cells_digits.yaml"), "--out", str(out), "--quiet"]
    sets = ["search.epochs=1", "search.strategy=random", "search.select.method=evolution"]
    sets += ["search.select.candidates=12", "search.select.population=4", "search.select.batches=1"]
    assert main([*args, *[x for kv in sets for x in ("--set", kv)]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    sel = summary["selection"]
    space = SearchSpace(load_config(SPACES / "cells_digits.yaml")[0])
    assert len(sel["candidates"]) == 12 and max(sel["generations"]) >= 2
    for a in sel["candidates"]:  # every bred child is a valid cell architecture
        assert all(0 <= v < c for v, c in zip(a, space.categories, strict=True))
    chosen = sel["candidates"][sel["chosen_index"]]
    frozen = yaml.safe_load((out / "arch.yaml").read_text())
    assert frozen["space"]["normal"] == space.freeze(chosen)["space"]["normal"]
    assert sel["macs"] > 0 and sel["parameters"] > 0


def test_a_layer_that_adds_nothing_does_not_make_another_network():
    space = SearchSpace(load_config(SPACES / "mlp.yaml")[0])
    paths = space.paths
    depth = next(p for p in paths if p.endswith(".depth"))
    stage = depth.rsplit(".", 1)[0]
    op0 = paths.index(f"{stage}.layer0.op")
    identity = space.choices[op0].options.index("identity")
    base = np.zeros(len(paths), dtype=np.int64)
    base[paths.index(depth)] = space.choices[paths.index(depth)].options.index(0)
    deeper = base.copy()
    deeper[paths.index(depth)] = space.choices[paths.index(depth)].options.index(1)
    deeper[op0] = identity
    assert space.network_key(deeper) == space.network_key(base)  # identity: the same network
    deeper[op0] = 1 - identity
    assert space.network_key(deeper) != space.network_key(base)


def test_a_search_with_a_selection_gives_no_python_warning(tmp_path, recwarn):
    """Digesting the settings a selection reads dumped the config with pydantic's serializer
    warnings on (a choice in a union field): every such search printed a UserWarning."""
    _search(tmp_path / "r", "search.epochs=1", "search.select.candidates=4")
    assert not [w for w in recwarn if "serializer" in str(w.message)]


def test_a_strategy_factory_without_converged_cannot_stop_at_convergence(tmp_path, capsys, plugin):
    """The config refuses a strategy class without converged(); a factory function is refused
    when the search has built what it returns, with the same message at the same key."""
    from nasframe import RandomSearch

    plugin("strategy", "test_random_factory", lambda *args, **kwargs: RandomSearch(*args, **kwargs))
    args = ["search", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "r")]
    sets = [
        "--set",
        "search.strategy=test_random_factory",
        "--set",
        "search.stop_when_converged=0.9",
    ]
    assert main([*args, *sets]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == (
        "--set search.stop_when_converged=0.9: search.stop_when_converged: strategy "
        "'test_random_factory' has no converged(); remove stop_when_converged or use asng"
    )
