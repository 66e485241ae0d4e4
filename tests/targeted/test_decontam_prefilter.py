"""The compiled decontamination path (scan_many + Prefilter) gives exactly the reference scan's results."""
from __future__ import annotations

import random
import re
import sys

import numpy as np
import pytest
from helpers import read_jsonl

from curate.targeted import _decontam_kernels as kernels
from curate.targeted.benchmarks import TEST_SPLITS, load_benchmarks, parse_specs
from curate.targeted.ngrams import WORD, _char_classes, _code_points, build_index, scan, scan_many, words

TRICKY_WORDS = ("don't don’t 'quoted' a''b x' ’y naïve ǅungla Straße STRASSE ﬁne ＦＵＬＬ ①② İstanbul ΣΑΣ σας "
                "_under_score_ ١٢٣ 漢字かな 😀 e\u0301t\u0301e ﬀ ℌ 12,000.5 o'clock’s l’été")


@pytest.fixture(scope="module")
def examples(shared_data):
    bench = shared_data / "benchmarks"
    targets = [{"path": str(bench / "mmlu_test.jsonl"), "template": "{question}",
                "where": {"subject": ["high_school_biology", "astronomy", "college_physics"]}},
               {"path": str(bench / "arc_challenge.jsonl"), "template": "{query}", "split": "test"}]
    return load_benchmarks(parse_specs(targets), TEST_SPLITS)


@pytest.fixture(scope="module")
def index(examples):
    built, _ = build_index(((e.benchmark, e.text) for e in examples), 13, 8)
    assert built.prefilter is not None and built.lengths[0] == 8  # short examples are indexed whole
    return built


def _unicode_variant(text: str) -> str:
    """The same normalised words written with compatibility characters and curly apostrophes."""
    return text.replace("fi", "ﬁ").replace("'", "’").replace("A", "Ａ").replace("s", "S")


@pytest.fixture(scope="module")
def documents(shared_data, examples):
    """Real reviews, some with test questions planted (verbatim, unicode variants, twice and
    overlapping, at the very start and end), plus edge cases."""
    rng = random.Random(7)
    reviews = [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_movie_reviews.jsonl", 60)]
    questions = [e.text for e in examples if len(words(e.text)) >= 8]
    docs = list(reviews[:20])
    for i, host in enumerate(reviews[20:]):
        q, other = rng.choice(questions), rng.choice(questions)
        middle = len(host) // 2
        docs.append([host[:middle] + " " + q + " " + host[middle:],
                     host[:middle] + " " + _unicode_variant(q) + " " + host[middle:],
                     q + " " + q[len(q) // 3:] + " " + other,        # repeated and overlapping spans
                     q.upper() + "\n" + host + "\n" + other.lower(),  # first and last words of the text
                     ][i % 4])
    short = min(questions, key=lambda q: len(words(q)))
    docs += ["", "   ", "!!! ... ---", TRICKY_WORDS, TRICKY_WORDS + " " + short + " " + TRICKY_WORDS,
             " ".join(words(short)[:-1]), short.replace(" ", "\n\t  ")]
    return docs


def test_tokenizer_finds_the_regex_words_and_its_classes_follow_the_regex():
    table = _char_classes()
    sample = np.random.default_rng(0).integers(0, sys.maxunicode + 1, 20_000)
    for code in sample.tolist() + [39, 95, 0x2019, 0xDF, 0x0301, 0x2460]:
        assert bool(table[code]) == bool(re.fullmatch(r"\w", chr(code))), code
    rng = random.Random(3)
    random_texts = ["".join(rng.choice("ab Z9_'’ .,-\n é漢ﬁ\u0301😀") for _ in range(rng.randrange(30)))
                    for _ in range(2000)]
    for text in (TRICKY_WORDS, "", "'", "a'", "'a", "a’’b", "a'b'c’d", "\0x\0", "ab\ud800cd", *random_texts):
        starts, ends, hashes, plain = kernels.tokenize(_code_points(text), table)
        found = list(WORD.finditer(text))
        assert list(zip(starts.tolist(), ends.tolist())) == [m.span() for m in found], text
        assert plain.tolist() == [m.group().replace("'", "").isascii() for m in found], text


def test_scan_many_equals_scan_on_real_and_crafted_text(index, documents):
    expected = [scan(text, index) for text in documents]
    assert sum(bool(o.ngrams) for o in expected) >= 40  # the planted questions are found
    assert any(len(o.spans) >= 2 for o in expected)
    assert scan_many(documents, index) == expected
    suspects = index.prefilter.suspects(documents, chunk_chars=5000)  # many compiled calls
    assert set(suspects) == set(index.prefilter.suspects(documents))
    assert {i for i, o in enumerate(expected) if o.ngrams} <= set(suspects)


def test_unicode_variants_match_like_the_reference(index, examples):
    question = next(e.text for e in examples if len(words(e.text)) >= 20)
    variant = "Intro — " + _unicode_variant(question) + " — outro"
    assert words(variant)[1:-1] == words(question)
    assert scan_many([variant], index) == [scan(variant, index)]
    assert scan(variant, index).ngrams


def test_an_index_without_prefilter_and_an_empty_batch(examples):
    small, _ = build_index(((e.benchmark, e.text) for e in examples[:5]), 13, 8)
    bare = type(small)(small.n, small.lengths, small.names, small.hashes, small.owners, small.groups)
    text = "Before. " + examples[0].text + " After."
    assert scan_many([text, ""], bare) == scan_many([text, ""], small) == [scan(text, small), scan("", small)]
    assert scan_many([], small) == []
