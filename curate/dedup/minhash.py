"""MinHash signatures and LSH banding, vectorised over whole batches of documents.

Signatures are bit-identical to datasketch 2.x ``MinHash(num_perm, seed)`` (its default
``affine32`` scheme) fed with the same shingle bytes: each shingle is hashed with the
first 4 bytes of SHA-1 (little-endian), pre-mixed with the MurmurHash3 32-bit finalizer,
then permuted by ``a_k * h + b_k mod 2^32`` with ``(a_k, b_k)`` drawn from
``numpy.random.RandomState(seed)``. So a signature can be loaded with
``datasketch.MinHash(hashvalues=sig, seed=seed, scheme="affine32")``.

What makes it fast is batching: all shingles of a whole Arrow batch live in one byte
buffer and are hashed by one compiled SHA-1 kernel (16 messages per SIMD pass, see
``curate.dedup._kernels``), then permuted and reduced per document in one fused loop.
Without numba the same results come from ``hashlib`` + numpy blocks (Broder 1997, "On the
resemblance and containment of documents"; banding from Leskovec, Rajaraman & Ullman,
*Mining of Massive Datasets*, ch. 3).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from hashlib import sha1

import numpy as np

from curate.core import CurateError

_NON_WORD = re.compile(r"[^\w\s]+")
# ASCII fast path of normalize(): the same characters removed, found by the same regex
_ASCII_DROP = bytes(c for c in range(128) if _NON_WORD.match(chr(c)))
_ASCII_DROP_BUT_NUL = _ASCII_DROP.replace(b"\x00", b"")
# one byte pass for the other ASCII steps: A-Z lower-cased, whitespace made a space
_ASCII_TABLE = bytes(c if c >= 128 else 32 if chr(c).isspace() else ord(chr(c).lower()) for c in range(256))
_MAX32 = np.uint32(0xFFFFFFFF)
_SPACE, _NEWLINE = 0x20, 0x0A
SHINGLE_UNITS = ("word", "char")
USE_NUMBA = True  # False forces the hashlib + numpy path (same results)
ROWS_PER_BLOCK = 2048  # shingles permuted at once: 2048 x 128 x 4 B = 1 MiB, cache-sized


@lru_cache(maxsize=1)
def _numba_kernels():
    """``curate.dedup._kernels`` if numba is installed; imported on first use (numba is slow to import)."""
    try:
        from curate.dedup import _kernels as minhash_kernels
    except ImportError:
        return None
    return minhash_kernels


def _kernels():
    return _numba_kernels() if USE_NUMBA else None


def normalize(text: str) -> str:
    """NFKC, lowercase, punctuation removed, whitespace folded to single spaces."""
    folded = _NON_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
    return " ".join(folded.split())


def normalize_bytes(text: str) -> bytes:
    """``normalize(text)`` as UTF-8, with a bytes-only fast path for ASCII text (NFKC-stable)."""
    if text.isascii():
        return b" ".join(text.encode("ascii").translate(_ASCII_TABLE, _ASCII_DROP).split())
    return normalize(text).encode("utf-8")


def normalize_batch(texts: list[str | None]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``normalize`` of every text as UTF-8 in one buffer: ``(buffer, doc_begin, doc_end)``.

    Documents are separated by ``\n``. Non-ASCII texts are normalised one by one first;
    the ASCII steps (lower-case, drop punctuation, fold whitespace) then run once over the
    joined batch: they leave normalised text and every non-ASCII byte unchanged. NUL, which
    ``normalize`` drops anyway, separates the documents meanwhile.
    """
    if not texts:
        return b"", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pieces = [t if t.isascii() else normalize(t) for t in (t or "" for t in texts)]
    joined = "\x00".join(p.replace("\x00", "") if "\x00" in p else p for p in pieces).encode("utf-8")
    spaced = joined.translate(_ASCII_TABLE, _ASCII_DROP_BUT_NUL)
    kernels = _kernels()
    if kernels is not None:
        out, begin, end = kernels.fold_spaces(np.frombuffer(spaced, dtype=np.uint8), len(pieces))
        return out.tobytes(), begin, end
    docs = [b" ".join(d.split()) for d in spaced.split(b"\x00")]
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    begin = np.concatenate(([0], np.cumsum(lengths + 1)[:-1])).astype(np.int64)
    return b"\n".join(docs), begin, begin + lengths


