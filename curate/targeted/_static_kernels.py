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
            if token != unknown_id:
                for j in range(dim):
                    acc[j] += vectors[token, j]
        start += lengths[row]
        norm = np.sqrt(np.sum(acc * acc))
        if norm > 0.0:
            for j in range(dim):
                out[row, j] = acc[j] / norm
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
                token = pieces[p]
                if token != unknown_id:
                    for j in range(dim):
                        acc[j] += vectors[token, j]
        first_word += word_counts[row]
        norm = np.sqrt(np.sum(acc * acc))
        if norm > 0.0:
            for j in range(dim):
                out[row, j] = acc[j] / norm
    return out
