"""FineWeb custom quality filters (Penedo et al. 2024, "The FineWeb Datasets: Decanting the
Web for the Finest Text Data at Scale", Section 3.4 "custom filters").

Over non-blank lines: remove documents where at most 12 % of lines end in punctuation, at
least 67 % of lines are at most 30 characters long, or at least 10 % of the characters sit
in duplicated lines. The list-like rule (newlines per word above 0.3) comes from the
FineWeb release code (datatrove ``FineWebQualityFilter``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from filters import Filter, register
from filters._text import duplicates, nonblank_lines, ratio, words

LINE_END_PUNCTUATION = (".", "'", '"', "!", "?", "”", "’")


@register("fineweb")
@dataclass(frozen=True)
class FineWeb(Filter):
    """FineWeb line heuristics (Penedo et al. 2024); defaults from the paper."""

    min_line_punct_ratio: float = 0.12
    max_short_line_ratio: float = 0.67
    short_line_length: int = 30
    max_dup_line_char_ratio: float = 0.1
    max_newline_word_ratio: float = 0.3

    keys: ClassVar[tuple[str, ...]] = ("line_punct_ratio", "short_line_ratio",
                                       "dup_line_char_ratio", "newline_word_ratio")
    score_params: ClassVar[tuple[str, ...]] = ("short_line_length",)

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        text = doc.get("text") or ""
        lines = nonblank_lines(text)
        line_chars = sum(map(len, lines))
        return {
            "line_punct_ratio": ratio(sum(line.endswith(LINE_END_PUNCTUATION) for line in lines), len(lines)),
            "short_line_ratio": ratio(sum(len(line) <= self.short_line_length for line in lines), len(lines)),
            "dup_line_char_ratio": ratio(duplicates(lines)[1], line_chars),
            "newline_word_ratio": ratio(text.count("\n"), len(words(text))),
        }

    def reject(self, s: Mapping[str, Any]) -> str | None:
        if s["line_punct_ratio"] <= self.min_line_punct_ratio:
            return "line_punct_ratio"
        if s["short_line_ratio"] >= self.max_short_line_ratio:
            return "short_line_ratio"
        if s["dup_line_char_ratio"] >= self.max_dup_line_char_ratio:
            return "dup_line_char_ratio"
        if s["newline_word_ratio"] > self.max_newline_word_ratio:
            return "newline_word_ratio"
        return None
