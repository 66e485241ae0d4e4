"""Simple bounds: document length and character-class ratios.

No paper fixes these thresholds; the defaults are loose guards (empty documents, pages
that are mostly digits, capitals, symbols or whitespace), in the spirit of the character
ratio filters of NeMo Curator and RedPajama-V2's quality signals. Every bound is a
parameter; ``None`` disables it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from filters import Filter, register
from filters._text import ratio, words


def _outside(value: float, low: float | None, high: float | None) -> str | None:
    if low is not None and value < low:
        return "min"
    if high is not None and value > high:
        return "max"
    return None


@register("length")
@dataclass(frozen=True)
class Length(Filter):
    """Character and word count bounds (reasons ``too_short``/``too_long``/``too_few_words``/``too_many_words``)."""

    min_chars: int | None = 1
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None

    keys: ClassVar[tuple[str, ...]] = ("chars", "words")

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        text = doc.get("text") or ""
        return {"chars": float(len(text)), "words": float(len(words(text)))}

    def reject(self, s: Mapping[str, Any]) -> str | None:
        chars = _outside(s["chars"], self.min_chars, self.max_chars)
        if chars:
            return "too_short" if chars == "min" else "too_long"
        count = _outside(s["words"], self.min_words, self.max_words)
        if count:
            return "too_few_words" if count == "min" else "too_many_words"
        return None


CLASSES = ("digit", "uppercase", "symbol", "whitespace")


@register("char_ratio")
@dataclass(frozen=True)
class CharRatio(Filter):
    """Fractions of characters that are digits, upper-case letters, symbols/punctuation
    (neither alphanumeric nor whitespace) and whitespace, with min/max bounds.
    Reasons look like ``max_digit`` or ``min_whitespace``."""

    min_digit: float | None = None
    max_digit: float | None = 0.3
    min_uppercase: float | None = None
    max_uppercase: float | None = 0.5
    min_symbol: float | None = None
    max_symbol: float | None = 0.25
    min_whitespace: float | None = None
    max_whitespace: float | None = 0.5

    keys: ClassVar[tuple[str, ...]] = CLASSES

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        text = doc.get("text") or ""
        n = len(text)
        alnum = sum(map(str.isalnum, text))
        space = sum(map(str.isspace, text))
        return {
            "digit": ratio(sum(map(str.isdigit, text)), n),
            "uppercase": ratio(sum(map(str.isupper, text)), n),
            "symbol": ratio(n - alnum - space, n),
            "whitespace": ratio(space, n),
        }

    def reject(self, s: Mapping[str, Any]) -> str | None:
        for key in CLASSES:
            side = _outside(s[key], getattr(self, f"min_{key}"), getattr(self, f"max_{key}"))
            if side:
                return f"{side}_{key}"
        return None
