"""Decontamination against real benchmark test sets: planted questions are found, clean text is not."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.targeted.benchmarks import TEST_SPLITS, load_benchmarks, parse_specs
from curate.targeted.ngrams import build_index, cut_spans, merge_spans, ngram_hashes, scan, word_hashes, words

SUBJECTS = ["high_school_biology", "college_physics", "astronomy"]


@pytest.fixture(scope="module")
def targets(shared_data):
    bench = shared_data / "benchmarks"
    return [{"path": str(bench / "mmlu_test.jsonl"), "template": "{question}", "where": {"subject": SUBJECTS}},
            {"path": str(bench / "arc_challenge.jsonl"), "template": "{query}", "split": "test"}]


@pytest.fixture(scope="module")
def questions(targets):
    """12 test questions per benchmark, 8 words and longer (short ones included)."""
    examples = load_benchmarks(parse_specs(targets), TEST_SPLITS)
    chosen = {}
    for e in examples:
        size = len(words(e.text))
        if 8 <= size and len(chosen.setdefault(e.benchmark, [])) < 12 and (size < 13 or len(chosen[e.benchmark]) % 3):
            chosen[e.benchmark].append(e.text)
    assert {len(v) for v in chosen.values()} == {12} and min(len(words(t)) for v in chosen.values() for t in v) < 13
    return chosen


@pytest.fixture(scope="module")
def reviews(shared_data):
    return read_jsonl(shared_data / "corpora" / "nltk_movie_reviews.jsonl", 150)


VARIANTS = {
    "verbatim": lambda q: q,
    "upper": str.upper,
    "whitespace": lambda q: "\n   ".join(q.split()),
    "punctuation": lambda q: re.sub(r"[^\w\s']", " ", q).replace(" ", ", ", 3) + "!!",
}


def planted(reviews, questions) -> dict[str, tuple[str, str]]:
    """id -> (text with a question planted mid-review, benchmark)."""
    docs = {}
    for i, (benchmark, question) in enumerate((b, q) for b, qs in sorted(questions.items()) for q in qs):
        host = reviews[i]["text"]
        variant = list(VARIANTS)[i % len(VARIANTS)]
        middle = len(host) // 2
        docs[f"planted-{i:02d}-{variant}"] = (
            host[:middle] + " " + VARIANTS[variant](question) + " " + host[middle:], benchmark)
    return docs


def test_normalisation_ignores_case_whitespace_and_punctuation():
    base = "The cell's nucleus, which holds DNA, divides during mitosis in eukaryotic cells today."
    for variant in VARIANTS.values():
        assert words(variant(base)) == words(base)
    assert words("Don’t stop") == words("dont STOP") == ["dont", "stop"]
    hashes = word_hashes(words(base))
    grams = ngram_hashes(hashes, 13)
    assert len(grams) == len(hashes) - 12 and len(set(grams.tolist())) == len(grams)
    np.testing.assert_array_equal(ngram_hashes(hashes[1:14], 13), grams[1:2])  # a gram's hash is positional-free


def test_index_finds_planted_questions_and_nothing_in_clean_reviews(targets, questions, reviews):
    examples = load_benchmarks(parse_specs(targets), TEST_SPLITS)
    index, skipped = build_index(((e.benchmark, e.text) for e in examples), 13, 8)
    assert set(index.names) == {"mmlu", "arc_challenge"} and 8 in index.lengths
    assert skipped["arc_challenge"] + skipped["mmlu"] > 0  # questions under 8 words cannot be indexed
    for text, benchmark in planted(reviews[100:], questions).values():
        overlap = scan(text, index)
        assert benchmark in overlap.ngrams, text
        assert sum(e - s for s, e in overlap.spans) < len(text) / 2
    assert all(not scan(r["text"], index).ngrams for r in reviews[:100])


def test_cut_spans_keeps_long_pieces_only():
    text = "a" * 30 + "BAD" + "b" * 5 + "WORSE" + "c" * 40
    spans = merge_spans([(30, 33), (38, 43), (31, 32)])
    assert spans == [(30, 33), (38, 43)]
    assert cut_spans(text, spans, 20) == "a" * 30 + "\n\n" + "c" * 40
    assert cut_spans(text, spans, 50) == ""


def _run(stage_ctx, stage_dir, rows, partitions, **params):
    from curate.targeted.decontaminate import decontaminate

    ctx = stage_ctx(stage_dir)
    df = ctx.spark.createDataFrame(rows, "id string, text string, source string").repartition(partitions)
    out = decontaminate(df, ctx, **params)
    kept = {r["id"]: r for r in out.kept.collect()}
    rejected = {r["id"]: r for r in out.rejected.collect()}
    return out, ctx, kept, rejected


def test_stage_removes_exactly_the_planted_documents_whatever_the_method(stage_ctx, tmp_path, targets, questions,
                                                                         reviews):
    docs = planted(reviews[100:], questions)
    rows = [(k, text, "planted") for k, (text, _) in docs.items()] + [(r["id"], r["text"], "clean")
                                                                       for r in reviews[:60]]
    results = []
    for partitions, method in ((1, "broadcast"), (4, "join")):
        out, ctx, kept, rejected = _run(stage_ctx, tmp_path / method, rows, partitions, benchmarks=targets,
                                        method=method)
        assert set(rejected) == set(docs) and len(kept) == 60
        for doc_id, row in rejected.items():
            assert row["reject_reason"] == "benchmark_contamination"
            assert row["decontaminate"]["benchmarks"] == [docs[doc_id][1]] and row["decontaminate"]["flagged"]
        assert all(r["decontaminate"]["benchmarks"] == [] for r in kept.values())
        stats = out.stats(out.kept, out.rejected)
        assert {b: v["docs_flagged"] for b, v in stats["per_benchmark"].items()} == {"mmlu": 12, "arc_challenge": 12}
        assert all(v["ngrams_matched"] >= 12 for v in stats["per_benchmark"].values())
        assert stats["index"]["method"] == method
        summary = json.loads((tmp_path / method / "artifacts" / "ngram_index.json").read_text())
        assert summary["benchmarks"]["mmlu"]["ngrams"] > 1000
        results.append(sorted((k, tuple(r["decontaminate"]["ngrams"])) for k, r in rejected.items()))
    assert results[0] == results[1]


def test_stage_cut_mode_keeps_the_review_around_the_question(stage_ctx, tmp_path, targets, questions, reviews):
    docs = planted(reviews[100:], questions)
    rows = [(k, text, "planted") for k, (text, _) in list(docs.items())[:6]]
    rows.append(("tiny", questions["mmlu"][0], "planted"))  # nothing left after the cut
    _, _, kept, rejected = _run(stage_ctx, tmp_path, rows, 2, benchmarks=targets, mode="cut", min_piece_chars=100)
    assert set(rejected) == {"tiny"}
    for doc_id, row in kept.items():
        original = docs[doc_id][0]
        struct = row["decontaminate"]
        assert struct["flagged"] and struct["chars_removed"] == len(original) - len(row["text"]) > 40
        assert row["decontaminate"]["benchmarks"] == [docs[doc_id][1]]
        assert row["text"][:100] == original[:100].strip()[:100]


def test_stage_errors_are_actionable(spark, stage_ctx, shared_data):
    from curate.targeted.decontaminate import decontaminate

    df = spark.createDataFrame([("a", "text")], "id string, text string")
    arc = str(shared_data / "benchmarks" / "arc_easy.jsonl")
    with pytest.raises(CurateError, match="split"):
        decontaminate(df, stage_ctx(), benchmarks=[arc])
    with pytest.raises(CurateError, match="mode"):
        decontaminate(df, stage_ctx(), benchmarks=[arc], mode="drop")
    with pytest.raises(CurateError, match="not found"):
        decontaminate(df, stage_ctx(), benchmarks=["missing.jsonl"])
