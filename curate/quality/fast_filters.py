"""Faster ``score_batch`` for the Gopher quality / repetition and FineWeb filters, with the
same scores as ``filters/`` (the readable reference, which stays as it is).

Each is a subclass of the reference filter (same parameters, keys, ``reject`` and registry
name) whose ``score_batch`` shares one split of the batch into lines and words among the
filters of a pass (:func:`batch_parts`), finds words with one regex per document instead
of a ``strip`` per token, and computes the repetition n-gram scores in compiled code
(:mod:`curate.quality._score_kernels`). The ``score`` stage uses them for these families
(:func:`fast_filter`); tests check every score equal to the reference's.
"""
from __future__ import annotations

import dataclasses
import operator
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Sequence

import numpy as np

from filters._text import HAS_WORD_CHAR, PUNCTUATION, duplicates, nonblank_lines, paragraphs, ratio
from filters.c4 import C4, POLICY_PHRASES, TERMINAL_PUNCTUATION, count_sentences, line_verdict
from filters.fineweb import LINE_END_PUNCTUATION, FineWeb
from filters.gopher import BULLETS, DUP_NGRAMS, ELLIPSES, TOP_NGRAMS, GopherQuality, GopherRepetition

# A word (one per line) without a word character: filters.gopher leaves these out of "content".
NO_WORD_CHAR_LINE = re.compile(r"^[^\w\n]+$", re.MULTILINE)
# A word (one per line) without a letter (filters._text.HAS_LETTER). No PUNCTUATION character
# is a letter, so a whitespace token has a letter exactly when its stripped word has one.
NO_LETTER_LINE = re.compile(r"^(?:[^\n\w]|[\d_])*$", re.MULTILINE)


class BatchParts:
    """One batch's documents split once, each part on first use: each document's non-blank
    lines and its stripped words, each kept as one string joined by newlines (neither holds
    one), so a batch costs about twice its text in memory rather than a Python object per word."""

    def __init__(self, texts: Sequence[str]):
        self.texts = tuple(texts)

    @cached_property
    def joined_lines(self) -> list[str]:
        return ["\n".join(nonblank_lines(t)) for t in self.texts]

    def lines(self) -> Iterator[list[str]]:
        return map(_split_lines, self.joined_lines)

    @cached_property
    def _split_words(self) -> tuple[list[str], list[int], list[int]]:
        tokens = [t.split() for t in self.texts]
        words = [_words(t) for t in tokens]
        return ["\n".join(w) for w in words], list(map(len, words)), list(map(len, tokens))

    @property
    def words_split(self) -> bool:
        """Whether the words are split already."""
        return "_split_words" in self.__dict__

    @property
    def joined_words(self) -> list[str]:
        return self._split_words[0]

    @property
    def word_counts(self) -> list[int]:
        return self._split_words[1]

    @property
    def token_counts(self) -> list[int]:
        """Whitespace tokens (``str.split``), punctuation-only ones included."""
        return self._split_words[2]


_last: list = [None]  # the BatchParts of the last batch: the filters of one pass share it


def batch_parts(texts: Sequence[str]) -> BatchParts:
    """Lines and words of ``texts`` (``filters._text.nonblank_lines`` / ``words``), computed
    once for consecutive calls on the same texts (the last batch is kept until the next)."""
    parts = _last[0]
    if parts is not None and len(parts.texts) == len(texts) and all(map(operator.is_, parts.texts, texts)):
        return parts
    _last[0] = BatchParts(texts)
    return _last[0]


def _split_lines(joined: str) -> list[str]:
    return joined.split("\n") if joined else []


def _words(tokens: list[str]) -> list[str]:
    """``filters._text.words`` of a text from its ``split()`` (the same strip per token)."""
    return list(filter(None, [token.strip(PUNCTUATION) for token in tokens]))


@dataclass(frozen=True)
class FastGopherQuality(GopherQuality):
    """:class:`filters.gopher.GopherQuality` with a batch ``score_batch`` (same scores)."""

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, list]:
        parts, stop_words = batch_parts(texts), self._stop_words()
        out: dict[str, list] = {k: [] for k in self.keys}
        for text, lines, joined, n_stripped, n_tokens in zip(texts, parts.lines(), parts.joined_words,
                                                             parts.word_counts, parts.token_counts):
            with_letter = n_stripped - len(NO_LETTER_LINE.findall(joined)) if n_stripped else 0
            if NO_WORD_CHAR_LINE.search(joined):  # rare: words of symbols only are not "content"
                content = [w for w in _split_lines(joined) if HAS_WORD_CHAR(w)]
                joined = "\n".join(content)
                n_words, content_chars = len(content), sum(map(len, content))
            else:  # the joined words' length less the newlines between them
                n_words, content_chars = n_stripped, len(joined) - n_stripped + 1 if n_stripped else 0
            scores = {
                "words": float(n_words),
                "mean_word_length": ratio(content_chars, n_words),
                "hash_ratio": ratio(text.count("#"), n_words),
                "ellipsis_ratio": ratio(text.count("...") + text.count("…"), n_words),
                "bullet_lines": ratio(sum(line.startswith(BULLETS) for line in lines), len(lines)),
                "ellipsis_lines": ratio(sum(line.endswith(ELLIPSES) for line in lines), len(lines)),
                "alpha_words": ratio(with_letter, n_tokens),
                # lower() of the joined words = each word's lower(): "\n" ends a final sigma as a string end does
                "stop_words": float(len(stop_words.intersection(joined.lower().split("\n"))) if n_words else 0),
            }
            for key, column in out.items():
                column.append(scores[key])
        return out


