"""Signatures, shingling and LSH parameters: bit-equality with datasketch 2.x on real text."""
from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from helpers import read_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.core import CurateError
from curate.dedup import minhash as mh


@pytest.fixture(scope="module")
def real_docs(shared_data):
    docs = [d["text"] for d in read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", limit=300)]
    docs += [d["text"] for d in read_jsonl(shared_data / "corpora" / "python_docs.jsonl", limit=5)]
    docs += [d["text"] for d in read_jsonl(shared_data / "multilingual" / "udhr.jsonl", limit=40)]
    return docs + ["", "  ", "Two words", "ﬁ ＡＢＣ “quoted”, punctuated!"]


def datasketch_signature(shingles: list[bytes], num_perm: int, seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch(shingles)
    return m.hashvalues


@pytest.mark.parametrize("unit,ngram,num_perm,seed", [
    ("word", 5, 128, 1), ("word", 3, 64, 42), ("char", 5, 128, 1), ("word", 1, 256, 7)])
def test_signatures_equal_datasketch_on_real_text(real_docs, unit, ngram, num_perm, seed):
    sh = mh.shingle(real_docs, ngram, unit)
    sig = mh.batch_signatures(real_docs, ngram, unit, num_perm, seed)
    assert sig.shape == (len(real_docs), num_perm) and sig.dtype == np.uint32
    for d in range(len(real_docs)):
        np.testing.assert_array_equal(sig[d], datasketch_signature(sh.as_bytes(d), num_perm, seed))


def test_signature_of_a_document_does_not_depend_on_its_batch(real_docs):
    together = mh.batch_signatures(real_docs)
    alone = np.vstack([mh.batch_signatures([d]) for d in real_docs[:20]])
    np.testing.assert_array_equal(together[:20], alone)


def test_word_shingles_are_normalized_joined_ngrams():
    sh = mh.shingle(["The  QUICK, brown fox!\tjumps", "ﬁne", "", "a b c"], ngram=3)
    assert sh.as_bytes(0) == [b"the quick brown", b"quick brown fox", b"brown fox jumps"]
    assert sh.as_bytes(1) == [b"fine"]            # NFKC folds the ligature
    assert sh.as_bytes(2) == [b""]                # empty document: one (empty) shingle
    assert sh.as_bytes(3) == [b"a b c"]           # exactly n words: one shingle


def test_documents_shorter_than_n_words_get_one_shingle():
    sh = mh.shingle(["one two", "x"], ngram=5)
    assert [sh.as_bytes(0), sh.as_bytes(1)] == [[b"one two"], [b"x"]]


def test_char_shingles_cut_characters_not_bytes():
    sh = mh.shingle(["Ünï cö", "ab"], ngram=3, unit="char")
    assert sh.as_bytes(0) == [s.encode() for s in ["ünï", "nï ", "ï c", " cö"]]
    assert sh.as_bytes(1) == [b"ab"]


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=60), min_size=1, max_size=8),
       st.integers(1, 4), st.sampled_from(mh.SHINGLE_UNITS))
@settings(max_examples=60, deadline=None)
def test_shingles_match_a_plain_python_definition(texts, ngram, unit):
    sh = mh.shingle(texts, ngram, unit)
    for d, text in enumerate(texts):
        norm = mh.normalize(text)
        toks = norm.split() if unit == "word" else list(norm)
        sep = " " if unit == "word" else ""
        grams = [sep.join(toks[i:i + ngram]) for i in range(max(1, len(toks) - ngram + 1))]
        assert sh.as_bytes(d) == [g.encode() for g in grams]


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_lsh_parameters_match_datasketch(threshold, num_perm):
    assert mh.optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_band_keys_agree_exactly_when_band_rows_agree():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 128), dtype=np.uint64).astype(np.uint32)
    sig[1, :13] = sig[0, :13]             # same first band, all others differ
    keys = mh.band_hashes(sig, 9, 13)
    assert keys[0, 0] == keys[1, 0]
    assert not np.any(keys[0, 1:] == keys[1, 1:]) and not np.any(keys[2] == keys[0])


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(CurateError, match="shingle unit"):
        mh.shingle(["x"], 5, "sentence")
    with pytest.raises(CurateError, match="threshold"):
        mh.optimal_bands(1.5, 128)
    with pytest.raises(CurateError, match="exceeds num_perm"):
        mh.band_hashes(np.zeros((1, 8), np.uint32), 3, 3)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
@settings(max_examples=200, deadline=None)
def test_ascii_fast_path_normalizes_like_the_unicode_path(text):
    assert mh.normalize_bytes(text) == mh.normalize(text).encode()


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
                | st.text(alphabet=st.characters(max_codepoint=127), max_size=40), max_size=6))
@settings(max_examples=150, deadline=None)
def test_batch_normalization_equals_normalizing_each_text(texts):
    expected = [mh.normalize(t).encode() for t in texts]
    for use_numba in (True, False):
        mh.USE_NUMBA = use_numba
        try:
            buffer, begin, end = mh.normalize_batch(texts)
        finally:
            mh.USE_NUMBA = True
        assert buffer == b"\n".join(expected)
        assert [buffer[b:e] for b, e in zip(begin.tolist(), end.tolist())] == expected


def test_numpy_fallback_gives_the_same_hashes_and_signatures(real_docs, monkeypatch):
    sh = mh.shingle(real_docs)
    compiled_hashes, compiled_sig = mh.hash_shingles(sh), mh.batch_signatures(real_docs)
    monkeypatch.setattr(mh, "USE_NUMBA", False)
    fallback = mh.shingle(real_docs)
    for field in ("starts", "ends", "doc", "doc_start"):
        np.testing.assert_array_equal(getattr(fallback, field), getattr(sh, field))
    np.testing.assert_array_equal(mh.hash_shingles(sh), compiled_hashes)
    np.testing.assert_array_equal(mh.batch_signatures(real_docs), compiled_sig)


def test_sha1_kernel_equals_hashlib_for_every_message_length():
    """One-block messages go through the SIMD lanes, longer ones block by block."""
    from hashlib import sha1

    msgs = [bytes(range(i % 251, i % 251 + 1)) * i for i in range(0, 200)]
    buffer = b"".join(msgs)
    ends = np.cumsum([len(m) for m in msgs])
    sh = mh.Shingles(buffer, ends - [len(m) for m in msgs], ends, np.arange(len(msgs)), np.arange(len(msgs)))
    expected = [int.from_bytes(sha1(m).digest()[:8], "little") for m in msgs]
    assert mh.hash_shingles(sh).tolist() == expected
