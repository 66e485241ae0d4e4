"""``url_dedup`` on pages of the Python 3.11 documentation (../shared/data/corpora/python_docs.jsonl,
PSF License) at their real addresses on docs.python.org, "crawled" several times under different
spellings of the same URL, on different dates, with the text cut short in some crawls."""
from __future__ import annotations

import hashlib
import json

import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.web.url_dedup import crawl_date, url_dedup

SCHEMA = "id string, text string, url string, warc_date string"


@pytest.fixture(scope="module")
def pages(shared_data) -> dict[str, str]:
    wanted = {"library/os.rst.txt", "library/json.rst.txt", "library/re.rst.txt", "library/string.rst.txt"}
    docs = read_jsonl(shared_data / "corpora" / "python_docs.jsonl")
    return {d["meta"]["path"].split("/")[1].split(".")[0]: d["text"] for d in docs if d["meta"]["path"] in wanted}


@pytest.fixture(scope="module")
def rows(pages) -> list[tuple]:
    base = "https://docs.python.org/3.11/library/"
    os_, js, re_ = pages["os"], pages["json"], pages["re"]
    return [
        # latest crawl wins, although its text is shorter
        ("os-2023-full", os_, f"{base}os.html", "2023-03-01T10:00:00Z"),
        ("os-2024-short", os_[:2000], "https://Docs.Python.org:443/3.11/library/os.html?utm_source=twitter#module-os",
         "2024-01-15T08:30:00Z"),
        # same date: the longest text wins, although its id is larger
        ("json-a", js[:1000], f"{base}json.html", "2023-06-01T00:00:00Z"),
        ("json-b", js, f"{base}json.html#json.dumps", "20230601000000"),  # the same instant, ARC/CDX style
        # same date and text: the smallest id; a missing or unparsable date ranks last
        ("re-1", re_, f"{base}re.html?gclid=EAIaIQobChMI", "2023-06-01T00:00:00.250Z"),
        ("re-2", re_, f"{base}re.html", "2023-06-01T00:00:00.250Z"),
        ("re-0", re_ + "\nPlus a longer footer.", f"{base}./re.html", None),
        ("re-3", re_ + "\nPlus a longer footer.", f"{base}re.html", "1st of June"),
        # no URL, not a URL, a page seen once
        ("no-url-null", pages["string"][:500], None, "2023-06-01T00:00:00Z"),
        ("no-url-blank", pages["string"][:400], "  ", "2023-06-01T00:00:00Z"),
        ("invalid", pages["string"][:300], "docs.python.org/3.11/library/string.html", "2023-06-01T00:00:00Z"),
        ("string", pages["string"], f"{base}string.html", "2023-06-01T00:00:00Z"),
    ]


def outcome(out) -> tuple[dict, dict]:
    kept = {r["id"]: r.asDict() for r in out.kept.collect()}
    rejected = {r["id"]: r.asDict() for r in out.rejected.collect()}
    return kept, rejected


def digest(rows: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(rows.items()), sort_keys=True, default=str).encode()).hexdigest()


@pytest.fixture(scope="module")
def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="module")
def run(frame, stage_ctx):
    """The stage on one partition: (kept by id, rejected by id, stats), computed once."""
    out = url_dedup(frame.repartition(1), stage_ctx())
    kept, rejected = outcome(out)
    return kept, rejected, out.stats(out.kept, out.rejected)


def test_one_survivor_per_canonical_url(run, rows):
    kept, rejected, stats = run
    assert sorted(kept) == ["invalid", "json-b", "no-url-blank", "no-url-null", "os-2024-short", "re-1", "string"]
    assert {k: (v["reject_reason"], v["duplicate_of"]) for k, v in rejected.items()} == {
        "os-2023-full": ("duplicate_url", "os-2024-short"),
        "json-a": ("duplicate_url", "json-b"),
        "re-0": ("duplicate_url", "re-1"), "re-2": ("duplicate_url", "re-1"), "re-3": ("duplicate_url", "re-1"),
    }
    assert len(kept) + len(rejected) == len(rows)  # accounting
    assert kept["os-2024-short"]["url_canonical"] == "https://docs.python.org/3.11/library/os.html"
    assert rejected["re-0"]["url_canonical"] == kept["re-1"]["url_canonical"] == \
        "https://docs.python.org/3.11/library/re.html"
    assert [kept[k]["url_canonical"] for k in ("no-url-null", "no-url-blank", "invalid")] == [None, None, None]
    by_id = {r[0]: r for r in rows}
    for doc_id, row in {**kept, **rejected}.items():  # every input column carried unchanged
        assert (row["text"], row["url"], row["warc_date"]) == by_id[doc_id][1:]
    assert stats == {"urls": 4, "no_url": 2, "invalid_url": 1, "duplicate_groups": 3}


def test_same_rows_whatever_the_partitioning(run, frame, stage_ctx):
    kept, rejected = outcome(url_dedup(frame.repartition(5, "url"), stage_ctx()))
    assert digest(kept) == digest(run[0]) and digest(rejected) == digest(run[1])


def test_dedup_twice_changes_nothing(run, spark, stage_ctx):
    kept = spark.createDataFrame(list(run[0].values()), f"{SCHEMA}, url_canonical string")
    again, rejected = outcome(url_dedup(kept, stage_ctx()))
    assert rejected == {} and digest(again) == digest(run[0])


def test_without_dates_and_with_timestamps(run, frame, stage_ctx):
    kept, rejected = outcome(url_dedup(frame, stage_ctx(), date_column=None))
    assert {"os-2023-full", "json-b", "re-0"} <= set(kept)  # longest text, then smallest id (re-0 < re-3)
    assert rejected["re-3"]["duplicate_of"] == "re-0" and rejected["os-2024-short"]["duplicate_of"] == "os-2023-full"
    stamped = frame.withColumn("crawled", crawl_date(frame, "warc_date")).drop("warc_date")
    assert stamped.schema["crawled"].dataType.typeName() == "timestamp"
    kept_ts, rejected_ts = outcome(url_dedup(stamped, stage_ctx(), date_column="crawled"))
    assert sorted(kept_ts) == sorted(run[0]) and sorted(rejected_ts) == sorted(run[1])


def test_missing_columns_fail_with_one_line(frame, stage_ctx):
    with pytest.raises(CurateError, match="no date column 'fetched'.*date_column: null"):
        url_dedup(frame, stage_ctx(), date_column="fetched")
    with pytest.raises(CurateError, match="no URL column 'link'"):
        url_dedup(frame, stage_ctx(), url_column="link")
