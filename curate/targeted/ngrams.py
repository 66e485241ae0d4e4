"""N-gram overlap between documents and benchmark test sets (pure Python + numpy, no Spark).

GPT-3 style (Brown et al. 2020, appendix C): words are normalised (Unicode NFKC, case-folded,
punctuation dropped, apostrophes joined), every 13-gram of a benchmark example goes into an
index, and a document is contaminated by a benchmark when it shares n-grams with it. An example
shorter than ``n`` words but at least ``min_words`` long is indexed as one whole-example gram
(GPT-3 flags "overlap with the whole example when it is shorter than 13-grams").

n-grams are 64-bit hashes: each word hashed once (SipHash), n-grams combined by a polynomial
over the word hashes, vectorised with numpy. :func:`scan` is the reference; :func:`scan_many`
gives the same results for a batch many times faster by running :func:`scan` only on the
documents a compiled prefilter (:class:`Prefilter`) cannot clear.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from typing import Iterable, Sequence

import numpy as np

WORD = re.compile(r"\w+(?:['’]\w+)*")
_APOSTROPHES = str.maketrans("", "", "'’")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def words(text: str) -> list[str]:
    """Normalised words of ``text`` (in order)."""
    found = WORD.findall(text or "")
    return normalize_words("\0".join(found)).split("\0") if found else []


def word_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end character offsets of the words of ``text`` (same order as :func:`words`)."""
    spans = np.array([m.span() for m in WORD.finditer(text or "")], dtype=np.int64).reshape(-1, 2)
    return spans[:, 0], spans[:, 1]


def normalize_words(joined: str) -> str:
    """NFKC, case-folded, apostrophes dropped (word separators are kept as they are)."""
    return unicodedata.normalize("NFKC", joined).casefold().translate(_APOSTROPHES)


def word_hashes(tokens: Sequence[str]) -> np.ndarray:
    """64-bit hash of each word (pandas' keyed SipHash: vectorised, the same in every process)."""
    import pandas as pd

    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    return pd.util.hash_array(np.array(tokens, dtype=object), categorize=False).astype(np.uint64)


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """The hash of every run of ``n`` consecutive words (``len - n + 1`` values, or none)."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    acc = hashes[:count].copy()
    for offset in range(1, n):
        acc = acc * _MULTIPLIER + hashes[offset:offset + count]
    return _mix(acc ^ np.uint64(n))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the polynomial's bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class NgramIndex:
    """Sorted unique n-gram hashes; ``owners[i]`` indexes ``groups`` (the benchmarks holding it)."""

    n: int
    lengths: tuple[int, ...]       # gram lengths to scan documents for (n and short-example lengths)
    names: tuple[str, ...]         # benchmark names
    hashes: np.ndarray             # uint64, sorted, unique
    owners: np.ndarray             # int32 per hash
    groups: tuple[tuple[int, ...], ...]
    prefilter: "Prefilter | None" = field(default=None, repr=False, compare=False)

    def lookup(self, grams: np.ndarray) -> np.ndarray:
        """Group id of each gram, or -1 when it is not in the index."""
        if len(self.hashes) == 0 or len(grams) == 0:
            return np.full(len(grams), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.hashes, grams), len(self.hashes) - 1)
        return np.where(self.hashes[pos] == grams, self.owners[pos].astype(np.int64), -1)

    def restricted(self, hashes: np.ndarray, owners: np.ndarray) -> "NgramIndex":
        """The same benchmarks and lengths with only the given (hash, group) entries."""
        order = np.argsort(hashes, kind="stable")
        return NgramIndex(self.n, self.lengths, self.names, np.asarray(hashes, np.uint64)[order],
                          np.asarray(owners, np.int32)[order], self.groups)

    def ngrams_per_benchmark(self) -> dict[str, int]:
        counts = np.bincount(self.owners, minlength=len(self.groups)) if len(self.owners) else []
        totals = dict.fromkeys(self.names, 0)
        for group, count in zip(self.groups, counts):
            for b in group:
                totals[self.names[b]] += int(count)
        return totals


def example_grams(hashes: np.ndarray, n: int, min_words: int) -> tuple[np.ndarray, int]:
    """(gram hashes, gram length) of one benchmark example's word hashes; none when too short."""
    if len(hashes) >= n:
        return ngram_hashes(hashes, n), n
    if len(hashes) >= min_words:
        return ngram_hashes(hashes, len(hashes)), len(hashes)
    return np.zeros(0, dtype=np.uint64), 0


