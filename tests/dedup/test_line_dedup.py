"""``line_dedup`` (CCNet line / paragraph dedup) on Reuters-21578 newswire (research use only; read
from ../shared/data at run time): 59 of the first 60 stories end in the same " Reuter" sign-off
line, some stories were filed twice, and a real paragraph of the Python docs ("About these
documents", PSF License) is appended to a few stories as a site-wide footer would be."""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.dedup.line_dedup import REASON, line_dedup, normalize_unit, remove_units, restore, unit_hash, unit_keys

FOOTED = 5  # stories that get the footer paragraph


# ---------------------------------------------------------------------------- pure functions


def test_normalisation_follows_ccnet():
    assert normalize_unit(" Reuter\r") == normalize_unit("REUTER") == "reuter"
    assert normalize_unit("    Final figures for the period to February 28 are expected to") == \
        "final figures for the period to february 00 are expected to"
    assert normalize_unit("1,780 dlrs per tonne -- fob.") == "0000 dlrs per tonne fob"
    assert normalize_unit("«Ça va?» — ١٢٣") == "ça va 000"  # Unicode punctuation and digits
    assert normalize_unit(" -- ... \t") == ""
    # blank and punctuation-only lines never count
    assert unit_keys("Reuter\n\n-----\n reuter \n", "line") == [unit_hash("reuter")]
    assert unit_hash("reuter") == unit_hash(normalize_unit(" Reuter"))


def test_removal_keeps_neighbours_and_records_spans():
    text = "COFFEE PRICES\nBrazil said it would sell coffee.\n Reuter\n"
    new, count, spans = remove_units(text, "line", {unit_hash("reuter")})
    assert (new, count, spans) == ("COFFEE PRICES\nBrazil said it would sell coffee.\n", 1, [(47, "\n Reuter")])
    new, count, spans = remove_units(text, "line", {unit_hash("coffee prices"), unit_hash("reuter")})
    assert (new, count) == ("Brazil said it would sell coffee.\n", 2)
    assert spans == [(0, "COFFEE PRICES\n"), (47, "\n Reuter")]
    assert restore(new, spans) == text
    paragraphs = "Lead paragraph.\n\nBody text.\n  \n\nShared footer.\n"
    new, count, spans = remove_units(paragraphs, "paragraph", {unit_hash("body text")})
    assert new == "Lead paragraph.\n  \n\nShared footer.\n" and restore(new, spans) == paragraphs
    assert remove_units(text, "line", set()) == (text, 0, [])


# ---------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def docs(shared_data) -> list[dict]:
    stories = read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", 60)
    about = read_jsonl(shared_data / "corpora" / "python_docs.jsonl", 1)[0]
    assert about["id"] == "python_docs-about"
    footer = about["text"].split("\n\n")[4]  # "Development of the documentation and its toolchain is …"
    assert footer.startswith("Development of the documentation")
    out = [{"id": d["id"], "text": d["text"]} for d in stories]
    for d in out[10:10 + FOOTED]:
        d["text"] = d["text"].rstrip() + "\n\n" + footer
    return out


def reference(docs: list[dict], unit: str, min_docs: int, keep_first: bool, min_chars: int):
    """The plain Python loop (dicts on one machine) the Spark stage must agree with."""
    keys = {d["id"]: unit_keys(d["text"], unit) for d in docs}
    counts = Counter(k for ks in keys.values() for k in ks)
    first: dict[int, str] = {}
    for doc_id in sorted(keys):
        for k in keys[doc_id]:
            first.setdefault(k, doc_id)
    frequent = {k for k, n in counts.items() if n >= min_docs}
    kept, rejected = {}, {}
    for d in docs:
        remove = {k for k in keys[d["id"]] if k in frequent and not (keep_first and first[k] == d["id"])}
        new, n, spans = remove_units(d["text"], unit, remove)
        record = {"removed_units": n, "removed_chars": len(d["text"]) - len(new),
                  "removed": [{"offset": o, "text": s} for o, s in spans]}
        if n and len(new.strip()) < min_chars:
            rejected[d["id"]] = {"text": d["text"], "record": record}
        else:
            kept[d["id"]] = {"text": new, "record": record}
    return frequent, counts, kept, rejected


def run(spark, ctx, docs, partitions=1, **params):
    df = spark.createDataFrame(docs, "id string, text string").repartition(partitions, "id")
    out = line_dedup(df, ctx, **params)
    column = params.get("column") or f"{params.get('unit', 'line')}_dedup"

    def rows(frame):
        return {r["id"]: {"text": r["text"], "record": r[column].asDict(recursive=True),
                          "reason": r["reject_reason"] if "reject_reason" in r else None}
                for r in frame.collect()}

    return rows(out.kept), rows(out.rejected), out.stats(out.kept, out.rejected)


@pytest.fixture(scope="module")
def lines(spark, stage_ctx, docs):
    ctx = stage_ctx()
    return ctx, run(spark, ctx, docs, unit="line", min_docs=2)


