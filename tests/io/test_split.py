"""Splittable JSONL: line-aligned byte ranges give exactly the records of reading each file whole."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.config import load_pipeline
from curate.core import CurateError
from curate.io.jsonl import ParseOptions, count_newlines, owned_chunks, parse_file, parse_split, split_ranges
from curate.io.read import (
    IdTally,
    InputSpec,
    id_hash,
    ids_are_unique,
    jsonl_units,
    looks_generated,
    number_units,
    parquet_units,
    read_documents,
    spill_name,
)

OPTS = ParseOptions()


def split_records(path: Path, rel: str, split_size: int, opts: ParseOptions = OPTS) -> list:
    """What the Spark tasks produce for ``path``: newline counts per split, then every split parsed."""
    units = jsonl_units([rel], [{"size": path.stat().st_size}], split_size)
    counts = {i: count_newlines(path, u[1], u[2]) for i, u in enumerate(units)}
    return [rec for rel_, start, end, before in number_units(units, counts)
            for rec in (parse_file(path, rel_, opts) if end < 0 else parse_split(path, rel_, start, end, before, opts))]


def doc(i: int, **extra) -> bytes:
    return json.dumps({"id": f"d{i}", "text": f"document {i} " + "word " * (i % 7), **extra}).encode()


def messy_bytes() -> bytes:
    """BOM at the start, CRLF lines, bad lines, blank lines, a duplicate id, missing ids, no final newline."""
    lines = [b"\xef\xbb\xbf" + doc(0)]
    for i in range(1, 120):
        if i % 17 == 0:
            lines.append(b"{broken json " + b"x" * i)
        elif i % 13 == 0:
            lines.append(b"")
        elif i % 11 == 0:
            lines.append(json.dumps({"text": f"no id {i}"}).encode())
        elif i % 7 == 0:
            lines.append(doc(i) + b"\r")
        else:
            lines.append(doc(3 if i == 50 else i, meta={"n": i}))
    return b"\n".join(lines)  # the last line has no newline


@pytest.fixture(scope="module")
def messy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "messy.jsonl"
    path.write_bytes(messy_bytes())
    return path


def test_split_ranges_cover_the_file_without_overlap():
    assert split_ranges(0, 10) == [(0, 0)]
    assert split_ranges(10, 10) == [(0, 10)]
    assert split_ranges(25, 10) == [(0, 10), (10, 20), (20, 25)]


@pytest.mark.parametrize("split_size", [1, 2, 3, 7, 64, 100, 1000, 1 << 20])
def test_every_split_size_gives_the_whole_file_records(messy_file, split_size):
    whole = list(parse_file(messy_file, "messy.jsonl", OPTS))
    assert split_records(messy_file, "messy.jsonl", split_size) == whole
    kinds = {r.reason.split(":")[0] for r in whole if r.kind != "doc"}
    assert kinds == {"invalid_json", "blank_line"}
    assert whole[0].repairs == "bom_stripped" and whole[-1].line == 120


def test_a_split_boundary_exactly_after_a_newline(tmp_path):
    """A range that starts right after ``\\n`` owns the line that starts there; the previous one does not."""
    path = tmp_path / "b.jsonl"
    first = doc(1) + b"\n"
    path.write_bytes(first + doc(2) + b"\n" + doc(3) + b"\n")
    with open(path, "rb") as fh:
        skipped, chunks = owned_chunks(fh, 0, len(first))
        assert (skipped, b"".join(chunks)) == (0, first)
        skipped, chunks = owned_chunks(fh, len(first), len(first) + 1)
        assert (skipped, b"".join(chunks)) == (0, doc(2) + b"\n")
        skipped, chunks = owned_chunks(fh, len(first) - 1, len(first))  # starts inside line 1: owns nothing
        assert (skipped, b"".join(chunks)) == (1, b"")
    assert [r.id for r in split_records(path, "b.jsonl", len(first))] == ["d1", "d2", "d3"]


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.one_of(
           st.builds(lambda i, crlf: doc(i) + (b"\r" if crlf else b""), st.integers(0, 50), st.booleans()),
           st.sampled_from([b"", b"   ", b"{bad", b"[1]", b'{"text": null}', b'{"text": "caf\xe9"}'])),
           max_size=30),
       final_newline=st.booleans(), bom=st.booleans(), split_size=st.integers(1, 200))
def test_splits_equal_whole_file_for_any_layout(tmp_path_factory, lines, final_newline, bom, split_size):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path_factory.mktemp("h") / "h.jsonl"
    path.write_bytes(data)
    assert split_records(path, "h.jsonl", split_size) == list(parse_file(path, "h.jsonl", OPTS))


def test_compressed_files_stay_one_unit():
    units = jsonl_units(["a.jsonl.gz", "b.jsonl.zst", "c.jsonl"], [{"size": 5000}] * 3, 1024)
    assert units[:2] == [("a.jsonl.gz", 0, -1, 0), ("b.jsonl.zst", 0, -1, 0)]
    assert [u[1:3] for u in units[2:]] == [(0, 1024), (1024, 2048), (2048, 3072), (3072, 4096), (4096, 5000)]


def test_real_text_with_1kib_splits_matches_whole_file(shared_data):
    path = shared_data / "corpora" / "wikitext2.jsonl"
    whole = list(parse_file(path, path.name, OPTS))
    assert len(whole) == 120 and all(r.kind == "doc" for r in whole)
    assert split_records(path, path.name, 1024) == whole


@pytest.mark.parametrize("value, expected", [
    (4096, 4096), ("64MiB", 64 << 20), ("1KiB", 1024), ("2 GB", 2 * 10**9), ("1.5MiB", 3 << 19), ("2048", 2048),
])
def test_split_size_accepts_bytes_and_units(value, expected):
    assert InputSpec("x", split_size=value).split_size == expected


@pytest.mark.parametrize("value", ["64 parsecs", "lots", -5, 100, True, None, [1]])
def test_bad_split_size_is_a_clear_error(value):
    with pytest.raises(CurateError, match="input.split_size"):
        InputSpec("x", split_size=value)


def test_split_size_from_pipeline_yaml(tmp_path):
    p = load_pipeline({"name": "s", "input": {"path": str(tmp_path), "split_size": "64MiB"},
                       "output": str(tmp_path / "o"), "stages": ["exact_dedup"]})
    assert p.input.split_size == 64 << 20
    assert load_pipeline({"name": "s", "input": str(tmp_path), "output": str(tmp_path / "o"),
                          "stages": ["exact_dedup"]}).input.split_size == 128 << 20


def _collected(result) -> tuple[list, list]:
    docs = sorted(tuple(r) for r in result.docs.collect())
    quarantine = sorted(tuple(r) for r in result.quarantine.collect())
    return docs, quarantine


def test_spark_read_with_small_splits_is_identical_to_whole_files(spark, tmp_path, messy_file):
    """Documents, carried columns, repairs, quarantine and the duplicate-id rule: split or not, same rows."""
    root = tmp_path / "in"
    root.mkdir()
    big = messy_bytes() + b"\n" + b"\n".join(doc(1000 + i, meta={"n": i}) for i in range(200)) + b"\n"
    (root / "a.jsonl").write_bytes(big)
    (root / "b.jsonl").write_bytes(doc(5) + b"\n" + doc(3) + b"\n")  # duplicates of ids in a.jsonl
    assert len(jsonl_units(["a.jsonl"], [{"size": len(big)}], 1024)) > 10
    split = read_documents(spark, InputSpec(str(root), split_size=1024))
    whole = read_documents(spark, InputSpec(str(root), split_size="1TiB"))
    try:
        docs, quarantine = _collected(split)
        assert (docs, quarantine) == _collected(whole)
        assert split.docs.columns == whole.docs.columns
        dups = [q for q in quarantine if q[3].startswith("duplicate_id")]
        assert [(q[0], q[1], q[3]) for q in dups] == [
            ("a.jsonl", 51, "duplicate_id: first at a.jsonl:4"),
            ("b.jsonl", 1, "duplicate_id: first at a.jsonl:6"), ("b.jsonl", 2, "duplicate_id: first at a.jsonl:4")]
        assert len(docs) + len(quarantine) == big.count(b"\n") + 2
    finally:
        split.release()
        whole.release()


def test_spark_read_of_real_text_with_512kib_splits(spark, shared_data):
    """16 line-aligned splits of 8 MB of real reviews (64 KiB gave 126 tasks: 40 s of task overhead)."""
    path = shared_data / "corpora" / "nltk_movie_reviews.jsonl"
    split = read_documents(spark, InputSpec(str(path), split_size="512KiB"))
    whole = read_documents(spark, InputSpec(str(path)))
    try:
        docs, quarantine = _collected(split)
        assert len(docs) == 2000 and quarantine == []
        assert (docs, quarantine) == _collected(whole)
    finally:
        split.release()
        whole.release()


def test_id_hashes_rule_duplicates_out_or_defer_to_the_exact_check(tmp_path):
    """The driver's check says "unique" only when every hash differs and no unit is unsure."""
    from types import SimpleNamespace

    def report(unit: int, ids: list[str], split_files=frozenset()):
        tally = IdTally(split_files)
        rows = [(i, "doc", doc_id, "text") for i, doc_id in enumerate(ids)]
        assert list(tally.watch(rows)) == rows  # rows pass through unchanged
        tally.save(str(tmp_path / spill_name(unit, "ids")))
        return SimpleNamespace(unit=unit, ids=len(tally.ids), unsure=tally.unsure)

    spill = str(tmp_path)
    assert id_hash("d1") == id_hash("d1") != id_hash("d2")
    assert ids_are_unique([report(0, ["d1", "d2"]), report(1, ["d3", None])], spill)
    assert ids_are_unique([], spill)
    assert not ids_are_unique([report(0, ["d1", "d2"]), report(1, ["d2"])], spill)  # a duplicate id
    assert not ids_are_unique([report(0, ["d1", "d2"]), report(1, ["d3"])], spill, limit=2)  # too many to hold
    unsure = report(1, ["a.jsonl:7"], frozenset({"a.jsonl"}))  # may equal an id generated for a split
    assert unsure.unsure and not ids_are_unique([report(0, ["d1"]), unsure], spill)
    assert not report(1, ["b.jsonl:7", "a.jsonl:x", "a.jsonl"], frozenset({"a.jsonl"})).unsure
    assert looks_generated("dir/a:b.jsonl:12", frozenset({"dir/a:b.jsonl"}))


