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


def whole_number(answer: Any) -> int | None:
    """An answer as an int when it is a whole number (an int, a NumPy integer, or a float such as 852672.0 with
    nothing after the point), else None; a bool is no number."""
    if isinstance(answer, (bool, np.bool_)):
        return None
    if isinstance(answer, (int, np.integer)):
        return int(answer)
    if isinstance(answer, (float, np.floating)) and float(answer).is_integer():
        return int(answer)
    return None


def how_far(answer: int, right: int) -> str:
    """How far a count is from the right one, in bytes and in percent (to two significant digits)."""
    diff = answer - right
    return f"{abs(diff):,} byte{'s' * (abs(diff) != 1)} {'more' if diff > 0 else 'less'} than the count ({100 * diff / right:+.2g}%)"


def check_count(answer: Any, variable: str, right: int, mistakes: dict[str, int], praise: str, hint: str) -> Verdict:
    """A whole number of bytes (a bool is no count) against the right one: passes with `praise`; else names every
    slip (`mistakes`: what was slipped -> the count it gives) the answer equals, or says how far off it is and
    gives `hint`."""
    if answer is None:
        return unattempted(f"set {variable} to your count (a whole number).")
    count = whole_number(answer)
    if count is None:
        return failed(f"expected a whole number of bytes, got {answer!r}")
    if count == right:
        return passed(praise)
    slips = [what for what, value in mistakes.items() if value == count]
    if slips:
        return failed(f"{count:,} is the count with " + "; or with ".join(slips) + ".")
    return failed(f"{count:,} is {how_far(count, right)}. {hint}")


def check_fraction(answer: Any, variable: str, right: float, mistakes: dict[str, float], praise: str,
                   hint: str) -> Verdict:
    """A positive fraction within 1% of the right one: passes with `praise`; else names every slip (`mistakes`:
    what was slipped -> the value it gives; a percent for the fraction is always one) within 1% of the answer, or
    says how far off it is and gives `hint`."""
    if answer is None:
        return unattempted(f"set {variable} to your answer, a fraction (0.5 for a half).")
    if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (int, float, np.integer, np.floating)) \
            or not answer > 0:
        return failed(f"expected a positive fraction, got {answer!r}")
    close = lambda value: abs(answer - value) <= 0.01 * value  # noqa: E731
    if close(right):
        return passed(praise)
    slips = [what for what, value in {"a percent, not a fraction": 100 * right, **mistakes}.items() if close(value)]
    if slips:
        return failed(f"{answer:g} is what you get with " + "; or with ".join(slips) + ".")
    return failed(f"{answer:g} is {100 * (answer - right) / right:+.2g}% off. {hint}")
