"""Native (numba) kernel for the Gopher repetition n-gram scores (Rae et al. 2021, App. A.1.1).

The reference (``filters._text.top_ngram_chars`` / ``duplicated_ngram_chars``) builds tuples of
word ids and counts them with ``Counter``. Here n-grams are numbered exactly, by first
occurrence, one length at a time: the n-gram at ``i`` is the pair (number of the
(n-1)-gram at ``i``, word at ``i + n - 1``), looked up in an open-addressing table keyed by
the pair packed into 64 bits — no hashing of text, so no collisions. Numbering by first
occurrence reproduces ``Counter.most_common(1)``'s tie-break (the earliest-seen n-gram wins).
Compiled code is cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = np.int64(-1)


@njit(cache=True)
def _number_pairs(left, right, count, keys, values):
    """Number the pairs (left[i], right[i]), i < count, by first occurrence; (numbers, how many)."""
    mask = len(keys) - 1
    keys[:] = EMPTY
    out = np.empty(count, np.int64)
    distinct = 0
    for i in range(count):
        key = (left[i] << 32) | right[i]
        slot = ((key * np.int64(-7046029254386353131)) >> 20) & mask
        while keys[slot] != EMPTY and keys[slot] != key:
            slot = (slot + 1) & mask
        if keys[slot] == EMPTY:
            keys[slot] = key
            values[slot] = distinct
            distinct += 1
        out[i] = values[slot]
    return out, distinct


@njit(cache=True)
def repetition_chars(ids, lengths, doc_bounds, top_sizes, dup_sizes):
    """Per document (``ids[doc_bounds[d]:doc_bounds[d + 1]]``, word ids < 2**31, equal words equal
    ids): characters of all occurrences of the most frequent n-gram for each ``top_sizes`` n (0
    when none repeats), then characters of the words inside any repeated n-gram for each
    ``dup_sizes`` n. Sizes ascending, at least 2."""
    docs = len(doc_bounds) - 1
    out = np.zeros((docs, len(top_sizes) + len(dup_sizes)), np.int64)
    longest = max(top_sizes.max(), dup_sizes.max())
    longest_doc = np.max(np.diff(doc_bounds)) if docs else 0
    size = 16
    while size < 2 * longest_doc:
        size *= 2
    keys, values = np.empty(size, np.int64), np.empty(size, np.int64)
    for d in range(docs):
        lo, hi = doc_bounds[d], doc_bounds[d + 1]
        words, chars = ids[lo:hi], lengths[lo:hi]
        numbers = words.copy()
        for n in range(2, longest + 1):
            count = hi - lo - n + 1
            if count <= 0:
                break
            numbers, distinct = _number_pairs(numbers, words[n - 1:], count, keys, values)
            if distinct == count:
                break  # nothing repeats, so no longer n-gram repeats either
            seen = np.zeros(distinct, np.int64)
            for i in range(count):
                seen[numbers[i]] += 1
            for k in range(len(top_sizes)):
                if top_sizes[k] == n:
                    best = np.argmax(seen)  # the first number with the most occurrences
                    first = np.argmax(numbers == best)
                    out[d, k] = seen[best] * np.sum(chars[first:first + n])
            for k in range(len(dup_sizes)):
                if dup_sizes[k] == n:
                    covered = np.zeros(hi - lo, np.bool_)
                    for i in range(count):
                        if seen[numbers[i]] > 1:
                            covered[i:i + n] = True
                    out[d, len(top_sizes) + k] = np.sum(chars[covered])
    return out


FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
HASH, START, LENGTH, ID = 0, 1, 2, 3  # columns of a word table row; START < 0: empty row


@njit(cache=True)
def number_words(chars, doc_bounds):
    """Number the newline-separated words of ``chars`` (code points) by first occurrence within
    each document (words ``doc_bounds[d]`` to ``doc_bounds[d + 1]``), exactly: an FNV-1a hash
    finds candidates, a comparison of the code points decides. (ids, lengths)."""
    words = doc_bounds[-1]
    ids, lengths = np.empty(words, np.int64), np.empty(words, np.int64)
    start = 0
    for d in range(len(doc_bounds) - 1):
        size, bits = 16, 4
        while size < 2 * (doc_bounds[d + 1] - doc_bounds[d]):
            size, bits = size * 2, bits + 1
        table = np.full((size, 4), -1, np.int64)  # small: stays in the CPU cache
        mask, shift = np.uint64(size - 1), np.uint64(64 - bits)
        distinct = 0
        for w in range(doc_bounds[d], doc_bounds[d + 1]):
            end, h = start, FNV_OFFSET
            while end < len(chars) and chars[end] != 10:
                h = (h ^ np.uint64(chars[end])) * FNV_PRIME
                end += 1
            length, hashed = end - start, np.int64(h)
            row = (h * np.uint64(0x9E3779B97F4A7C15)) >> shift  # top bits: FNV's low bits follow the text's
            while table[row, START] >= 0:
                if table[row, HASH] == hashed and table[row, LENGTH] == length:
                    other, same = table[row, START], True
                    for k in range(length):
                        if chars[other + k] != chars[start + k]:
                            same = False
                            break
                    if same:
                        break
                row = (row + np.uint64(1)) & mask
            if table[row, START] < 0:
                table[row, HASH], table[row, START] = hashed, start
                table[row, LENGTH], table[row, ID] = length, distinct
                distinct += 1
            ids[w], lengths[w] = table[row, ID], length
            start = end + 1
    return ids, lengths