@dataclass(frozen=True)
class FastGopherRepetition(GopherRepetition):
    """:class:`filters.gopher.GopherRepetition` with the n-gram scores compiled (same scores)."""

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, list]:
        from curate.quality._score_kernels import number_words, repetition_chars

        parts = batch_parts(texts)
        every_word = "\n".join(j for j in parts.joined_words if j)
        bounds = np.cumsum([0] + parts.word_counts).astype(np.int64)
        ids, lengths = number_words(np.frombuffer(every_word.encode("utf-32-le", "surrogatepass"), np.uint32), bounds)
        chars = repetition_chars(ids, lengths, bounds, np.array(TOP_NGRAMS, np.int64),
                                 np.array(DUP_NGRAMS, np.int64)).tolist()
        running = np.concatenate(([0], np.cumsum(lengths)))
        word_chars = (running[bounds[1:]] - running[bounds[:-1]]).tolist()
        ngram_keys = [f"top_{n}gram" for n in TOP_NGRAMS] + [f"dup_{n}gram" for n in DUP_NGRAMS]
        out: dict[str, list] = {k: [] for k in self.keys}
        for d, (text, lines) in enumerate(zip(texts, parts.lines())):
            paras = paragraphs(text)
            dup_lines, dup_line_chars = duplicates(lines)
            dup_paras, dup_para_chars = duplicates(paras)
            scores = {"dup_line_frac": ratio(dup_lines, len(lines)), "dup_para_frac": ratio(dup_paras, len(paras)),
                      "dup_line_char_frac": ratio(dup_line_chars, len(text)),
                      "dup_para_char_frac": ratio(dup_para_chars, len(text))}
            scores.update((key, ratio(c, word_chars[d])) for key, c in zip(ngram_keys, chars[d]))
            for key, column in out.items():
                column.append(scores[key])
        return out


@dataclass(frozen=True)
class FastFineWeb(FineWeb):
    """:class:`filters.fineweb.FineWeb` reading the shared lines and words (same scores); it only
    counts words, so it does not make the joined words when no other filter has."""

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, list]:
        parts = batch_parts(texts)
        counts = parts.word_counts if parts.words_split else [len(_words(t.split())) for t in texts]
        out: dict[str, list] = {k: [] for k in self.keys}
        for text, lines, n_words in zip(texts, parts.lines(), counts):
            scores = {
                "line_punct_ratio": ratio(sum(line.endswith(LINE_END_PUNCTUATION) for line in lines), len(lines)),
                "short_line_ratio": ratio(sum(len(line) <= self.short_line_length for line in lines), len(lines)),
                "dup_line_char_ratio": ratio(duplicates(lines)[1], sum(map(len, lines))),
                "newline_word_ratio": ratio(text.count("\n"), n_words),
            }
            for key, column in out.items():
                column.append(scores[key])
        return out


@dataclass(frozen=True)
class FastC4(C4):
    """:class:`filters.c4.C4` reading the shared lines; the javascript and policy rules are
    only tried on the lines of pages that mention them (same scores)."""

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, list]:
        if self.bad_words_file:  # the bad-words count needs the lower-cased words: the reference
            return super().score_batch(texts)
        out: dict[str, list] = {k: [] for k in self.keys}
        for text, lines in zip(texts, batch_parts(texts).lines()):
            # lower() maps characters one by one (final sigma aside), so a line's lower() holds
            # these ASCII phrases only if the page's does
            lower = text.lower()
            mentions = "javascript" in lower or any(phrase in lower for phrase in POLICY_PHRASES)
            kept = sentences = javascript = policy = 0
            for line in lines:
                if mentions:
                    verdict = line_verdict(line, self.min_words_per_line)
                    javascript += verdict == "javascript"
                    policy += verdict == "policy"
                elif not line.endswith(TERMINAL_PUNCTUATION) or line.endswith(ELLIPSES):
                    continue
                else:
                    verdict = None if len(line.split()) >= self.min_words_per_line else "too_few_words"
                if verdict is None:
                    kept += 1
                    sentences += count_sentences(line)
            scores = {"lines": float(len(lines)), "kept_lines": float(kept), "sentences": float(sentences),
                      "javascript_lines": float(javascript), "policy_lines": float(policy),
                      "lorem_ipsum": float("lorem ipsum" in lower), "curly_brace": float("{" in text),
                      "bad_words": 0.0}
            for key, column in out.items():
                column.append(scores[key])
        return out


FAST = {GopherQuality: FastGopherQuality, C4: FastC4, GopherRepetition: FastGopherRepetition, FineWeb: FastFineWeb}


def fast_filter(flt):
    """The faster equivalent of filter ``flt`` (same parameters), or ``flt`` itself."""
    fast = FAST.get(type(flt))
    if fast is None:
        return flt
    return fast(**{f.name: getattr(flt, f.name) for f in dataclasses.fields(flt)})
