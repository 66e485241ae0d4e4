"""Gopher / MassiveText quality and repetition filters.

Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
Gopher", Appendix A.1.1 (quality filters) and Table A1 (repetition thresholds).
Words are whitespace tokens with surrounding punctuation stripped (see ``filters._text``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from filters import DATA_DIR, Filter, read_word_list, register
from filters._text import (
    HAS_LETTER,
    HAS_WORD_CHAR,
    duplicated_ngram_chars,
    duplicates,
    nonblank_lines,
    paragraphs,
    ratio,
    top_ngram_chars,
    word_ids,
    words,
)

BULLETS = ("•", "‣", "◦", "▪", "●", "○", "■", "□", "·", "-", "*", "–")
ELLIPSES = ("...", "…")


@register("gopher_quality")
@dataclass(frozen=True)
class GopherQuality(Filter):
    """Gopher quality rules (Rae et al. 2021, App. A.1.1), defaults from the paper.

    Removes documents with fewer than 50 or more than 100,000 words, a mean word length
    outside 3..10 characters, a hash- or ellipsis-to-word ratio above 0.1, more than 90 %
    of lines starting with a bullet, more than 30 % of lines ending with an ellipsis, fewer
    than 80 % of words containing a letter, or fewer than 2 of the stop words
    "the, be, to, of, and, that, have, with" (distinct words present).
    """

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_hash_ratio: float = 0.1
    max_ellipsis_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    stop_words_file: str | None = None

    keys: ClassVar[tuple[str, ...]] = ("words", "mean_word_length", "hash_ratio", "ellipsis_ratio",
                                       "bullet_lines", "ellipsis_lines", "alpha_words", "stop_words")
    score_params: ClassVar[tuple[str, ...]] = ("stop_words_file",)
    path_params: ClassVar[tuple[str, ...]] = ("stop_words_file",)

    def _stop_words(self) -> frozenset[str]:
        return read_word_list(self.stop_words_file or DATA_DIR / "gopher_stopwords_en.txt")

    def setup(self) -> None:
        self._stop_words()

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        text = doc.get("text") or ""
        tokens = text.split()
        content = [w for w in words(text) if HAS_WORD_CHAR(w)]
        lines = nonblank_lines(text)
        n_words = len(content)
        return {
            "words": float(n_words),
            "mean_word_length": ratio(sum(map(len, content)), n_words),
            "hash_ratio": ratio(text.count("#"), n_words),
            "ellipsis_ratio": ratio(text.count("...") + text.count("…"), n_words),
            "bullet_lines": ratio(sum(line.startswith(BULLETS) for line in lines), len(lines)),
            "ellipsis_lines": ratio(sum(line.endswith(ELLIPSES) for line in lines), len(lines)),
            "alpha_words": ratio(sum(1 for t in tokens if HAS_LETTER(t)), len(tokens)),
            "stop_words": float(len(self._stop_words().intersection(w.lower() for w in content))),
        }

    def reject(self, s: Mapping[str, Any]) -> str | None:
        if not self.min_words <= s["words"] <= self.max_words:
            return "word_count"
        if not self.min_mean_word_length <= s["mean_word_length"] <= self.max_mean_word_length:
            return "mean_word_length"
        if s["hash_ratio"] > self.max_hash_ratio:
            return "hash_ratio"
        if s["ellipsis_ratio"] > self.max_ellipsis_ratio:
            return "ellipsis_ratio"
        if s["bullet_lines"] > self.max_bullet_lines:
            return "bullet_lines"
        if s["ellipsis_lines"] > self.max_ellipsis_lines:
            return "ellipsis_lines"
        if s["alpha_words"] < self.min_alpha_words:
            return "alpha_words"
        if s["stop_words"] < self.min_stop_words:
            return "stop_words"
        return None


TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


@register("gopher_repetition")
@dataclass(frozen=True)
class GopherRepetition(Filter):
    """Gopher repetition rules (Rae et al. 2021, App. A.1.1 and Table A1), thresholds from Table A1.

    Duplicate lines / paragraphs as a fraction of all lines / paragraphs and of all
    characters; characters covered by the most frequent 2/3/4-gram; characters covered by
    any duplicated 5..10-gram (each word counted once). Character fractions of n-grams are
    over word characters.
    """

    max_dup_line_frac: float = 0.30
    max_dup_para_frac: float = 0.30
    max_dup_line_char_frac: float = 0.20
    max_dup_para_char_frac: float = 0.20
    max_top_2gram: float = 0.20
    max_top_3gram: float = 0.18
    max_top_4gram: float = 0.16
    max_dup_5gram: float = 0.15
    max_dup_6gram: float = 0.14
    max_dup_7gram: float = 0.13
    max_dup_8gram: float = 0.12
    max_dup_9gram: float = 0.11
    max_dup_10gram: float = 0.10

    keys: ClassVar[tuple[str, ...]] = (
        "dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac",
        *(f"top_{n}gram" for n in TOP_NGRAMS), *(f"dup_{n}gram" for n in DUP_NGRAMS))

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        text = doc.get("text") or ""
        lines, paras = nonblank_lines(text), paragraphs(text)
        dup_lines, dup_line_chars = duplicates(lines)
        dup_paras, dup_para_chars = duplicates(paras)
        tokens = words(text)
        ids, lengths = word_ids(tokens), [len(w) for w in tokens]
        word_chars = sum(lengths)
        out = {
            "dup_line_frac": ratio(dup_lines, len(lines)),
            "dup_para_frac": ratio(dup_paras, len(paras)),
            "dup_line_char_frac": ratio(dup_line_chars, len(text)),
            "dup_para_char_frac": ratio(dup_para_chars, len(text)),
        }
        out.update(_ngram_fractions("top_{}gram", top_ngram_chars, TOP_NGRAMS, ids, lengths, word_chars))
        out.update(_ngram_fractions("dup_{}gram", duplicated_ngram_chars, DUP_NGRAMS, ids, lengths,
                                    word_chars))
        return out

    def reject(self, s: Mapping[str, Any]) -> str | None:
        for key in self.keys:
            if s[key] > getattr(self, f"max_{key}"):
                return key
        return None


def _ngram_fractions(key, chars_of, sizes, ids, lengths, word_chars) -> dict[str, float]:
    """``chars_of`` for each n in ``sizes``; stops early, as no repeated n-gram means no longer one."""
    out = dict.fromkeys((key.format(n) for n in sizes), 0.0)
    for n in sizes:
        chars = chars_of(ids, lengths, n)
        if not chars:
            break
        out[key.format(n)] = ratio(chars, word_chars)
    return out
