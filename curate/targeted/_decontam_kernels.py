"""Native (numba) kernels for the decontamination prefilter (see :class:`curate.targeted.ngrams.Prefilter`).

The reference scan (:func:`curate.targeted.ngrams.scan`) tokenises with a Python regex and
hashes words with pandas per document. Here a batch of documents is one code-point array:
words are found with a lookup table of the regex's own ``\\w`` class, ASCII words are
normalised (lower case, apostrophes dropped) and hashed in the same loop, and every word
position is tested against a hash set of the index's shortest-gram prefixes before the full
grams are tested. Hashes here are FNV-1a over code points (words) and a polynomial over word
hashes (n-grams), finished with splitmix64: only a filter, every hit is re-scanned exactly.

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


@njit(cache=True)
def _is_word(chars, i, word_table):
    return i < len(chars) and word_table[chars[i]] != 0


@njit(cache=True)
def tokenize(chars, word_table):
    """Words of ``chars`` as the regex ``\\w+(?:['’]\\w+)*`` finds them: (starts, ends, hashes,
    ascii). ``hashes[k]`` is the FNV-1a hash of the normalised word when ``ascii[k]``; other
    words are left to the caller (Unicode normalisation is done by Python)."""
    n = len(chars)
    starts = np.empty(n // 2 + 1, np.int64)
    ends = np.empty(n // 2 + 1, np.int64)
    hashes = np.empty(n // 2 + 1, np.uint64)
    ascii_only = np.empty(n // 2 + 1, np.bool_)
    count, i = 0, 0
    while i < n:
        if word_table[chars[i]] == 0:
            i += 1
            continue
        start, h, plain = i, FNV_OFFSET, True
        while True:
            while i < n and word_table[chars[i]] != 0:
                c = np.uint64(chars[i])
                if c >= np.uint64(128):
                    plain = False
                elif np.uint64(65) <= c <= np.uint64(90):
                    c += np.uint64(32)
                h = (h ^ c) * FNV_PRIME
                i += 1
            if i + 1 < n and (chars[i] == APOSTROPHE or chars[i] == RIGHT_QUOTE) and _is_word(chars, i + 1, word_table):
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
def index_grams(words, bounds, lengths, prefix):
    """(gram hashes, hashes of their first ``prefix`` words) of every example: example ``e`` is
    ``words[bounds[e]:bounds[e + 1]]`` with grams of ``lengths[e]`` words (0: none)."""
    total = 0
    for e in range(len(lengths)):
        if lengths[e] > 0:
            total += bounds[e + 1] - bounds[e] - lengths[e] + 1
    grams = np.empty(total, np.uint64)
    prefixes = np.empty(total, np.uint64)
    k = 0
    for e in range(len(lengths)):
        length = lengths[e]
        if length == 0:
            continue
        for p in range(bounds[e], bounds[e + 1] - length + 1):
            grams[k] = gram_hash(words, p, length)
            prefixes[k] = gram_hash(words, p, prefix)
            k += 1
    return grams, prefixes


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
def gram_hits(words, doc_bounds, lengths, prefix_bits, log2_bits, grams):
    """Every (document, word position in it, length) whose run of ``length`` words hashes into
    ``grams``; document ``d`` is ``words[doc_bounds[d]:doc_bounds[d + 1]]``. Each position is
    first tested on its ``lengths[0]``-word prefix (a rolling hash) in ``prefix_bits`` (a
    :func:`bloom` filter small enough for the CPU cache), so few positions probe ``grams``."""
    shortest = lengths[0]
    top = np.uint64(1)
    for _ in range(shortest - 1):
        top *= GRAM_BASE
    hits = np.empty((64, 3), np.int64)
    count = 0
    for d in range(len(doc_bounds) - 1):
        lo, hi = doc_bounds[d], doc_bounds[d + 1]
        if hi - lo < shortest:
            continue
        acc = np.uint64(0)
        for k in range(lo, lo + shortest):
            acc = acc * GRAM_BASE + words[k]
        for p in range(lo, hi - shortest + 1):
            if p > lo:
                acc = (acc - words[p - 1] * top) * GRAM_BASE + words[p + shortest - 1]
            if not _maybe_in(prefix_bits, log2_bits, _mix(acc ^ np.uint64(shortest))):
                continue
            for length in lengths:
                if p + length <= hi and _contains(grams, gram_hash(words, p, length)):
                    if count == len(hits):
                        hits = np.concatenate((hits, np.empty_like(hits)))
                    hits[count, 0], hits[count, 1], hits[count, 2] = d, p - lo, length
                    count += 1
    return hits[:count]