@dataclass(frozen=True)
class Shingles:
    """Byte spans of every shingle of a batch of documents in one UTF-8 buffer.

    Shingle ``i`` is ``buffer[starts[i]:ends[i]]`` and belongs to document ``doc[i]``
    (non-decreasing); ``doc_start[d]`` is the index of document ``d``'s first shingle.
    """

    buffer: bytes
    starts: np.ndarray
    ends: np.ndarray
    doc: np.ndarray
    doc_start: np.ndarray

    def as_bytes(self, d: int) -> list[bytes]:
        """The shingles of document ``d`` as bytes (what datasketch's ``update_batch`` takes)."""
        lo = self.doc_start[d]
        hi = self.doc_start[d + 1] if d + 1 < len(self.doc_start) else len(self.starts)
        return [self.buffer[s:e] for s, e in zip(self.starts[lo:hi], self.ends[lo:hi])]


def shingle(texts: list[str | None], ngram: int = 5, unit: str = "word") -> Shingles:
    """Cut normalized documents into word (or character) n-grams, all documents at once.

    A word shingle is the n words joined by single spaces; a document with fewer than
    ``ngram`` tokens (even none) gets exactly one shingle: all of its tokens.
    """
    if unit not in SHINGLE_UNITS:
        raise CurateError(f"shingle unit must be one of {', '.join(SHINGLE_UNITS)}, got '{unit}'")
    if ngram < 1:
        raise CurateError(f"ngram must be >= 1, got {ngram}")
    buffer, doc_begin, doc_end = normalize_batch(texts)
    lengths = doc_end - doc_begin
    kernels = _kernels()
    if unit == "word" and kernels is not None:
        spans = kernels.word_shingle_spans(np.frombuffer(buffer, dtype=np.uint8), doc_begin, doc_end, ngram)
        return Shingles(buffer, *spans)
    tok_start, tok_end = _token_spans(np.frombuffer(buffer, dtype=np.uint8), unit, doc_begin + lengths)
    tok_doc = np.searchsorted(doc_begin, tok_start, side="right") - 1
    return _ngram_spans(buffer, tok_start, tok_end, tok_doc, doc_begin, ngram)


