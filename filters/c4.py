"""C4 cleaning heuristics (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
with a Unified Text-to-Text Transformer", Section 2.2), as a document-level filter.

C4 keeps only lines that end in terminal punctuation, have at least 3 words and mention
neither "javascript" nor a cookie/terms-of-use policy (the policy list follows the
reference TFDS ``c4_utils``); a page is dropped if fewer than 5 sentences survive, or if it
contains "lorem ipsum", a curly brace, or (optionally) a word from a bad-words list.

Two registered names share one definition of the line rules (:func:`line_verdict`):

- ``c4`` measures the page (lines kept, sentences, lorem ipsum …) and rejects in ``select``;
  it does not rewrite the text;
- ``c4_lines`` is a modifier: it rewrites the text to the lines C4 keeps (stripped, joined
  with ``\n``, blank lines dropped, as TFDS ``c4_utils.clean_page`` does) and counts the
  removed lines by rule. It keeps every document: the page rules stay with ``c4``, so
  ``score: [c4_lines, c4]`` then ``select`` is the whole C4 cleaning (``c4`` then measures
  the rewritten text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from filters import Filter, Modifier, read_word_list, register
from filters._text import words

TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                  "use of cookies", "use cookies")
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")


def count_sentences(line: str) -> int:
    """Sentences in a line that ends in terminal punctuation: sentence-final marks + 1 if unterminated."""
    ends = len(SENTENCE_END.findall(line))
    return max(ends, 1)


def line_verdict(line: str, min_words: int) -> str | None:
    """Why C4 drops a stripped, non-blank ``line`` (the first rule it breaks), ``None`` if it keeps it."""
    if not line.endswith(TERMINAL_PUNCTUATION) or line.endswith(("...", "…")):
        return "no_terminal_punctuation"
    if len(line.split()) < min_words:
        return "too_few_words"
    lower = line.lower()
    if "javascript" in lower:
        return "javascript"
    if any(phrase in lower for phrase in POLICY_PHRASES):
        return "policy"
    return None


@register("c4")
@dataclass(frozen=True)
class C4(Filter):
    """C4 page rules (Raffel et al. 2020, Sec. 2.2); defaults from the paper."""

    min_words_per_line: int = 3
    min_sentences: int = 5
    reject_lorem_ipsum: bool = True
    reject_curly_brace: bool = True
    bad_words_file: str | None = None
    max_bad_words: int = 0

    keys: ClassVar[tuple[str, ...]] = ("lines", "kept_lines", "sentences", "javascript_lines",
                                       "policy_lines", "lorem_ipsum", "curly_brace", "bad_words")
    score_params: ClassVar[tuple[str, ...]] = ("min_words_per_line", "bad_words_file")
    path_params: ClassVar[tuple[str, ...]] = ("bad_words_file",)

    def setup(self) -> None:
        if self.bad_words_file:
            read_word_list(self.bad_words_file)

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        text = doc.get("text") or ""
        lower = text.lower()
        lines = kept = sentences = javascript = policy = 0
        for raw in text.split("\n"):
            line = raw.strip()
            if not line:
                continue
            lines += 1
            verdict = line_verdict(line, self.min_words_per_line)
            javascript += verdict == "javascript"
            policy += verdict == "policy"
            if verdict is not None:
                continue
            kept += 1
            sentences += count_sentences(line)
        bad = 0
        if self.bad_words_file:
            listed = read_word_list(self.bad_words_file)
            bad = sum(1 for w in words(lower) if w in listed)
        return {
            "lines": float(lines), "kept_lines": float(kept), "sentences": float(sentences),
            "javascript_lines": float(javascript), "policy_lines": float(policy),
            "lorem_ipsum": float("lorem ipsum" in lower), "curly_brace": float("{" in text),
            "bad_words": float(bad),
        }

    def reject(self, s: Mapping[str, Any]) -> str | None:
        if self.reject_lorem_ipsum and s["lorem_ipsum"]:
            return "lorem_ipsum"
        if self.reject_curly_brace and s["curly_brace"]:
            return "curly_brace"
        if s["bad_words"] > self.max_bad_words:
            return "bad_words"
        if s["sentences"] < self.min_sentences:
            return "too_few_sentences"
        return None


@register("c4_lines")
@dataclass(frozen=True)
class C4Lines(Modifier):
    """Rewrite the text to the lines C4 keeps (Raffel et al. 2020, Sec. 2.2); count removed lines by rule.

    Drops lines without terminal punctuation, with fewer than ``min_words_per_line`` words,
    mentioning javascript, or a cookie/terms-of-use policy (the rules of ``c4``); strips the
    kept lines and drops blank ones. Page rules (lorem ipsum, curly brace, sentences) stay with ``c4``.
    """

    min_words_per_line: int = 3

    keys: ClassVar[tuple[str, ...]] = ("lines", "kept_lines", "removed_lines", "no_terminal_punctuation",
                                       "too_few_words", "javascript", "policy", "removed_chars")
    score_params: ClassVar[tuple[str, ...]] = ("min_words_per_line",)

    def apply(self, text: str) -> tuple[str, dict[str, float]]:
        counts = dict.fromkeys(self.keys, 0.0)
        kept = []
        for raw in text.split("\n"):
            line = raw.strip()
            if not line:
                continue
            counts["lines"] += 1
            verdict = line_verdict(line, self.min_words_per_line)
            if verdict is None:
                kept.append(line)
            else:
                counts[verdict] += 1
        new = "\n".join(kept)
        counts["kept_lines"] = float(len(kept))
        counts["removed_lines"] = counts["lines"] - counts["kept_lines"]
        counts["removed_chars"] = float(len(text) - len(new))
        return new, counts
