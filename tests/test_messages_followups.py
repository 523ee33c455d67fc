"""Messages in the project's words (walk14 F1, F4, F13): config values out of range or of the
wrong kind say what the key takes and what it got (not pydantic's "Input should ..."), a `--set`
naming a stage that does not exist lists the stages, `nasframe show` of a path that does not exist
says so, and the table's VALID_ACC of a search with a selection is the selected architecture's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SPACES

from nasframe.cli import main
from nasframe.config_load import load_config
from nasframe.errors import UserError

DIGITS = SPACES / "digits.yaml"


def _refused(overrides: list[str], path: Path = DIGITS) -> str:
    with pytest.raises(UserError) as info:
        load_config(path, overrides)
    return str(info.value)


@pytest.mark.parametrize(
    "item, said",
    [
        ("search.lam=1", "search.lam: must be at least 2, got 1"),
        ("search.select.candidates=0", "search.select.candidates: must be greater than 0, got 0"),
        ("search.stop_when_converged=2", "search.stop_when_converged: must be at most 1, got 2"),
        ("data.valid_fraction=1.5", "data.valid_fraction: must be less than 1, got 1.5"),
        ("search.optimizer.lr=-0.5", "search.optimizer.lr: must be greater than 0, got -0.5"),
        ("search.epochs=[3]", "search.epochs: expected a whole number, got a list"),
        ("search.epochs=2.5", "search.epochs: expected a whole number, got the number 2.5"),
        ("search.optimizer.lr=[1]", "search.optimizer.lr: expected a number, got a list"),
        ("log.tensorboard=maybe", "log.tensorboard: expected true or false, got the text 'maybe'"),
        ("name={a: 1}", "name: expected text, got a mapping"),
        (
            "space.stem.op={choices: [conv3, conv5]}",
            "space.stem.op: the stem's op is fixed (not a choice); write one op name",
        ),
        (
            "space.stem.op=[conv3, conv5]",
            "space.stem.op: the stem's op is fixed (not a choice); write one op name",
        ),
        (
            "search.epochs={choices: [1, 2]}",
            "search.epochs: takes one value, not a choice; write a whole number",
        ),
        (  # pydantic said "Input should be 'avg' or 'max'", for a choice too
            "space.head.pool={choices: [avg, max]}",
            "space.head.pool: takes one value, not a choice; write 'avg' or 'max'",
        ),
        ("space.head.pool=mean", "space.head.pool: must be 'avg' or 'max', got the text 'mean'"),
        (  # op takes a choice: it said "takes one value, not a choice", width "got a list"
            "space.stages.s1.layer.op=[conv3, sep_conv3]",
            "space.stages.s1.layer.op: a choice is written {choices: [conv3, sep_conv3]}, not as "
            "a plain list",
        ),
        (
            "space.stages.s1.width=[8, 16]",
            "space.stages.s1.width: a choice is written {choices: [8, 16]}, not as a plain list",
        ),
        ("space.stages=[]", "space.stages: must list at least 1 item, got 0"),
        ("version=2", "version: must be 1, got the number 2"),  # was a TypeError traceback
        ("space.head.pool=true", "space.head.pool: must be 'avg' or 'max', got the boolean true"),
        (
            "space.stages.s1.layer.op=[]",
            "space.stages.s1.layer.op: a choice is written {choices: [a, b, ...]}, not as a plain "
            "list",
        ),
        (  # keys indented one level wrong, or of another section: where they belong
            "space.stages.s1.op=conv3",
            "space.stages.s1.op: unknown key 'op'; a layer's op goes under 'layer:' (layer: "
            "{op: ...}); the stage's own op is its 'transition'",
        ),
        (
            "space.depth=1",
            "space.depth: unknown key 'depth'; 'depth' belongs to a stage, under 'stages:' "
            "(indented as its other keys)",
        ),
        (
            "space.stem.width=8",
            "space.stem.width: unknown key 'width'; the stem's width is its 'channels'",
        ),
        (  # another framework's word: was "did you mean 'layers'?", a list of layers
            "space.stages.s1.num_layers=2",
            "space.stages.s1.num_layers: unknown key 'num_layers'; a stage's number of layers is "
            "its 'depth' (a choice or a constant)",
        ),
        (
            "space.stages.s1.widht=8",
            "space.stages.s1.widht: unknown key 'widht'; did you mean 'width'?",
        ),
        (
            "space.stem.channels={choices: 8}",
            "space.stem.channels.choices: expected a list, got the number 8",
        ),
        (
            "space.layout=conv2",
            "space.layout: must be 'conv1d', 'conv2d' or 'linear', got the text 'conv2'; did you "
            "mean 'conv2d'?",
        ),
    ],
)
def test_config_values_are_refused_in_the_projects_words(item, said):
    assert _refused([item]) == f"--set {item}: {said}"


def test_the_stem_op_given_as_a_choice_is_refused_at_its_line(tmp_path):
    text = DIGITS.read_text().replace(
        "stem: {op: conv3, channels: 16}", "stem: {op: {choices: [conv3, conv5]}, channels: 16}"
    )
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    line = text.splitlines().index("  stem: {op: {choices: [conv3, conv5]}, channels: 16}") + 1
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}:{line}: space.stem.op: the stem's op is fixed (not a choice); write one op name"
    )


def test_no_pydantic_wording_is_left_for_the_usual_mistakes():
    items = ["seed=-1", "seed=99999999999999999999", "search.batch_size=0", "name=5"]
    items += ["search.optimizer.lr=.inf", "space.stem.channels=abc", "log.tensorboard=[1]"]
    for item in items:
        said = _refused([item])
        assert "Input should" not in said and said.startswith(f"--set {item}: "), said


def test_a_stage_that_does_not_exist_lists_the_stages():
    said = _refused(["space.stages.s3.width=8"])
    assert said == (
        "--set space.stages.s3.width=8: space.stages has no item 's3'; its items are s1, s2 "
        "(or by index, 0 to 1)"
    )
    assert _refused(["space.stages.s11.width=8"]).endswith("; did you mean 's1'?")
    said = _refused(["space.stages.s1.width.choices.5=8"])
    assert said.endswith(
        "space.stages.s1.width.choices has no item '5'; its 2 items go by index, 0 to 1"
    )


def test_show_of_a_path_that_does_not_exist_says_so(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert main(["show", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"{missing}: does not exist"
    file = tmp_path / "notes.txt"
    file.write_text("x")
    assert main(["show", str(file)]) == 2
    assert "not a directory" in capsys.readouterr().err


def _search_summary(run: Path, selection: dict | None) -> None:
    run.mkdir()
    summary = {
        "kind": "search",
        "name": "mine",
        "epochs_run": 3,
        "final": {"valid/acc": 0.1684, "test/acc": 0.25},
        "most_likely_parameters": 100,
        "most_likely_macs": 200,
        "selection": selection,
        "wall_time_s": 1.0,
    }
    (run / "summary.json").write_text(json.dumps(summary))


def test_the_tables_valid_acc_is_the_selected_architectures(tmp_path, capsys):
    """walk14 F4: VALID_ACC was the last epoch's mean over sampled architectures, next to the
    selected architecture's TEST_ACC."""
    selected, plain = tmp_path / "selected", tmp_path / "plain"
    chosen = {"valid_acc": 0.3828, "test_acc": 0.3803, "parameters": 50, "macs": 70}
    _search_summary(selected, chosen)
    _search_summary(plain, None)
    assert main(["show", str(selected), str(plain)]) == 0
    _, first, second = capsys.readouterr().out.splitlines()
    assert first.split()[4:9] == ["3", "0.3828", "0.3803", "50", "70"]
    # no selection: the epoch's valid/acc (the doc says what it is), the most likely one's test
    assert second.split()[4:9] == ["3", "0.1684", "0.2500", "100", "200"]


