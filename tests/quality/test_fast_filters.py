"""The faster Gopher / FineWeb filters of the score pass give exactly the reference filters' scores."""
from __future__ import annotations

import pytest
from helpers import read_jsonl

import filters as registry
from curate.quality.fast_filters import FAST, batch_parts, fast_filter
from filters._text import HAS_LETTER, PUNCTUATION, words

EDGE_CASES = [
    "", "   ", "\n\n\n", "...", "a", "# # # #", "— – ... …\n\n\n- item\n- item\n• item\n* item…",
    "x " * 300, "the the the the the", "don't 'quote' (paren) [x] ¿qué? 12,000 _a_ ...word... «» © ® → += 42",
    "line one.\nline one.\n\nline one.\n\npara\n\npara\r\n\r\npara", "\x1c a\u2028b\u00a0c\u3000d\x85e",
    "a b a b a b c d c d e f e f", "b c b c a a a a",  # ties between repeated n-grams
    "ΟΔΟΣ ΣΑΣ σας Σ. ΣΑΣ, ΟΔΟΣ… The And With",  # final sigma when lower-casing
    "İstanbul ǅ ﬁne ＦＵＬＬ 漢字 かな", "\t\ttabs\tand\vvertical\ftabs\t",
    "Enable JavaScript to view this page.\nWe use cookies. See our Privacy Policy.\nA fine line it is.\n"
    "Short one.\nlorem ipsum dolor sit amet.\nJAVASCRİPT is not javascript here!\nTerms of Use apply...",
    "function f() { return 1; } // code.\nOne two three four five. Six seven!\n\u201cQuoted line, it ends.\u201d",
]


@pytest.fixture(scope="module")
def texts(shared_data):
    """Real documents of several kinds (reviews, news, web text, code docs, Wikipedia, many
    languages), plus crafted edge cases."""
    corpora = shared_data / "corpora"
    picked = [r["text"] for name, count in (("nltk_movie_reviews.jsonl", 15), ("reuters21578.jsonl.gz", 15),
                                           ("nltk_webtext.jsonl", 4), ("python_docs.jsonl", 15),
                                           ("enwiki_gensim.jsonl", 10))
              for r in read_jsonl(corpora / name, count)]
    picked += [r["text"] for r in read_jsonl(shared_data / "multilingual" / "udhr.jsonl", 40)][::4]
    repeated = picked[0] + "\n\n" + picked[0] + "\n" + picked[1][:500] * 3  # duplicate lines and n-grams
    return picked + [repeated] + EDGE_CASES


def test_the_premises_hold():
    assert not any(HAS_LETTER(c) for c in PUNCTUATION)  # a token has a letter iff its stripped word has
    assert set(FAST) == {type(registry.build(n, {})) for n in ("gopher_quality", "gopher_repetition", "c4", "fineweb")}


@pytest.mark.parametrize("name, params", [
    ("gopher_quality", {}), ("gopher_repetition", {}), ("fineweb", {}), ("fineweb", {"short_line_length": 12}),
    ("gopher_quality", {"stop_words_file": "custom"}), ("c4", {}), ("c4", {"min_words_per_line": 5}),
    ("c4", {"bad_words_file": "custom"}),
])
def test_every_score_equals_the_reference(texts, tmp_path, name, params):
    for key in ("stop_words_file", "bad_words_file"):
        if params.get(key):
            path = tmp_path / "words.txt"
            path.write_text("the\n©\nσας\nfine\n42\njavascript\n", encoding="utf-8")
            params = {key: str(path)}
    reference = registry.build(name, params)
    fast = fast_filter(reference)
    assert isinstance(fast, type(reference)) and registry.params_of(fast) == registry.params_of(reference)
    reference.setup()
    fast.setup()
    expected = reference.score_batch(texts)
    got = fast.score_batch(list(texts))
    for key in reference.keys:
        assert got[key] == expected[key], key
    assert fast.score_batch([]) == reference.score_batch([])


def test_one_split_is_shared_and_never_stale(texts):
    batch = list(texts)
    parts = batch_parts(batch)
    assert batch_parts(batch) is parts  # the next filter of the pass reuses it
    assert [j.split("\n") if j else [] for j in parts.joined_words] == [words(t) for t in texts]
    changed = batch[:-1] + ["new text here"]
    assert batch_parts(changed) is not parts and batch_parts(changed).joined_words[-1] == "new\ntext\nhere"


def test_other_filters_are_left_as_they_are():
    c4_lines = registry.build("c4_lines", {})
    assert fast_filter(c4_lines) is c4_lines


def test_fineweb_alone_counts_words_without_the_shared_split(texts):
    fresh = [f"{t}\n" for t in texts]  # new strings: nothing shared yet
    reference, fast = registry.build("fineweb", {}), fast_filter(registry.build("fineweb", {}))
    assert fast.score_batch(fresh) == reference.score_batch(fresh)
    assert not batch_parts(fresh).words_split