def test_input_id_equal_to_a_generated_id_is_a_duplicate_split_or_whole(spark, tmp_path):
    """An id-less line gets ``<file>:<line>``; an input id equal to it is quarantined as a duplicate."""
    root = tmp_path / "in"
    root.mkdir()
    lines = [doc(i) if i != 2 else json.dumps({"text": "no id here"}).encode() for i in range(200)]
    (root / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (root / "b.jsonl").write_bytes(json.dumps({"id": "a.jsonl:3", "text": "an id like a generated one"}).encode())
    found = []
    for size in (1024, "1TiB"):
        result = read_documents(spark, InputSpec(str(root), split_size=size))
        try:
            docs, quarantine = _collected(result)
        finally:
            result.release()
        assert [(q[0], q[1], q[3]) for q in quarantine] == [("b.jsonl", 1, "duplicate_id: first at a.jsonl:3")]
        found.append((docs, quarantine))
    assert found[0] == found[1] and len(found[0][0]) == 200


def test_listing_passed_in_is_what_is_read(spark, tmp_path):
    """Files added after the listing was fixed are not read."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jsonl").write_bytes(doc(1) + b"\n")
    listing = (str(root), ["a.jsonl"])
    (root / "late.jsonl").write_bytes(doc(2) + b"\n")
    result = read_documents(spark, InputSpec(str(root)), listing=listing)
    try:
        assert [r.id for r in result.docs.collect()] == ["d1"] and result.files == ["a.jsonl"]
    finally:
        result.release()


def _parquet_with_row_groups(path: Path, rows: int, group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [None if i % 9 == 4 else " " if i % 9 == 5 else f"row {i} te\x00xt " * (i % 5 + 1) for i in range(rows)]
    ids = [None if i % 4 == 0 else "" if i % 4 == 1 else f"p{i % 50}" for i in range(rows)]
    pq.write_table(pa.table({"text": texts, "id": ids, "n": list(range(rows))}), path, row_group_size=group)


def test_parquet_units_group_row_groups_by_size(tmp_path):
    import pyarrow.parquet as pq

    _parquet_with_row_groups(tmp_path / "t.parquet", 100, 10)
    meta = pq.read_metadata(tmp_path / "t.parquet")
    assert parquet_units([("t.parquet", meta)], 1 << 30) == [("t.parquet", 0, 10, 0)]
    one_each = parquet_units([("t.parquet", meta)], 1)
    assert one_each == [("t.parquet", g, g + 1, 10 * g) for g in range(10)]


def test_spark_parquet_split_by_row_group_is_identical_to_whole_files(spark, tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    _parquet_with_row_groups(root / "a.parquet", 300, 20)
    _parquet_with_row_groups(root / "b.parquet", 40, 7)
    split = read_documents(spark, InputSpec(str(root), split_size=1024))
    whole = read_documents(spark, InputSpec(str(root), split_size="1TiB"))
    try:
        docs, quarantine = _collected(split)
        assert (docs, quarantine) == _collected(whole)
        assert split.docs.columns == ["id", "text", "n", "repairs", "_file", "_line"]
        assert len(docs) + len(quarantine) == 340
        by_line = {(d[4], d[5]): d for d in docs}
        assert by_line[("a.parquet", 2)][:4] == ("a.parquet:2", "row 1 text " * 2, 1, "nul_removed")
        assert by_line[("a.parquet", 3)][:3] == ("p2", "row 2 text " * 3, 2)
        assert {q[3] for q in quarantine if not q[3].startswith("duplicate_id")} == {"null_text", "empty_text"}
    finally:
        split.release()
        whole.release()


FALLBACK_LINES = [  # lines msgspec refuses or that need a repair, mixed with ordinary ones
    b'{"id": "n", "text": "nan", "v": NaN, "w": {"x": -Infinity}}',
    b'{"id": "h", "text": "huge", "v": 1e400, "score": "high"}',
    b'{"id": "s", "text": "lone \\ud800 surrogate", "meta": {"w": "\\udc00"}}',
    b'{"id": "l", "text": "caf\xe9 latin-1", "meta": {"n": "not a number"}}',
    b'\xef\xbb\xbf{"id": "b", "text": "a BOM after line 1"}',
    b'{"id": "z", "text": "nul \\u0000 inside", "big": 123456789012345678901234567890}',
    b'{"text": "no id", "meta": {"tags": [1, "x"]}}\r',
    b'{"id": "t", "text": 5}',
    b"",
    b'{"id": 7, "text": "int id", "text": "last wins", "id_original": 1}',
]


def _reference_frames(spark, records: list):
    """What the per-line reference parser's records become in Spark, the way the reader did it
    before the fast path: carried fields inferred by spark.read.json over every value, then
    from_json; documents of a repeated id after the first by (file, line) quarantined."""
    from pyspark.sql import functions as F

    rows = [(r.file, r.line, r.kind, r.id, r.text, r.extra, r.reason, r.snippet, r.repairs) for r in records]
    parsed = spark.createDataFrame(rows, "file string, line long, kind string, id string, text string, extra string,"
                                         " reason string, snippet string, repairs string")
    good = parsed.filter("kind = 'doc'")
    schema = spark.read.json(good.select("extra").filter("extra is not null")).schema
    docs = good.withColumn("_x", F.from_json("extra", schema)).select(
        "id", "text", "_x.*", "repairs", F.col("file").alias("_file"), F.col("line").alias("_line"))
    quarantine = parsed.filter("kind != 'doc'").select("file", "line", "kind", "reason", "snippet")
    return docs, quarantine


def test_fast_path_with_fallback_lines_equals_the_reference_parser(spark, tmp_path):
    """A file whose lines mostly go through msgspec, with every kind that falls back to json.loads
    (NaN, 1e400, BOM, invalid UTF-8, lone surrogates, bad JSON…) spread over 1 KiB splits: the
    reader's documents, carried columns and quarantine are those of the per-line reference parser."""
    lines = [b"\xef\xbb\xbf" + doc(0, meta={"n": 0})]
    for i in range(1, 400):
        lines.append(FALLBACK_LINES[i % len(FALLBACK_LINES)] if i % 9 == 0 else
                     doc(i, meta={"n": i, "tags": ["t"] * (i % 3), "w": "" if i % 5 else "x"}, score=i / 3))
    path = tmp_path / "in" / "mixed.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(lines) + b"\n")
    reference = list(parse_file(path, "mixed.jsonl", OPTS))
    assert sum(r.kind == "record" for r in reference) > 10 and sum(r.kind == "doc" for r in reference) > 350
    split = read_documents(spark, InputSpec(str(path.parent), split_size=1024))
    try:
        want_docs, want_quarantine = _reference_frames(spark, reference)
        assert split.docs.schema == want_docs.schema
        first = {}
        for d in reference:
            if d.kind == "doc":
                first.setdefault(d.id, d.line)
        got_docs, got_quarantine = _collected(split)
        want = sorted(tuple(r) for r in want_docs.collect() if first[r.id] == r._line)
        assert list(map(repr, got_docs)) == list(map(repr, want))  # repr: NaN carried values compare equal
        dups = [q for q in got_quarantine if q[3].startswith("duplicate_id")]
        assert dups and all(first[q[4]] < q[1] for q in dups)  # FALLBACK_LINES repeat ids: the rule runs
        assert sorted(q for q in got_quarantine if q not in dups) == sorted(tuple(r) for r in want_quarantine.collect())
        assert len(got_docs) + len(got_quarantine) == len(reference)
    finally:
        split.release()