def test_the_quickstart_says_what_valid_acc_is():
    text = (Path(__file__).resolve().parent.parent / "docs" / "quickstart.md").read_text()
    assert "`VALID_ACC` is its selected architecture's" in " ".join(text.split())


STAGES = "data: {{name: digits}}\nspace:\n  stages:\n{stages}"


@pytest.mark.parametrize(
    "stages, said",
    [
        (
            "    - {name: s2, width: 8}\n    - {width: 8}\n",
            "stages.1 has the default name 's2' (a stage without a name is s1, s2, ... by its "
            "position), which stages.0 is given; name stages.1 or rename stages.0",
        ),
        (
            "    - {width: 8}\n    - {name: s1, width: 8}\n",
            "stages.0 has the default name 's1' (a stage without a name is s1, s2, ... by its "
            "position), which stages.1 is given; name stages.0 or rename stages.1",
        ),
        (
            "    - {name: a, width: 8}\n    - {name: a, width: 8}\n",
            "stages.0 and stages.1 are both named 'a'; rename one",
        ),
    ],
    ids=["given-then-default", "default-then-given", "both-given"],
)
def test_a_stage_name_clash_says_which_name_is_a_default(tmp_path, stages, said):
    p = tmp_path / "c.yaml"
    p.write_text(STAGES.format(stages=stages))
    message = _refused([], p)
    assert message.startswith(f"{p}:5: space.stages.1")
    assert f": {said} (names key choice paths such as space.stages." in message
