"""User-facing errors: bad input is reported in one line per problem and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["UserError", "ConfigError", "Problem", "did_you_mean"]


class UserError(Exception):
    """A problem with the user's input or environment (not a bug): no traceback, exit status 2."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a file: ``file:line: where: what``."""

    file: str
    line: int | None
    where: str
    what: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.where}: {self.what}" if self.where else f"{loc}: {self.what}"


class ConfigError(UserError):
    """One or more problems in a configuration file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A '; did you mean ...?' suffix naming the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
