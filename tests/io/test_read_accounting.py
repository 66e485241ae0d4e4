"""Reading through Spark: read = passed + quarantined, for every kind of bad input."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curate.engine.runner import run_pipeline
from curate.io.read import InputSpec, list_input_files, read_documents
from curate.io.shards import read_stage


def _doc(i: int, **extra) -> bytes:
    return json.dumps({"id": f"doc-{i:03d}", "text": f"Document {i} has some words in it.", **extra}).encode()


@pytest.fixture(scope="module")
def messy_dir(tmp_path_factory) -> Path:
    """One file per kind of problem, plus good files; 'expected' lists what must happen."""
    root = tmp_path_factory.mktemp("messy")
    good = b"\n".join(_doc(i, source="good", meta={"n": i}) for i in range(20)) + b"\n"
    (root / "good.jsonl").write_bytes(good)
    (root / "bad.jsonl").write_bytes(b"\n".join([
        _doc(100),
        b"{broken json",
        b"[1, 2, 3]",
        b'{"id": "t1"}',
        b'{"id": "t2", "text": null}',
        b'{"id": "t3", "text": 7}',
        b'{"id": "t4", "text": "   "}',
        b'{"id": "t5", "text": "caf\xe9 latin-1 byte"}',
        b'{"id": "t6", "text": "nul\\u0000inside"}',
        b'{"text": "no id at all"}',
        _doc(0),  # duplicate of good.jsonl line 1: quarantined (good.jsonl sorts first? no: bad < good)
    ]) + b"\n")
    (root / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + _doc(200) + b"\n")
    (root / "empty.jsonl").write_bytes(b"")
    whole = gzip.compress(b"\n".join(_doc(300 + i) for i in range(500)) + b"\n")
    (root / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (root / "ok.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_doc(900) + b"\n" + _doc(901) + b"\n"))
    return root


def test_every_line_is_accounted_for(spark, messy_dir, tmp_path):
    result = run_pipeline({"name": "messy", "input": str(messy_dir), "output": str(tmp_path / "out"),
                           "stages": [{"sample": {"fraction": 1.0}}]}, spark=spark, log=lambda m: None)
    read = result.stats["00-read"]
    q = read["quarantine_reasons"]
    assert read["rows_in"] == read["rows_out"] + read["quarantined"]
    assert q == {"duplicate_id": 1, "empty_text": 1, "invalid_json": 1 + q.get("invalid_json", 0) - 1,
                 "missing_text": 1, "not_an_object": 1, "null_text": 1, "text_not_string": 1} | (
        {"invalid_json": q["invalid_json"]})
    assert 1 <= q["invalid_json"] <= 2  # the broken line, plus the cut-off last line of the .gz if partial
    assert read["repairs"] == {"bom_stripped": 1, "invalid_utf8_replaced": 1, "nul_removed": 1}
    problems = {p["file"]: p["reason"] for p in read["file_problems"]}
    assert problems["empty.jsonl"] == "empty_file"
    assert problems["cut.jsonl.gz"].startswith("truncated_file")
    ids = {r.id for r in read_stage(spark, result.output_dir / "00-read").select("id").collect()}
    assert "bad.jsonl:10" in ids  # generated from path and line
    assert {"doc-200", "doc-900", "doc-901", "t5", "t6", "doc-300"} <= ids
    # duplicate id: the first by (file, line) wins -> bad.jsonl line 11 beats good.jsonl line 1
    dup = [json.loads(line) for f in sorted((result.output_dir / "_quarantine" / "data").iterdir())
           for line in f.read_text().splitlines() if "duplicate_id" in line]
    assert [(d["file"], d["line"]) for d in dup] == [("good.jsonl", 1)]


def test_carried_columns_survive_every_stage(spark, messy_dir, tmp_path):
    result = run_pipeline({"name": "carry", "input": str(messy_dir / "good.jsonl"), "output": str(tmp_path / "o"),
                           "stages": ["exact_dedup", {"sample": {"fraction": 1.0}}]},
                          spark=spark, log=lambda m: None)
    final = read_stage(spark, result.final_dir)
    assert {"id", "text", "source", "meta"} <= set(final.columns)
    row = final.filter("id = 'doc-003'").first()
    assert (row.source, row.meta.n) == ("good", 3)


def test_parquet_input_missing_ids_and_bad_text(spark, tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    table = pa.table({"text": ["alpha beta", None, "  ", "gamma"], "source": ["a", "b", "c", "d"]})
    pq.write_table(table, root / "part.parquet")
    (root / "zero.parquet").write_bytes(b"")
    (root / "junk.parquet").write_bytes(b"this is not parquet at all")
    res = read_documents(spark, InputSpec(str(root)))
    docs = sorted((r.id, r.text) for r in res.docs.select("id", "text").collect())
    assert docs == [("part.parquet:1", "alpha beta"), ("part.parquet:4", "gamma")]
    reasons = sorted((r.file, r.reason.split(":")[0]) for r in res.quarantine.collect())
    assert reasons == [("junk.parquet", "corrupt_file"), ("part.parquet", "empty_text"),
                       ("part.parquet", "null_text"), ("zero.parquet", "empty_file")]


def test_glob_and_directory_listing_is_sorted_and_relative(messy_dir):
    root, files = list_input_files(str(messy_dir / "*.jsonl"))
    assert root == str(messy_dir.resolve())
    assert files == sorted(files) and "good.jsonl" in files and "cut.jsonl.gz" not in files


@pytest.mark.slow
def test_single_100mb_document_is_read_and_written(spark, tmp_path):
    text = ("All work and no play makes Jack a dull boy. " * 2_400_000)[: 100 * 1024 * 1024]
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"id": "big", "text": text}) + "\n" + json.dumps({"id": "small", "text": "hi"}) + "\n")
    result = run_pipeline({"name": "big", "input": str(path), "output": str(tmp_path / "out"),
                           "stages": [{"head": {"n": 10}}]}, spark=spark, log=lambda m: None)
    assert result.stats["00-read"]["rows_out"] == 2
    assert result.stats["00-read"]["chars_out"] == len(text) + 2


def test_jsonl_output_keeps_fields_and_is_sorted_by_id(spark, messy_dir, tmp_path):
    result = run_pipeline({"name": "j", "input": str(messy_dir / "good.jsonl"),
                           "output": {"path": str(tmp_path / "o"), "format": "jsonl", "rows_per_shard": 8},
                           "stages": ["exact_dedup"]}, spark=spark, log=lambda m: None)
    shards = sorted((result.final_dir / "data").glob("part-*.jsonl"))
    assert len(shards) == 3  # 20 rows, 8 per shard
    rows = [json.loads(line) for f in shards for line in f.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"doc-{i:03d}" for i in range(20)]
    for f in shards:
        ids = [json.loads(line)["id"] for line in f.read_text().splitlines()]
        assert ids == sorted(ids)
    assert rows[0].keys() == {"id", "text", "meta", "source"} and isinstance(rows[0]["meta"], dict)


def _random_value(rng, depth: int = 0):
    """A JSON value of every kind Spark's inference tells apart (empty strings, big integers…)."""
    kinds = ["str", "empty", "int", "big", "huge", "float", "bool", "null"]
    kinds += ["list", "dict"] * 2 if depth < 3 else []
    kind = rng.choice(kinds)
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "dict":
        return {rng.choice("abcde"): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {"str": "word", "empty": "", "int": rng.randrange(-5, 5), "big": 10 ** rng.randrange(19, 30),
            "huge": -(10 ** 45), "float": rng.choice([0.5, 1e300, float("nan")]), "bool": True, "null": None}[kind]


def test_shapes_infer_the_schema_spark_infers_from_all_values(spark):
    """spark.read.json over the distinct shapes == over every value: 300 random groups of values,
    each under its own top-level key (fields are inferred independently), in two Spark jobs."""
    import random

    from curate.io.jsonl import shape

    rng = random.Random(5)
    records = [{f"g{g:03d}": _random_value(rng)} for g in range(300) for _ in range(rng.randrange(1, 6))]
    everything = spark.read.json(spark.createDataFrame([(json.dumps(r),) for r in records], "value string")).schema
    shapes = sorted({shape(r) for r in records})
    assert len(shapes) < len(records)
    assert spark.read.json(spark.createDataFrame([(s,) for s in shapes], "value string")).schema == everything


def _variant(rng, value, noise: float = 0.01):
    """``value`` with the same structure and other values: strings emptied or changed, integers
    changed (some beyond 64 bits, of varying digits), floats made integers, arrays emptied or
    cut; now and then (``noise``) a key dropped or added, or a value of another kind put in its place."""
    if rng.random() < noise:
        return rng.choice([None, "odd", "", 7, 0.5, 10 ** rng.randrange(19, 30), [], {"q": 1}])
    if isinstance(value, dict):
        out = {k: _variant(rng, v, noise) for k, v in value.items() if rng.random() > noise}
        return {**out, "extra": 1} if rng.random() < noise else out
    if isinstance(value, list):
        items = [_variant(rng, v, noise) for v in value]
        return [] if rng.random() < 0.2 else items[: rng.randrange(len(items) + 1)]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return rng.choice(["", "x", value])
    if isinstance(value, int):
        return rng.choice([rng.randrange(-9, 9), 10 ** rng.randrange(19, 30), value])
    return rng.choice([1, 10 ** 21, 2.5, value]) if value == value else value  # a float (NaN stays)


# Values of one field in this order, each sequence under its own key: where a line the check
# accepts must (or must not) be one that leaves Spark's merged type as it is.
_KIND_SEQUENCES = [
    ["", "x", 5],  # "" alone merges with 5 as a long; with "x" as a string
    [5, 10 ** 21, 10 ** 25],  # each longer big integer widens the decimal
    [1.5, 3, 10 ** 30],  # under a double: nothing changes
    [[], [1], ["x"]],
    [{"x": 1}, {}, {"x": 1, "y": "s"}, {"x": 2.5}],
    [None, True, None],
    [5, 2.5, 7],
    [1, None, {"z": 1}],
    ["s", [1]],
    [[{"a": 1}], [{"a": 1}, {"b": ""}], [{"b": 2}]],
    [{'q"uote': 1, "back\\slash": "x", "\x01": None}, {'q"uote': 2.5}, {"": "e"}],  # keys no field name can hold
]


def test_shape_set_infers_the_schema_of_every_value(spark):
    """A unit reports only the shapes its covering check could not rule redundant. Spark infers
    from those the schema it infers from every carried-field dict: for sequences of kinds where
    the check must see a change, then for 3,000 dicts made from 40 templates with varied values.
    The check spares most of the shape computations."""
    import random

    from curate.io.jsonl import ShapeSet, shape

    rng = random.Random(11)
    templates = [{f"k{k}": _random_value(rng) for k in range(4)} for _ in range(40)]
    varied = [{k: _variant(rng, v) for k, v in rng.choice(templates).items()} for _ in range(3000)]
    sequences = [{f"s{i}": value} for i, values in enumerate(_KIND_SEQUENCES) for value in values]
    odd_keys = [{'k"1': 1, "k2": {"\\": "x"}}, {'k"1': 2, "k2": {"\\": 0.5}}, {"k2": None}]
    for records in (sequences, odd_keys, varied):
        shapes = ShapeSet()
        for record in records:
            shapes.add(record)
        everything = spark.read.json(spark.createDataFrame([(json.dumps(r),) for r in records], "value string"))
        reported = spark.read.json(spark.createDataFrame([(s,) for s in sorted(shapes.shapes)], "value string"))
        assert reported.schema == everything.schema
    assert len(shapes) < len({shape(r) for r in varied}) / 2
