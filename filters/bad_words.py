"""Bad-word fraction: a cheap toxicity proxy per language (C4's "List of Dirty, Naughty,
Obscene or Otherwise Bad Words" rule, Raffel et al. 2020, made a ratio with a threshold).

``files`` maps a language code to a word list (one word per line); a document's language
is its ``language`` column (from ``lang_id`` earlier in the same pass), else
``default_language``. Documents in a language without a list score 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from filters import DATA_DIR, Filter, read_word_list, register
from filters._text import ratio, words

DEFAULT_LISTS = {"en": str(DATA_DIR / "bad_words_en.txt")}


@register("bad_words")
@dataclass(frozen=True)
class BadWords(Filter):
    """Fraction of words found in the document language's bad-word list (reject above ``max_ratio``)."""

    files: Mapping[str, str] | None = None
    default_language: str = "en"
    max_ratio: float = 0.01

    keys: ClassVar[tuple[str, ...]] = ("bad_words", "bad_word_ratio", "has_list")
    inputs: ClassVar[tuple[str, ...]] = ("text", "language")
    score_params: ClassVar[tuple[str, ...]] = ("files", "default_language")
    path_params: ClassVar[tuple[str, ...]] = ("files",)

    def _list_for(self, language: str) -> frozenset[str] | None:
        path = (self.files or DEFAULT_LISTS).get(language)
        return read_word_list(path) if path else None

    def setup(self) -> None:
        for language in self.files or DEFAULT_LISTS:
            self._list_for(language)

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        listed = self._list_for(doc.get("language") or self.default_language)
        if listed is None:
            return {"bad_words": 0.0, "bad_word_ratio": 0.0, "has_list": 0.0}
        tokens = words((doc.get("text") or "").lower())
        bad = sum(1 for w in tokens if w in listed)
        return {"bad_words": float(bad), "bad_word_ratio": ratio(bad, len(tokens)), "has_list": 1.0}

    def reject(self, s: Mapping[str, Any]) -> str | None:
        return "bad_word_ratio" if s["bad_word_ratio"] > self.max_ratio else None