def test_line_dedup_agrees_with_the_reference(lines, docs):
    ctx, (kept, rejected, stats) = lines
    frequent, counts, want_kept, want_rejected = reference(docs, "line", 2, False, 1)
    assert {k: (v["text"], v["record"]) for k, v in kept.items()} == \
        {k: (v["text"], v["record"]) for k, v in want_kept.items()}
    assert rejected == {k: {"text": v["text"], "record": v["record"], "reason": REASON}
                        for k, v in want_rejected.items()}
    units = ctx.spark.read.parquet(str(ctx.stage_dir / "artifacts" / "line_dedup_units"))
    assert {r["hash"]: r["docs"] for r in units.collect()} == {k: counts[k] for k in frequent}
    assert stats["frequent_units"] == len(frequent) == 85  # 81 in the stories, 4 footer lines
    changed = [v["record"] for v in [*want_kept.values(), *want_rejected.values()] if v["record"]["removed_units"]]
    assert stats["docs_changed"] == len(changed) and stats["units_removed"] == sum(r["removed_units"] for r in changed)
    assert stats["chars_removed"] == sum(r["removed_chars"] for r in changed)


def test_the_sign_off_line_goes_everywhere_and_nothing_is_lost(lines, docs):
    _ctx, (kept, rejected, _stats) = lines
    originals = {d["id"]: d["text"] for d in docs}
    first = originals["reuters-00001"]
    assert first.endswith("February 27.\n Reuter\n")
    assert kept["reuters-00001"]["text"] == first[:-len(" Reuter\n")]
    assert kept["reuters-00001"]["record"] == {"removed_units": 1, "removed_chars": 8,
                                               "removed": [{"offset": len(first) - 9, "text": "\n Reuter"}]}
    assert "Reuter" not in "".join(v["text"] for v in kept.values()).replace("Reuters", "")
    assert len(kept) + len(rejected) == len(docs)
    for doc_id, row in kept.items():  # the original text comes back from the recorded spans
        spans = [(s["offset"], s["text"]) for s in row["record"]["removed"]]
        assert restore(row["text"], spans) == originals[doc_id]
        assert len(originals[doc_id]) - len(row["text"]) == row["record"]["removed_chars"]
    assert all(row["text"] == originals[doc_id] for doc_id, row in rejected.items())


def test_same_rows_whatever_the_partitioning(spark, stage_ctx, lines, docs):
    _ctx, (kept, rejected, stats) = lines
    kept4, rejected4, stats4 = run(spark, stage_ctx(), list(reversed(docs)), partitions=4, unit="line", min_docs=2)

    def digest(rows):
        return hashlib.sha256(json.dumps(sorted(rows.items()), sort_keys=True).encode()).hexdigest()

    assert (digest(kept4), digest(rejected4), stats4) == (digest(kept), digest(rejected), stats)


def test_keep_first_and_paragraphs(spark, stage_ctx, docs):
    params = {"unit": "paragraph", "min_docs": 3, "keep_first": True, "min_chars": 200}
    kept, rejected, stats = run(spark, stage_ctx(), docs, partitions=2, **params)
    frequent, _counts, want_kept, want_rejected = reference(docs, **params)
    assert {k: (v["text"], v["record"]) for k, v in kept.items()} == \
        {k: (v["text"], v["record"]) for k, v in want_kept.items()}
    assert {k: (v["text"], v["record"]) for k, v in rejected.items()} == \
        {k: (v["text"], v["record"]) for k, v in want_rejected.items()}
    # two paragraphs are in >= 3 documents: the footer (5 stories) and a lone " Reuter" paragraph
    assert stats["frequent_units"] == len(frequent) == 2 and stats["docs_changed"] == 7
    footed = {d["id"]: d["text"] for d in docs[10:10 + FOOTED]}
    assert list(footed) == ["reuters-00011", "reuters-00012", "reuters-00013", "reuters-00014", "reuters-00015"]
    assert kept["reuters-00011"]["text"] == footed["reuters-00011"]  # the first by id keeps the footer
    for doc_id in ("reuters-00012", "reuters-00013", "reuters-00015"):
        assert kept[doc_id]["text"] == footed[doc_id].split("\n\nDevelopment of the documentation")[0]
    # a story shorter than min_chars without its footer is rejected, with its original text
    story = footed["reuters-00014"].split("\n\nDevelopment of the documentation")[0]
    assert len(story) < 200 and rejected["reuters-00014"]["text"] == footed["reuters-00014"]
    assert rejected["reuters-00014"]["reason"] == REASON


def test_bad_parameters_fail_with_one_line(spark, stage_ctx):
    df = spark.createDataFrame([("a", "x")], "id string, text string")
    with pytest.raises(CurateError, match="unit must be one of line, paragraph"):
        line_dedup(df, stage_ctx(), unit="word")
    with pytest.raises(CurateError, match="min_docs must be an integer >= 2"):
        line_dedup(df, stage_ctx(), min_docs=1)
    with pytest.raises(CurateError, match="already has a column 'line_dedup'"):
        line_dedup(df.withColumn("line_dedup", df.text), stage_ctx())
