"""The ``c4_lines`` modifier (C4 line rules, Raffel et al. 2020, Sec. 2.2) on real text.

Text: NLTK Web Text (Firefox bug reports, 50-line chunks, CRLF line endings; licence not
stated, see ../shared/data/README.md) and the Python 3.11 docs (PSF License), read from
../shared/data at run time.
"""
from __future__ import annotations

import pytest
from helpers import read_jsonl

import filters
from curate.quality.score import score
from filters.catalog import describe

# The eight lines of webtext-firefox-0097 that end in terminal punctuation (the other 42 do not):
# six pass every rule, one has two words, one mentions JavaScript.
KEPT_0097 = [
    "en-US.jar is different among platforms.",
    "Hitting 'Set as default browser'",
    "Crash after a type of popup window comes up.",
    'password is saved even when the password field has autocomplete="off"',
    'Anchors with "?click" in them do not display.',
    "Filling in forms fails - servers don't recognize current context.",
]


@pytest.fixture(scope="module")
def docs(shared_data) -> list[dict]:
    webtext = read_jsonl(shared_data / "corpora" / "nltk_webtext.jsonl")
    firefox = [d for d in webtext if d["id"].startswith("webtext-firefox")]
    return firefox[:40] + [d for d in firefox if d["id"] == "webtext-firefox-0097"] + \
        read_jsonl(shared_data / "corpora" / "python_docs.jsonl", 20)


def test_rewrites_a_real_page_line_by_line(docs):
    (doc,) = [d for d in docs if d["id"] == "webtext-firefox-0097"]
    new, counts = filters.build("c4_lines").apply(doc["text"])
    assert new.split("\n") == KEPT_0097  # stripped (the \r of CRLF goes), joined with \n
    assert "Firebird 0.7 does not correctly process style related events from JavaScript." in doc["text"]
    assert counts == {"lines": 50.0, "kept_lines": 6.0, "removed_lines": 44.0, "no_terminal_punctuation": 42.0,
                      "too_few_words": 1.0, "javascript": 1.0, "policy": 0.0,
                      "removed_chars": float(len(doc["text"]) - len(new))}
    assert counts["removed_chars"] == 3090 - len("\n".join(KEPT_0097))


def test_one_definition_with_the_c4_scores(docs):
    """``c4`` and ``c4_lines`` apply the same line rules; the rewritten text is a fixed point."""
    c4, lines = filters.build("c4"), filters.build("c4_lines")
    removed = 0
    for doc in docs:
        new, counts = lines.apply(doc["text"])
        before, after = c4.score(doc), c4.score({"text": new})
        assert counts["kept_lines"] == before["kept_lines"] == after["lines"] == after["kept_lines"], doc["id"]
        assert (counts["javascript"], counts["policy"]) == (before["javascript_lines"], before["policy_lines"])
        assert counts["lines"] == before["lines"]
        assert after["sentences"] == before["sentences"]
        assert lines.apply(new) == (new, {**counts, "lines": counts["kept_lines"], "removed_lines": 0.0,
                                          "no_terminal_punctuation": 0.0, "too_few_words": 0.0,
                                          "javascript": 0.0, "policy": 0.0, "removed_chars": 0.0})
        removed += counts["removed_lines"]
    assert removed > 1000  # bug titles rarely end in a full stop; reST markup lines never do


def test_min_words_per_line_is_a_score_parameter(docs):
    (doc,) = [d for d in docs if d["id"] == "webtext-firefox-0097"]
    new, counts = filters.build("c4_lines", {"min_words_per_line": 2}).apply(doc["text"])
    assert counts["kept_lines"] == 7.0 and 'Extension "X"' in new.split("\n")
    assert describe(filters.get("c4_lines"))["kind"] == "modifier"
    assert filters.build("c4_lines").reject(counts) is None  # a modifier keeps every document


def test_score_stage_rewrites_text_and_reports_removed_lines(spark, stage_ctx, docs):
    rows = [{"id": d["id"], "text": d["text"]} for d in docs]
    df = spark.createDataFrame(rows, "id string, text string").repartition(3, "id")
    out = score(df, stage_ctx(), filters=["c4_lines", "c4"])
    got = {r["id"]: r for r in out.kept.collect()}
    modifier = filters.build("c4_lines")
    total = 0.0
    for doc in docs:
        new, counts = modifier.apply(doc["text"])
        row = got[doc["id"]]
        assert row["text"] == new
        assert row["c4_lines"].asDict() == counts
        assert row["c4"]["lines"] == counts["kept_lines"]  # c4 scored the rewritten text
        total += counts["removed_lines"]
    stats = out.stats(out.kept, None)
    assert stats["modified"]["c4_lines.removed_lines"] == int(total)
    assert stats["modified"]["c4_lines.javascript"] == sum(modifier.apply(d["text"])[1]["javascript"] for d in docs)