def build_index(examples: Iterable[tuple[str, str]], n: int = 13, min_words: int = 8) -> tuple[NgramIndex, dict]:
    """Index ``(benchmark, text)`` pairs; also returns per-benchmark counts of short examples skipped."""
    if n < 1 or min_words < 1:
        raise ValueError("n and min_words must be >= 1")
    names: dict[str, int] = {}
    owners_of_example, tokens, gram_lengths = [], [], []
    for benchmark, text in examples:
        owners_of_example.append(names.setdefault(benchmark, len(names)))
        tokens.append(words(text))
    all_hashes = word_hashes([t for example in tokens for t in example])
    bounds = np.cumsum([0] + [len(t) for t in tokens])
    skipped = dict.fromkeys(names, 0)
    lengths, gram_parts, owner_parts = {n}, [], []
    for b, lo, hi in zip(owners_of_example, bounds[:-1], bounds[1:]):
        grams, length = example_grams(all_hashes[lo:hi], n, min_words)
        gram_lengths.append(length)
        if length == 0:
            skipped[next(k for k, v in names.items() if v == b)] += 1
            continue
        lengths.add(length)
        gram_parts.append(grams)
        owner_parts.append(np.full(len(grams), b, dtype=np.int32))
    empty = (np.zeros(0, np.uint64), np.zeros(0, np.int32))
    hashes, owners, groups = _group_owners(*(
        (np.concatenate(gram_parts), np.concatenate(owner_parts)) if gram_parts else empty), len(names))
    index = NgramIndex(n, tuple(sorted(lengths)), tuple(sorted(names, key=names.get)), hashes, owners, groups,
                       Prefilter.build(tokens, gram_lengths, n, tuple(sorted(lengths))))
    return index, skipped


def _group_owners(hashes: np.ndarray, owners: np.ndarray, n_names: int):
    """Unique sorted hashes, each with the id of the set of benchmarks that hold it."""
    order = np.lexsort((owners, hashes))
    hashes, owners = hashes[order], owners[order]
    distinct = np.r_[True, (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])] if len(hashes) else []
    hashes, owners = hashes[distinct], owners[distinct]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if len(hashes) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(hashes)])
    group_of = {(b,): b for b in range(n_names)}  # one-benchmark sets first: group id = benchmark id
    unique_owners = owners[starts].astype(np.int32)
    for i in np.flatnonzero(sizes > 1).tolist():  # n-grams shared by several benchmarks (rare)
        members = tuple(owners[starts[i]:starts[i] + sizes[i]].tolist())
        unique_owners[i] = group_of.setdefault(members, len(group_of))
    groups = tuple(sorted(group_of, key=group_of.get))
    return hashes[starts], unique_owners, groups


def document_grams(text: str, lengths: Sequence[int]) -> list[tuple[int, np.ndarray]]:
    """For each gram length, the hash of every gram of the document (in word order)."""
    hashes = word_hashes(words(text))
    return [(length, ngram_hashes(hashes, length)) for length in lengths]


@dataclass(frozen=True)
class Overlap:
    """What one document shares with the index."""

    ngrams: dict[str, int]          # benchmark -> distinct matching n-grams
    spans: list[tuple[int, int]]    # merged character spans of the matching n-grams


def scan(text: str, index: NgramIndex) -> Overlap:
    """Count distinct matching n-grams per benchmark and locate them in ``text``."""
    found = []
    for length, grams in document_grams(text, index.lengths):
        owners = index.lookup(grams)
        found += [(pos, length, int(owners[pos]), int(grams[pos])) for pos in np.flatnonzero(owners >= 0).tolist()]
    return _overlap(text, index, found)


