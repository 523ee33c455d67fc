"""The strategy contract in code (nasframe.Strategy) is the one nasframe relies on: the built-in
strategies keep it, and every optional member nasframe looks for by name is listed with it."""

from __future__ import annotations

import re

from conftest import ROOT

from nasframe import ASNG, RandomSearch, Strategy
from nasframe.strategy import OPTIONAL


def test_the_built_in_strategies_keep_the_contract():
    for strategy in (ASNG([2, 3, 4], lam=2, seed=0), RandomSearch([2, 3, 4], lam=2, seed=0)):
        assert isinstance(strategy, Strategy)
        assert strategy.sample(2).shape == (2, 3)


def test_every_member_nasframe_looks_for_by_name_is_listed_as_optional():
    looked_for = set()
    for path in (ROOT / "nasframe").glob("*.py"):
        text = path.read_text()
        looked_for |= set(re.findall(r'hasattr\((?:self\.)?strategy, "(\w+)"\)', text))
        looked_for |= set(re.findall(r'getattr\(self\.strategy, "(\w+)"', text))
    assert looked_for and looked_for <= set(OPTIONAL), looked_for - set(OPTIONAL)
    doc = (ROOT / "nasframe" / "strategy.py").read_text()
    assert all(f"``{name}" in doc for name in OPTIONAL)
