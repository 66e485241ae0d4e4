"""Native (numba) kernels for the decontamination prefilter (see :class:`curate.targeted.ngrams.Prefilter`).

The reference scan (:func:`curate.targeted.ngrams.scan`) tokenises with a Python regex and
hashes words with pandas per document. Here a batch of documents is one code-point array:
words are found with a lookup table of the regex's own ``\\w`` class, ASCII words are
normalised (lower case, apostrophes dropped) and hashed in the same loop, and grams are
found through Bloom filters (Bloom 1970) of short word runs ("anchors", tested at every
``n - anchor + 1``-th position only) before a hash set of the grams themselves. Hashes here
are FNV-1a over code points (words) and a polynomial over word hashes (grams), finished
with splitmix64: only a filter, every hit is looked up again with the reference hashes.

Compiled code is cached on disk (``cache=True``), so Spark workers compile once per machine.
"""
from __future__ import annotations

import numpy as np
from numba import njit

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
GRAM_BASE = np.uint64(0x9E3779B97F4A7C15)
APOSTROPHE, RIGHT_QUOTE = 39, 0x2019


@njit(cache=True)
def _mix(x):
    """splitmix64 finaliser; never 0 (0 marks an empty slot of a :func:`hash_set`)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return x if x != np.uint64(0) else np.uint64(1)


OTHER_WORD_CHAR = 255  # class of the non-ASCII word characters (ASCII ones map to their lower case)


@njit(cache=True)
def _is_word(chars, i, classes):
    return i < len(chars) and classes[chars[i]] != 0


@njit(cache=True)
def tokenize(chars, classes):
    """Words of ``chars`` as the regex ``\\w+(?:['’]\\w+)*`` finds them: (starts, ends, hashes,
    ascii). ``classes`` maps a code point to 0 (not ``\\w``), its lower case (ASCII ``\\w``) or
    ``OTHER_WORD_CHAR``. ``hashes[k]`` is the FNV-1a hash of the normalised word when
    ``ascii[k]``; other words are left to the caller (normalised by Python)."""
    n = len(chars)
    starts = np.empty(n // 2 + 1, np.int64)
    ends = np.empty(n // 2 + 1, np.int64)
    hashes = np.empty(n // 2 + 1, np.uint64)
    ascii_only = np.empty(n // 2 + 1, np.bool_)
    count, i = 0, 0
    while i < n:
        if classes[chars[i]] == 0:
            i += 1
            continue
        start, h, plain = i, FNV_OFFSET, True
        while True:
            while i < n:
                c = classes[chars[i]]
                if c == 0:
                    break
                plain = plain and c != OTHER_WORD_CHAR
                h = (h ^ np.uint64(c)) * FNV_PRIME
                i += 1
            if i + 1 < n and (chars[i] == APOSTROPHE or chars[i] == RIGHT_QUOTE) and _is_word(chars, i + 1, classes):
                plain = plain and chars[i] == APOSTROPHE
                i += 1
                continue
            break
        starts[count], ends[count], hashes[count], ascii_only[count] = start, i, h, plain
        count += 1
    return starts[:count], ends[:count], hashes[:count], ascii_only[:count]


@njit(cache=True)
def hash_separated(chars):
    """FNV-1a hash of each NUL-separated piece of ``chars`` (already normalised words)."""
    out = np.empty(1 + np.sum(chars == 0), np.uint64)
    h, k = FNV_OFFSET, 0
    for c in chars:
        if c == 0:
            out[k] = h
            k += 1
            h = FNV_OFFSET
        else:
            h = (h ^ np.uint64(c)) * FNV_PRIME
    out[k] = h
    return out


@njit(cache=True)
def gram_hash(words, start, length):
    """Hash of ``words[start:start + length]``."""
    acc = np.uint64(0)
    for k in range(start, start + length):
        acc = acc * GRAM_BASE + words[k]
    return _mix(acc ^ np.uint64(length))


@njit(cache=True)
def index_grams(words, bounds, lengths, n, anchor):
    """Hashes of an index's (grams, anchors, short prefixes): example ``e`` is
    ``words[bounds[e]:bounds[e + 1]]`` with grams of ``lengths[e]`` words (0: none). Anchors
    are every ``anchor``-word run of the examples with ``n``-grams; short prefixes are the first
    ``anchor`` words of the examples indexed whole (fewer than ``n`` words)."""
    totals = np.zeros(3, np.int64)
    for e in range(len(lengths)):
        size = bounds[e + 1] - bounds[e]
        if lengths[e] > 0:
            totals[0] += size - lengths[e] + 1
            if lengths[e] == n:
                totals[1] += size - anchor + 1
            else:
                totals[2] += 1
    grams, anchors = np.empty(totals[0], np.uint64), np.empty(totals[1], np.uint64)
    shorts = np.empty(totals[2], np.uint64)
    counts = np.zeros(3, np.int64)
    for e in range(len(lengths)):
        lo, hi, length = bounds[e], bounds[e + 1], lengths[e]
        if length == 0:
            continue
        for p in range(lo, hi - length + 1):
            grams[counts[0]] = gram_hash(words, p, length)
            counts[0] += 1
        if length == n:
            for p in range(lo, hi - anchor + 1):
                anchors[counts[1]] = gram_hash(words, p, anchor)
                counts[1] += 1
        else:
            shorts[counts[2]] = gram_hash(words, lo, anchor)
            counts[2] += 1
    return grams, anchors, shorts


@njit(cache=True)
def hash_set(values):
    """Open-addressing table (linear probing, at most half full) of non-zero uint64 values."""
    size = 16
    while size < 2 * len(values):
        size *= 2
    table = np.zeros(size, np.uint64)
    mask = np.uint64(size - 1)
    for v in values:
        slot = v & mask
        while table[slot] != 0 and table[slot] != v:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = v
    return table


@njit(cache=True)
def _contains(table, value):
    mask = np.uint64(len(table) - 1)
    slot = value & mask
    while table[slot] != 0:
        if table[slot] == value:
            return True
        slot = (slot + np.uint64(1)) & mask
    return False


@njit(cache=True)
def _bit_positions(value, log2_bits):
    """Two bit positions from one hash: its top and its bottom ``log2_bits`` bits (at most 32)."""
    return value >> np.uint64(64 - log2_bits), value & np.uint64((1 << log2_bits) - 1)


@njit(cache=True)
def _has_bit(bits, bit):
    return (bits[bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1) != 0


@njit(cache=True)
def bloom(values, log2_bits):
    """Bloom filter (Bloom 1970) of ``2**log2_bits`` bits with two bits per value."""
    bits = np.zeros(max(1, (1 << log2_bits) >> 6), np.uint64)
    for v in values:
        for bit in _bit_positions(v, log2_bits):
            bits[bit >> np.uint64(6)] |= np.uint64(1) << (bit & np.uint64(63))
    return bits


@njit(cache=True)
def _maybe_in(bits, log2_bits, value):
    first, second = _bit_positions(value, log2_bits)
    return _has_bit(bits, first) and _has_bit(bits, second)


@njit(cache=True)
def _record(hits, count, doc, pos, length):
    """Append (doc, pos, length) to ``hits`` (doubling it when full); the array and new count."""
    if count == len(hits):
        hits = np.concatenate((hits, np.empty_like(hits)))
    hits[count, 0], hits[count, 1], hits[count, 2] = doc, pos, length
    return hits, count + 1


@njit(cache=True)
def _may_hold(bits, log2_bits, value):
    """:func:`_maybe_in` without branches (1 or 0), so that many run side by side."""
    first, second = _bit_positions(value, log2_bits)
    return ((bits[first >> np.uint64(6)] >> (first & np.uint64(63)))
            & (bits[second >> np.uint64(6)] >> (second & np.uint64(63))) & np.uint64(1))


@njit(cache=True)
def _rolling_hashes(words, anchor, top, out):
    """The hash of every run of ``anchor`` words (rolled along), into ``out``; how many."""
    count = len(words) - anchor + 1
    acc = np.uint64(0)
    for k in range(anchor - 1):
        acc = acc * GRAM_BASE + words[k]
    for q in range(count):
        if q > 0:
            acc -= words[q - 1] * top
        acc = acc * GRAM_BASE + words[q + anchor - 1]
        out[q] = _mix(acc ^ np.uint64(anchor))
    return max(count, 0)


@njit(cache=True)
def gram_hits(words, doc_bounds, n, anchor, short_lengths, anchor_bits, anchor_log2, short_bits, short_log2,
              grams):
    """Every (document, word position in it, length) whose run of ``length`` words hashes into
    ``grams``; document ``d`` is ``words[doc_bounds[d]:doc_bounds[d + 1]]``.

    An ``n``-gram starting at ``p`` holds the ``anchor``-word run at the one position
    ``q`` in ``p .. p + n - anchor`` that is a multiple of ``n - anchor + 1`` (from the document
    start), so only those positions are tested in ``anchor_bits`` (a :func:`bloom` of every
    ``anchor``-word run of the indexed examples), and the ``n``-grams around a hit in ``grams``.
    Grams of ``short_lengths`` (examples indexed whole) are tested at every position on their
    first ``anchor`` words in ``short_bits`` (a small Bloom filter). A document's filter tests
    run first, without branches (so that their memory reads overlap)."""
    stride = n - anchor + 1
    top = np.uint64(1)
    for _ in range(anchor - 1):
        top *= GRAM_BASE
    hits, count = np.empty((64, 3), np.int64), 0
    has_short = len(short_lengths) > 0
    runs = np.empty(np.max(np.diff(doc_bounds)) if len(doc_bounds) > 1 else 0, np.uint64)
    tests = np.empty_like(runs)  # per position: bit 0 anchor filter hit, bit 1 short filter hit
    for d in range(len(doc_bounds) - 1):
        lo, hi = doc_bounds[d], doc_bounds[d + 1]
        positions = _rolling_hashes(words[lo:hi], anchor, top, runs)
        for q in range(positions):
            tests[q] = 0
        for q in range(0, positions, stride):
            tests[q] = _may_hold(anchor_bits, anchor_log2, runs[q])
        if has_short:
            for q in range(positions):
                tests[q] |= _may_hold(short_bits, short_log2, runs[q]) << np.uint64(1)
        doc = words[lo:hi]
        for q in range(positions):
            if tests[q] == 0:
                continue
            if tests[q] & np.uint64(2):
                for length in short_lengths:
                    if q + length <= len(doc) and _contains(grams, gram_hash(doc, q, length)):
                        hits, count = _record(hits, count, d, q, length)
            if tests[q] & np.uint64(1):
                for p in range(max(0, q - stride + 1), q + 1):
                    if p + n <= len(doc) and _contains(grams, gram_hash(doc, p, n)):
                        hits, count = _record(hits, count, d, p, n)
    return hits[:count]