def _overlap(text: str, index: NgramIndex, found: list[tuple[int, int, int, int]]) -> Overlap:
    """The overlap of ``text`` from its matching grams: (word position, length, group, hash)."""
    if not found:
        return Overlap({}, [])
    matched: dict[int, set[int]] = {}
    for _, _, group, gram in found:
        for b in index.groups[group]:
            matched.setdefault(b, set()).add(gram)
    starts, ends = word_spans(text)  # only documents with a match pay for offsets
    counts = {index.names[b]: len(hashes) for b, hashes in sorted(matched.items())}
    return Overlap(counts, merge_spans((int(starts[pos]), int(ends[pos + length - 1])) for pos, length, _, _ in found))


def scan_many(texts: Sequence[str], index: NgramIndex) -> list[Overlap]:
    """:func:`scan` of each text. With the index's prefilter, only the grams it reports are
    looked up, in the documents it reports (see :class:`Prefilter`); without, :func:`scan`."""
    if index.prefilter is None:
        return [scan(text, index) for text in texts]
    overlaps = [Overlap({}, []) for _ in texts]
    for i, (word_count, positions) in index.prefilter.suspects(texts).items():
        overlaps[i] = _rescan(texts[i], index, word_count, positions)
    return overlaps


def _rescan(text: str, index: NgramIndex, word_count: int, positions: dict[int, np.ndarray]) -> Overlap:
    """:func:`scan` restricted to the grams at ``positions`` (gram length -> word positions)."""
    hashes = word_hashes(words(text))
    if len(hashes) != word_count:  # the prefilter's words differ from words(): never seen, but be safe
        return scan(text, index)
    found = []
    for length, at in positions.items():
        at = np.unique(at)
        grams = ngram_hashes(hashes, length)[at]
        owners = index.lookup(grams)
        found += [(pos, length, int(owner), int(gram))
                  for pos, owner, gram in zip(at.tolist(), owners.tolist(), grams.tolist()) if owner >= 0]
    return _overlap(text, index, found)


Suspect = tuple[int, dict[int, np.ndarray]]  # a document's word count, {gram length: word positions}


@dataclass(frozen=True)
class Prefilter:
    """Where documents may share a gram with the index: no false negative, rare false positives.

    Words are found and normalised exactly as :func:`words` does (ASCII words in compiled code,
    the others by :func:`normalize_words`) and hashed with a second, independent 64-bit hash,
    so a gram of a document that equals a gram of an example (the same normalised words) is
    always reported. Reports are only suspects (this hash can collide) and are looked up in the
    index by :func:`_rescan` with the reference hashes. The one way :func:`scan_many` could
    differ from :func:`scan` is a SipHash collision making :func:`scan` report a false match
    (odds about 2^-64 per gram looked up).
    """

    n: int                 # length of the grams of examples that are long enough
    anchor: int            # words per anchor (at most 8, and no more than the shortest gram)
    short_lengths: np.ndarray  # lengths of the grams of examples indexed whole (< n words)
    anchor_bits: np.ndarray    # Bloom filter of every ``anchor``-word run of the n-gram examples
    anchor_log2: int
    short_bits: np.ndarray     # Bloom filter of the first ``anchor`` words of the whole-example grams
    short_log2: int
    grams: np.ndarray      # hash set of every gram

    @staticmethod
    def build(tokens: Sequence[Sequence[str]], gram_lengths: Sequence[int], n: int,
              lengths: Sequence[int]) -> "Prefilter | None":
        """From each example's normalised words and its gram length (0: not indexed); ``None``
        without numba (:func:`scan_many` then runs :func:`scan` on every document)."""
        try:
            from curate.targeted import _decontam_kernels as kernels
        except ImportError:
            return None
        flat = [word for example in tokens for word in example]
        word_hashes_ = kernels.hash_separated(_code_points("\0".join(flat))) if flat else np.zeros(0, np.uint64)
        bounds = np.cumsum([0] + [len(t) for t in tokens]).astype(np.int64)
        anchor = min(8, *lengths)
        grams, anchors, shorts = kernels.index_grams(word_hashes_, bounds, np.asarray(gram_lengths, np.int64),
                                                     n, anchor)
        anchor_log2, short_log2 = _bloom_log2(len(anchors)), _bloom_log2(len(shorts))
        return Prefilter(n, anchor, np.asarray([x for x in sorted(lengths) if x < n], np.int64),
                         kernels.bloom(anchors, anchor_log2), anchor_log2, kernels.bloom(shorts, short_log2),
                         short_log2, kernels.hash_set(grams))

    def suspects(self, texts: Sequence[str], chunk_chars: int = 1 << 21) -> dict[int, Suspect]:
        """Text number -> (its word count, {gram length: word positions}) for each text with a
        suspect gram. Texts go to compiled code ``chunk_chars`` code points at a time."""
        found, chunk, first, size = {}, [], 0, 0
        for i, text in enumerate(texts):
            chunk.append(text)
            size += len(text) + 1
            if size >= chunk_chars or i == len(texts) - 1:
                found.update(self._suspects(chunk, first))
                chunk, first, size = [], i + 1, 0
        return found

    def _suspects(self, texts: list[str], first: int) -> dict[int, Suspect]:
        from curate.targeted import _decontam_kernels as kernels

        joined = "\0".join(texts)  # NUL is neither a word character nor an apostrophe
        starts, ends, hashes, plain = kernels.tokenize(_code_points(joined), _char_classes())
        _hash_unicode_words(joined, starts, ends, hashes, plain)
        text_starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
        doc_bounds = np.append(np.searchsorted(starts, text_starts), len(starts)).astype(np.int64)
        hits = kernels.gram_hits(hashes, doc_bounds, self.n, self.anchor, self.short_lengths, self.anchor_bits,
                                 self.anchor_log2, self.short_bits, self.short_log2, self.grams)
        found: dict[int, Suspect] = {}
        for doc in np.unique(hits[:, 0]).tolist():
            mine = hits[hits[:, 0] == doc]
            positions = {length: mine[mine[:, 2] == length, 1] for length in np.unique(mine[:, 2]).tolist()}
            found[first + doc] = (int(doc_bounds[doc + 1] - doc_bounds[doc]), positions)
        return found


