"""The Python examples of the quickstart run as written (documentation that cannot rot)."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "quickstart.md").read_text(), re.S)


def test_the_quickstart_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_quickstart_python_block_runs(code, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    exec(compile(code, "docs/quickstart.md", "exec"), {})


def test_the_chain_space_page_s_example_is_a_valid_space_with_the_choices_it_says(tmp_path):
    """docs/spaces.md's example space loads, and has the choices and paths the page names."""
    import yaml

    from nasframe import SearchSpace, load_config

    page = (ROOT / "docs" / "spaces.md").read_text()
    (example,) = re.findall(r"```yaml\n(.*?)```", page, re.S)
    raw = {"version": 1, "data": {"name": "mnist1d"}, **yaml.safe_load(example)}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    space = SearchSpace(load_config(tmp_path / "c.yaml")[0])
    assert f"The space above has {len(space.choices)} choices" in page
    for path in space.paths[:4]:
        assert f"`{path}`" in page
    mnist1d = SearchSpace(load_config(ROOT / "spaces" / "mnist1d.yaml")[0])
    assert f"`spaces/mnist1d.yaml`, three such stages, has {len(mnist1d.choices)}." in page


def test_the_code_map_names_every_module_and_plugin_package():
    """docs/code.md, the contributors' map, cannot silently miss a module added later."""
    page = (ROOT / "docs" / "code.md").read_text()
    modules = sorted(p.name for p in (ROOT / "nasframe").glob("*.py"))
    packages = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists())
    missing = [m for m in modules if f"`{m}`" not in page]
    missing += [p for p in packages if f"`{p}`" not in page]
    assert not missing, f"docs/code.md does not name: {missing}"
