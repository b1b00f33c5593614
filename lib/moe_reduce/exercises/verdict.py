"""A checker's verdict on one answer: passed, failed or not attempted yet, with the message a learner reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

MARKS = {"passed": "✓", "failed": "✗", "unattempted": "·"}


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one answer and the sentences that explain it."""

    status: str  # "passed", "failed" or "unattempted"
    message: str

    @property
    def passed(self) -> bool:
        """Whether the answer passed."""
        return self.status == "passed"

    def text(self, name: str) -> str:
        """The verdict as printed under the exercise: a mark, the exercise's name, the message."""
        label = {"passed": "passed", "failed": "not yet right", "unattempted": "not attempted yet"}[self.status]
        return f"{MARKS[self.status]} {name}: {label}: {self.message}"


def passed(message: str) -> Verdict:
    """A passing verdict."""
    return Verdict("passed", message)


def failed(message: str) -> Verdict:
    """A failing verdict: says what is wrong, where, and what was expected."""
    return Verdict("failed", message)


def unattempted(message: str) -> Verdict:
    """The answer is still the placeholder: nothing was checked."""
    return Verdict("unattempted", message)


def same_text(answer: Any, starter: str) -> bool:
    """Whether a text answer is the starter untouched (None counts as untouched; whitespace is ignored)."""
    return answer is None or (isinstance(answer, str) and answer.split() == starter.split())


def code_answer(answer: Any, starter: str, untouched: str, what: str) -> Verdict | None:
    """None when the answer is code to run; else why not: the starter untouched, or not a string of `what`."""
    if same_text(answer, starter):
        return unattempted(untouched)
    if not isinstance(answer, str):
        return failed(f"expected {what} as a string, got {type(answer).__name__}")
    return None


def call_learner(fn: Callable, *args: Any) -> tuple[Any, Verdict | None]:
    """Call the learner's function; (result, None), or (None, a failing verdict naming the exception)."""
    try:
        return fn(*args), None
    except Exception as e:  # the learner's code may raise anything; report it, never re-raise
        return None, failed(f"your function raised {type(e).__name__}: {e}")


def check_count(answer: Any, variable: str, right: int, mistakes: dict[str, int], praise: str, hint: str, *,
                digits: int, every_slip: bool = True) -> Verdict:
    """An integer count of bytes (a bool is no count) against the right one: passes with `praise`; else names the
    slips (`mistakes`: what was slipped -> the count it gives) the answer equals, every one or the first, or says
    how far off it is (to `digits` decimals) and gives `hint`."""
    if answer is None:
        return unattempted(f"set {variable} to your count (an int).")
    if not isinstance(answer, (int, np.integer)) or isinstance(answer, bool):
        return failed(f"expected a whole number of bytes (an int), got {answer!r}")
    if answer == right:
        return passed(praise)
    slips = [what for what, value in mistakes.items() if value == answer][: None if every_slip else 1]
    if slips:
        return failed(f"{answer:,} is the count with " + "; or with ".join(slips) + ".")
    return failed(f"{answer:,} is {100 * (answer - right) / right:+.{digits}f}% off. {hint}")