def _bloom_log2(count: int) -> int:
    """Bloom filter size (log2 of bits) for ``count`` values: 16 to 32 bits each (~1% false
    hits), or up to 256 while that stays within 8 KB (a small part of a CPU's L1 cache)."""
    bits = max(16 * count, min(256 * count, 1 << 16), 1 << 10)
    return min(32, int(np.ceil(np.log2(bits))))


def _hash_unicode_words(joined: str, starts: np.ndarray, ends: np.ndarray, hashes: np.ndarray,
                        plain: np.ndarray) -> None:
    """Fill in ``hashes`` of the words with non-ASCII characters: each distinct one normalised
    once by :func:`normalize_words`, as :func:`words` does."""
    from curate.targeted._decontam_kernels import hash_separated

    odd = np.flatnonzero(~plain)
    if len(odd) == 0:
        return
    raw = [joined[s:e] for s, e in zip(starts[odd].tolist(), ends[odd].tolist())]
    position = {word: i for i, word in enumerate(dict.fromkeys(raw))}
    unique_hashes = hash_separated(_code_points(normalize_words("\0".join(position))))
    hashes[odd] = unique_hashes[[position[word] for word in raw]]


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` (uint8 when it is ASCII)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


@cache
def _char_classes() -> np.ndarray:
    """The class of each code point for the tokenizer: 0 when the regex ``\\w`` does not match
    it (the table is built with the regex itself), its lower case for ASCII, else 255."""
    from curate.targeted._decontam_kernels import OTHER_WORD_CHAR

    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    table = np.zeros(sys.maxunicode + 1, np.uint8)
    table[_code_points("".join(re.findall(r"\w", everything))).astype(np.int64)] = OTHER_WORD_CHAR
    ascii_words = np.flatnonzero(table[:128])
    table[ascii_words] = np.frombuffer(bytes(ascii_words.tolist()).lower(), np.uint8)
    return table


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def cut_spans(text: str, spans: Sequence[tuple[int, int]], min_piece_chars: int) -> str:
    """Remove ``spans`` from ``text``; keep the pieces longer than ``min_piece_chars`` (stripped),
    joined by a blank line. Empty when no piece is long enough."""
    pieces, cursor = [], 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        cursor = end
    pieces.append(text[cursor:])
    return "\n\n".join(p.strip() for p in pieces if len(p.strip()) > min_piece_chars)
