"""What a refused job file says: every `Problem`, each with its field path."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem", "SpecError"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file: where (dotted field path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class SpecError(ValueError):
    """A job file that does not validate; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"job file is invalid ({n} problem{'s' if n != 1 else ''})"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))

    def __str__(self) -> str:
        return self.args[0]
