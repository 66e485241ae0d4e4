"""Native (numba) kernel of static-embedding pooling (:mod:`curate.targeted.static_embed`).

Sums each text's token vectors in token order (float64 accumulator, so the bytes do not depend
on batch size or partitioning) and normalises: no (tokens, dim) matrix is ever gathered.
Compiled code is cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def pooled_sums_normalised(vectors, ids, lengths, unknown_id):
    """Per text: the sum of its known tokens' vectors (float64, in token order), then L2-normalised."""
    n, dim = lengths.shape[0], vectors.shape[1]
    out = np.zeros((n, dim), np.float32)
    acc = np.empty(dim, np.float64)
    start = 0
    for row in range(n):
        acc[:] = 0.0
        for k in range(start, start + lengths[row]):
            token = ids[k]
            _add_vector(acc, vectors, token, unknown_id)
        start += lengths[row]
        _store_normalised(out, row, acc)
    return out


@njit(cache=True)
def pooled_word_pieces(vectors, pieces, starts, words, word_counts, max_tokens, unknown_id):
    """Per text: the sum of the vectors of its first ``max_tokens`` pieces (its words' pieces in order;
    the unknown token counts toward the limit but adds nothing), then L2-normalised. The same sums, in
    the same order, as :func:`pooled_sums_normalised` over the tokenizer's ids."""
    n, dim = word_counts.shape[0], vectors.shape[1]
    out = np.zeros((n, dim), np.float32)
    acc = np.empty(dim, np.float64)
    first_word = 0
    for row in range(n):
        acc[:] = 0.0
        taken = 0
        for k in range(first_word, first_word + word_counts[row]):
            word = words[k]
            for p in range(starts[word], starts[word + 1]):
                if taken == max_tokens:
                    break
                taken += 1
                _add_vector(acc, vectors, pieces[p], unknown_id)
        first_word += word_counts[row]
        _store_normalised(out, row, acc)
    return out


@njit(cache=True)
def _add_vector(acc, vectors, token, unknown_id):
    """``acc += vectors[token]`` in float64, element by element; the unknown token adds nothing."""
    if token != unknown_id:
        for j in range(acc.shape[0]):
            acc[j] += vectors[token, j]


@njit(cache=True)
def _store_normalised(out, row, acc):
    """``out[row] = acc / |acc|`` (float32); a zero sum leaves the row zero."""
    norm = np.sqrt(np.sum(acc * acc))
    if norm > 0.0:
        for j in range(acc.shape[0]):
            out[row, j] = acc[j] / norm
