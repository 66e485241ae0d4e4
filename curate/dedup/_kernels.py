"""Native (numba) kernels for the datasketch-compatible MinHash path.

datasketch hashes every shingle with SHA-1 from Python (``hashlib``, one call per
shingle); here SHA-1 (FIPS 180-4) runs compiled over all shingles of a batch at once,
and the permutation ``a·h + b mod 2^32`` plus the per-document minimum is one fused loop.
Results are bit-identical to ``hashlib.sha1`` and to datasketch's ``affine32`` scheme.

numba is optional: ``curate.dedup.minhash`` imports this module on first use and falls back to
``hashlib`` + numpy without it (same results, several times slower). Compiled code is
cached on disk (``cache=True``), so Spark workers pay the compile time once per machine.
"""
from __future__ import annotations

import numpy as np
from numba import njit

M32 = np.uint64(0xFFFFFFFF)
_H0 = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
_K = (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)
_K_ARR = np.array(_K, dtype=np.uint32)
_H_ARR = np.array(_H0, dtype=np.uint32)
LANES = 16  # messages hashed side by side; the inner loops over lanes become SIMD


@njit(cache=True)
def _load_block(buf, start, length, w, lane):
    """Pad a message of at most 55 bytes into one block of 16 big-endian words (word-wise)."""
    full = length >> 2
    for j in range(full):
        p = start + 4 * j
        w[j, lane] = ((np.uint32(buf[p]) << np.uint32(24)) | (np.uint32(buf[p + 1]) << np.uint32(16))
                      | (np.uint32(buf[p + 2]) << np.uint32(8)) | np.uint32(buf[p + 3]))
    tail = np.uint32(0x80) << np.uint32(24 - 8 * (length & 3))
    for i in range(length & 3):
        tail |= np.uint32(buf[start + 4 * full + i]) << np.uint32(24 - 8 * i)
    w[full, lane] = tail
    for j in range(full + 1, 15):
        w[j, lane] = 0
    w[15, lane] = np.uint32(length * 8)


@njit(cache=True)
def _compress_lanes(w, st):
    """SHA-1 compression of one block per lane: ``w[:16, l]`` into state ``st[:, l]``."""
    for t in range(16, 80):
        for l in range(LANES):
            x = w[t - 3, l] ^ w[t - 8, l] ^ w[t - 14, l] ^ w[t - 16, l]
            w[t, l] = (x << np.uint32(1)) | (x >> np.uint32(31))
    v = st.copy()  # rows a, b, c, d, e
    for phase in range(4):
        k = _K_ARR[phase]
        for t in range(20 * phase, 20 * phase + 20):
            for l in range(LANES):
                a, b, c, d, e = v[0, l], v[1, l], v[2, l], v[3, l], v[4, l]
                if phase == 0:
                    f = (b & c) | (~b & d)
                elif phase == 2:
                    f = (b & c) | (b & d) | (c & d)
                else:
                    f = b ^ c ^ d
                v[4, l] = d
                v[3, l] = c
                v[2, l] = (b << np.uint32(30)) | (b >> np.uint32(2))
                v[1, l] = a
                v[0, l] = ((a << np.uint32(5)) | (a >> np.uint32(27))) + f + e + k + w[t, l]
    for r in range(5):
        for l in range(LANES):
            st[r, l] += v[r, l]


@njit(cache=True)
def sha1_prefix64(buf, starts, ends):
    """First 8 bytes of SHA-1 of ``buf[starts[i]:ends[i]]`` for every i, as little-endian uint64."""
    n = len(starts)
    out = np.empty(n, dtype=np.uint64)
    w = np.zeros((80, LANES), dtype=np.uint32)
    st = np.empty((5, LANES), dtype=np.uint32)
    lane_of = np.empty(LANES, dtype=np.int64)
    filled = 0
    for i in range(n + 1):
        if i < n and ends[i] - starts[i] <= 55:
            _load_block(buf, starts[i], ends[i] - starts[i], w, filled)
            lane_of[filled] = i
            filled += 1
        elif i < n:
            out[i] = _sha1_long(buf, starts[i], ends[i] - starts[i])
        if filled == LANES or (i == n and filled > 0):
            for r in range(5):
                for l in range(LANES):
                    st[r, l] = _H_ARR[r]
            _compress_lanes(w, st)
            for l in range(filled):
                out[lane_of[l]] = _bswap32(np.uint64(st[0, l])) | (_bswap32(np.uint64(st[1, l])) << np.uint64(32))
            filled = 0
    return out


