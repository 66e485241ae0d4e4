"""Small text helpers shared by the heuristic filters (whitespace words, lines, duplicates)."""
from __future__ import annotations

import re
import string
from collections import Counter
from itertools import compress
from typing import Iterable, Sequence

PUNCTUATION = string.punctuation + "“”‘’«»„‚‹›…–—·•¡¿、。，！？：；（）【】《》「」"
HAS_WORD_CHAR = re.compile(r"\w").search
HAS_LETTER = re.compile(r"[^\W\d_]").search
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def words(text: str) -> list[str]:
    """Whitespace tokens with surrounding punctuation stripped; punctuation-only tokens dropped."""
    stripped = (token.strip(PUNCTUATION) for token in text.split())
    return [w for w in stripped if w]


def nonblank_lines(text: str) -> list[str]:
    """Lines stripped of surrounding whitespace, blank ones dropped (``\\r\\n`` safe)."""
    return [line for line in (raw.strip() for raw in text.split("\n")) if line]


def paragraphs(text: str) -> list[str]:
    """Blocks separated by at least one blank line, stripped, empty ones dropped."""
    return [p for p in (raw.strip() for raw in PARAGRAPH_BREAK.split(text)) if p]


def duplicates(items: Iterable[str]) -> tuple[int, int]:
    """Count of items seen before, and their characters (first occurrences are not duplicates)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def ngrams(ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return list(zip(*(ids[k:] for k in range(n))))


def top_ngram_chars(ids: Sequence[int], lengths: Sequence[int], n: int) -> int:
    """Characters covered by all occurrences of the most frequent repeated n-gram (0 if none repeats)."""
    grams = ngrams(ids, n)
    if not grams:
        return 0
    (gram, count), = Counter(grams).most_common(1)
    if count < 2:
        return 0
    first = grams.index(gram)
    return count * sum(lengths[first:first + n])


def duplicated_ngram_chars(ids: Sequence[int], lengths: Sequence[int], n: int) -> int:
    """Characters of words inside any n-gram occurring more than once, each word counted once."""
    grams = ngrams(ids, n)
    counts = Counter(grams)
    if not counts or max(counts.values()) < 2:
        return 0
    covered = bytearray(len(ids))
    span = b"\x01" * n
    for start, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[start:start + n] = span
    return sum(compress(lengths, covered))


def word_ids(tokens: Sequence[str]) -> list[int]:
    """Map each distinct word to a small int (n-gram counting on ints is much faster)."""
    index: dict[str, int] = {}
    return [index.setdefault(w, len(index)) for w in tokens]