def _token_spans(arr: np.ndarray, unit: str, doc_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte start/end of every token: words split on spaces, or UTF-8 characters."""
    if unit == "word":
        is_sep = (arr == _SPACE) | (arr == _NEWLINE)
        edges = np.diff(np.concatenate(([True], is_sep, [True])).astype(np.int8))
        return np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    is_start = ((arr & 0xC0) != 0x80) & (arr != _NEWLINE)
    starts = np.flatnonzero(is_start)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    if len(starts):
        ends[-1] = len(arr)
    # the last character of a document ends at the document's end, not at the next one
    doc_of = np.searchsorted(doc_end, starts, side="left")
    ends = np.minimum(ends, doc_end[np.minimum(doc_of, len(doc_end) - 1)]) if len(doc_end) else ends
    return starts, ends


def _ngram_spans(buffer: bytes, tok_start: np.ndarray, tok_end: np.ndarray, tok_doc: np.ndarray,
                 doc_begin: np.ndarray, ngram: int) -> Shingles:
    n_docs = len(doc_begin)
    tokens_per_doc = np.bincount(tok_doc, minlength=n_docs).astype(np.int64)
    first_tok = np.concatenate(([0], np.cumsum(tokens_per_doc)[:-1])).astype(np.int64)
    per_doc = np.maximum(1, tokens_per_doc - ngram + 1)
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), per_doc)
    doc_start = np.concatenate(([0], np.cumsum(per_doc)[:-1])).astype(np.int64)
    k = np.arange(len(doc), dtype=np.int64) - doc_start[doc]  # shingle index within its document
    empty = tokens_per_doc[doc] == 0
    first = np.minimum(first_tok[doc] + k, max(len(tok_start) - 1, 0))
    last = first_tok[doc] + np.minimum(k + ngram, tokens_per_doc[doc]) - 1
    if len(tok_start):
        starts = np.where(empty, doc_begin[doc], tok_start[first])
        ends = np.where(empty, doc_begin[doc], tok_end[np.maximum(last, 0)])
    else:
        starts = ends = doc_begin[doc]
    return Shingles(buffer, starts, ends, doc, doc_start)


def hash_shingles(sh: Shingles) -> np.ndarray:
    """First 8 bytes of SHA-1 of every shingle as little-endian uint64.

    The low 32 bits are datasketch's ``sha1_hash32``; all 64 bits identify a shingle in
    exact-Jaccard verification.
    """
    kernels = _kernels()
    if kernels is not None:
        return kernels.sha1_prefix64(np.frombuffer(sh.buffer, dtype=np.uint8), sh.starts, sh.ends)
    view = memoryview(sh.buffer)
    digests = b"".join([sha1(view[s:e]).digest()[:8]
                        for s, e in zip(sh.starts.tolist(), sh.ends.tolist())])
    return np.frombuffer(digests, dtype="<u8")


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters: odd ``a`` and any ``b``, from ``seed``."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (a bijection), as datasketch pre-mixes input hashes."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(hashes32: np.ndarray, doc: np.ndarray, n_docs: int, num_perm: int = 128,
               seed: int = 1) -> np.ndarray:
    """MinHash signatures ``(n_docs, num_perm)`` uint32 from the shingle hashes of a batch.

    One fused compiled loop with numba; otherwise rows are permuted ``ROWS_PER_BLOCK`` at a
    time into one reused buffer and each block is reduced with one ``np.minimum.reduceat``.
    """
    a, b = permutations(num_perm, seed)
    kernels = _kernels()
    if kernels is not None:
        bounds = np.searchsorted(doc, np.arange(n_docs + 1), side="left")
        return kernels.minhash_signatures(hashes32.astype(np.uint64, copy=False), bounds, a, b)
    mixed = fmix32(hashes32.astype(np.uint32, copy=False))
    sig = np.full((n_docs, num_perm), _MAX32, dtype=np.uint32)
    buf = np.empty((ROWS_PER_BLOCK, num_perm), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for lo in range(0, len(mixed), ROWS_PER_BLOCK):
            hi = min(lo + ROWS_PER_BLOCK, len(mixed))
            block = buf[: hi - lo]
            np.multiply(mixed[lo:hi, None], a, out=block)
            np.add(block, b, out=block)
            seg = np.flatnonzero(np.diff(doc[lo:hi], prepend=-1))  # first row of each document
            docs = doc[lo:hi][seg]
            sig[docs] = np.minimum(sig[docs], np.minimum.reduceat(block, seg, axis=0))
    return sig


def batch_signatures(texts: list[str | None], ngram: int = 5, unit: str = "word",
                     num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """Signatures of a list of documents (the datasketch-compatible default path)."""
    sh = shingle(texts, ngram, unit)
    return signatures(hash_shingles(sh) & np.uint64(0xFFFFFFFF), sh.doc, len(texts), num_perm, seed)


def shingle_sets(sh: Shingles, hashes64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct 64-bit shingle hashes per document: ``(offsets, values)`` of a list array."""
    order = np.lexsort((hashes64, sh.doc))
    doc, val = sh.doc[order], hashes64[order]
    keep = np.ones(len(val), dtype=bool)
    keep[1:] = (doc[1:] != doc[:-1]) | (val[1:] != val[:-1])
    counts = np.bincount(doc[keep], minlength=len(sh.doc_start))
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return offsets, val[keep]


# --- LSH banding ---------------------------------------------------------------------

def _integrate(f, lo: float, hi: float, points: int = 2001) -> np.ndarray:
    """Simpson's rule over a fixed grid (vectorised over the leading axes of ``f``'s output)."""
    s = np.linspace(lo, hi, points)
    w = np.ones(points)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return (f(s) * w).sum(axis=-1) * (hi - lo) / (3 * (points - 1))


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5,
                  fn_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` minimising the weighted false-positive + false-negative area.

    The same objective as datasketch's ``MinHashLSH`` parameter choice: the probability
    that a pair of similarity s shares a band is ``1 - (1 - s^r)^b``.
    """
    if not 0.0 < threshold < 1.0:
        raise CurateError(f"threshold must be in (0, 1), got {threshold}")
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bs = np.array([p[0] for p in pairs], dtype=float)[:, None]
    rs = np.array([p[1] for p in pairs], dtype=float)[:, None]
    hit = lambda s: 1.0 - (1.0 - s[None, :] ** rs) ** bs  # noqa: E731
    fp = _integrate(hit, 0.0, threshold)
    fn = _integrate(lambda s: 1.0 - hit(s), threshold, 1.0)
    return pairs[int(np.argmin(fp * fp_weight + fn * fn_weight))]


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band): a multiply-xor hash of the band's rows.

    Two documents share a key for band i when their signatures agree on all rows of
    band i (up to 64-bit collisions, which verification removes).
    """
    if bands * rows > sig.shape[1]:
        raise CurateError(f"bands x rows = {bands * rows} exceeds num_perm = {sig.shape[1]}")
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(bands):
            h = np.full(sig.shape[0], np.uint64(0x9E3779B97F4A7C15) * np.uint64(i + 1), dtype=np.uint64)
            for j in range(i * rows, (i + 1) * rows):
                h = (h ^ sig[:, j].astype(np.uint64)) * np.uint64(0xFF51AFD7ED558CCD)
                h ^= h >> np.uint64(29)
            out[:, i] = h
    return out.view(np.int64)