@njit(cache=True)
def _sha1_long(buf, start, length):
    """SHA-1 prefix of one message of any length, block by block in lane 0."""
    blocks = (length + 8) // 64 + 1
    padded = np.zeros(blocks * 64, dtype=np.uint8)
    padded[:length] = buf[start:start + length]
    padded[length] = 0x80
    bits = np.uint64(length) * np.uint64(8)
    for i in range(8):
        padded[blocks * 64 - 1 - i] = np.uint8((bits >> np.uint64(8 * i)) & np.uint64(0xFF))
    w = np.zeros((80, LANES), dtype=np.uint32)
    st = np.empty((5, LANES), dtype=np.uint32)
    for r in range(5):
        st[r, :] = _H_ARR[r]
    for blk in range(blocks):
        for j in range(16):
            p = blk * 64 + 4 * j
            w[j, 0] = ((np.uint32(padded[p]) << np.uint32(24)) | (np.uint32(padded[p + 1]) << np.uint32(16))
                       | (np.uint32(padded[p + 2]) << np.uint32(8)) | np.uint32(padded[p + 3]))
        _compress_lanes(w, st)
    return _bswap32(np.uint64(st[0, 0])) | (_bswap32(np.uint64(st[1, 0])) << np.uint64(32))


@njit(cache=True, inline="always")
def _bswap32(x):
    return (((x & np.uint64(0xFF)) << np.uint64(24)) | ((x & np.uint64(0xFF00)) << np.uint64(8))
            | ((x >> np.uint64(8)) & np.uint64(0xFF00)) | (x >> np.uint64(24)))


@njit(cache=True)
def minhash_signatures(hashes, doc_start, a, b):
    """``(n_docs, num_perm)`` uint32 minima of ``a·fmix32(h) + b mod 2^32`` per document.

    ``hashes`` holds each shingle's 32-bit hash (low bits of uint64), grouped by document;
    document d's shingles are ``hashes[doc_start[d]:doc_start[d + 1]]``.
    """
    n_docs, num_perm = len(doc_start) - 1, len(a)
    sig = np.full((n_docs, num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
    for d in range(n_docs):
        row = sig[d]
        for s in range(doc_start[d], doc_start[d + 1]):
            h = _fmix32(hashes[s] & M32)
            for k in range(num_perm):
                v = np.uint32((a64[k] * h + b64[k]) & M32)
                if v < row[k]:
                    row[k] = v
    return sig


@njit(cache=True, inline="always")
def _fmix32(h):
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & M32
    return h ^ (h >> np.uint64(16))


@njit(cache=True)
def word_shingle_spans(buf, doc_begin, doc_end, ngram):
    """``(starts, ends, doc, doc_start)`` of the word n-grams of normalised documents.

    Document d is ``buf[doc_begin[d]:doc_end[d]]``: words separated by single spaces (what
    ``normalize`` produces). A document of fewer than ``ngram`` words gets one shingle.
    """
    n_docs = len(doc_begin)
    words = np.zeros(n_docs, dtype=np.int64)
    for d in range(n_docs):
        if doc_end[d] > doc_begin[d]:
            words[d] = 1
            for p in range(doc_begin[d], doc_end[d]):
                words[d] += buf[p] == 32
    per_doc = np.maximum(words - ngram + 1, 1)
    doc_start = np.zeros(n_docs, dtype=np.int64)
    for d in range(1, n_docs):
        doc_start[d] = doc_start[d - 1] + per_doc[d - 1]
    total = doc_start[-1] + per_doc[-1] if n_docs else 0
    starts = np.empty(total, dtype=np.int64)
    ends = np.empty(total, dtype=np.int64)
    doc = np.empty(total, dtype=np.int64)
    word_start = np.empty(max(words.max(), 1) if n_docs else 1, dtype=np.int64)
    word_end = np.empty_like(word_start)
    for d in range(n_docs):
        k = 0
        word_start[0] = doc_begin[d]
        for p in range(doc_begin[d], doc_end[d]):
            if buf[p] == 32:
                word_end[k] = p
                k += 1
                word_start[k] = p + 1
        word_end[k] = doc_end[d]
        out = doc_start[d]
        if words[d] == 0:
            starts[out], ends[out] = doc_begin[d], doc_begin[d]
        elif words[d] < ngram:
            starts[out], ends[out] = doc_begin[d], doc_end[d]
        else:
            for i in range(per_doc[d]):
                starts[out + i], ends[out + i] = word_start[i], word_end[i + ngram - 1]
        doc[out:out + per_doc[d]] = d
    return starts, ends, doc, doc_start


@njit(cache=True)
def fold_spaces(spaced, n_docs):
    """Collapse space runs and trim each NUL-separated document: ``(buffer, doc_begin, doc_end)``.

    The output separates documents by ``\n``; words inside a document by one space.
    """
    out = np.empty(len(spaced) + 1, dtype=np.uint8)
    begin = np.zeros(n_docs, dtype=np.int64)
    end = np.zeros(n_docs, dtype=np.int64)
    n, d, pending = 0, 0, False
    for byte in spaced:
        if byte == 32:
            pending = n > begin[d]
        elif byte == 0:
            end[d] = n
            out[n] = 10
            n += 1
            d += 1
            begin[d] = n
            pending = False
        else:
            if pending:
                out[n] = 32
                n += 1
                pending = False
            out[n] = byte
            n += 1
    end[d] = n
    return out[:n], begin, end
