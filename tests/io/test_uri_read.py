"""Input through URIs: listing, fingerprints and the Spark task functions over a real S3-API
server (moto on 127.0.0.1), plus one-line errors for stores that cannot be used.

The task functions (``_parse_partitions``, which spills its rows, ``_row_group_batches``) are called here in the test
process, as a Spark task would call them: executors read the AWS_* variables of their own
environment, which a local[2] session started before this module cannot pick up; the whole
pipeline from ``s3://`` on a real cluster is tests/cluster's.
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core import CurateError
from curate.io import fs
from curate.io.jsonl import ParseOptions, count_newlines
from curate.io.read import (
    InputSpec,
    _parquet_footers,
    _parquet_output_schema,
    _parquet_schema,
    _parse_partitions,
    _row_group_batches,
    file_infos,
    fingerprint_files,
    jsonl_units,
    list_input_files,
    number_units,
    parquet_units,
    spill_name,
)

s3server = pytest.importorskip("s3server")
pytest.importorskip("s3fs")
pytest.importorskip("moto")


def doc(i: int) -> bytes:
    return json.dumps({"id": f"d{i}", "text": f"document {i} " + "word " * (i % 9), "n": i}).encode()


JSONL = b"\n".join([doc(i) for i in range(40)] + [b"{bad", b""] + [json.dumps({"text": "no id"}).encode()]) + b"\n"


@pytest.fixture(scope="module")
def bucket() -> str:
    s3server.start()
    return f"s3://{s3server.BUCKET}"


@pytest.fixture(scope="module")
def s3_input(bucket, tmp_path_factory) -> tuple[str, str]:
    """The same tree locally and under ``s3://curate-test/uri-read/``: (local root, s3 root)."""
    local = tmp_path_factory.mktemp("uri")
    files = {"a.jsonl": JSONL, "sub/b.jsonl": doc(100) + b"\n", "_hidden.jsonl": doc(7) + b"\n",
             ".dot.jsonl": doc(8) + b"\n", "notes.txt": b"not input"}
    table = pa.table({"text": ["alpha", None, " ", "de\x00lta"] * 5, "k": list(range(20))})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=3)
    files["pq/t.parquet"] = sink.getvalue().to_pybytes()
    remote = f"{bucket}/uri-read"
    for rel, data in files.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
        fs.write_bytes(f"{remote}/{rel}", data)
    return str(local), remote


def test_listing_a_prefix_and_a_glob(s3_input):
    local, remote = s3_input
    root, files = list_input_files(remote + "/")
    assert root == remote and files == ["a.jsonl", "pq/t.parquet", "sub/b.jsonl"]
    assert (root, files) == (remote, list_input_files(local)[1]) and list_input_files(local)[0] == local
    assert list_input_files(f"{remote}/*.jsonl") == (remote, ["_hidden.jsonl", "a.jsonl"])
    assert list_input_files(f"{remote}/a.jsonl") == (remote, ["a.jsonl"])
    assert list_input_files(f"file://{local}/sub") == (f"{local}/sub", ["b.jsonl"])


def test_fingerprint_follows_object_changes(s3_input):
    _, remote = s3_input
    before = fingerprint_files(remote, ["a.jsonl"])
    assert fingerprint_files(remote, ["a.jsonl"]) == before
    fs.write_bytes(f"{remote}/a.jsonl", JSONL + doc(41) + b"\n")
    try:
        assert fingerprint_files(remote, ["a.jsonl"]) != before
    finally:
        fs.write_bytes(f"{remote}/a.jsonl", JSONL)


def run_task(fn, count: int) -> list[dict]:
    """Run a mapInArrow function over unit indices 0..count-1 in one partition, as a task would."""
    batches = fn(iter([pa.RecordBatch.from_pydict({"id": list(range(count))})]))
    return [row for batch in batches for row in batch.to_pylist()]


def parsed_rows(root: str, rel: str, split_size: int, spill: str) -> list[dict]:
    """The rows the parse tasks spill under ``spill`` (a path or URI), without their unit index."""
    files = [rel]
    units = jsonl_units(files, file_infos(root, files), split_size)
    counts = {i: count_newlines(fs.join(root, u[0]), u[1], u[2]) for i, u in enumerate(units)}
    reports = run_task(_parse_partitions(root, number_units(units, counts), ParseOptions(), spill), len(units))
    assert [r["unit"] for r in reports] == list(range(len(units)))
    rows = []
    for i in range(len(units)):
        with fs.open_file(fs.join(spill, spill_name(i)), "rb") as fh:
            rows += [{k: v for k, v in r.items() if k != "unit"} for r in pq.read_table(fh).to_pylist()]
    return rows


def test_split_jsonl_tasks_read_and_spill_on_s3_like_local_files(s3_input, bucket, tmp_path):
    local, remote = s3_input
    whole_local = parsed_rows(local, "a.jsonl", 1 << 30, str(tmp_path / "whole"))
    assert len(whole_local) == 43 and whole_local[-1]["id"] == "a.jsonl:43"
    assert parsed_rows(remote, "a.jsonl", 1024, f"{bucket}/spill/split") == whole_local
    assert parsed_rows(remote, "a.jsonl", 1 << 30, f"{bucket}/spill/whole") == whole_local


def parquet_rows(root: str, split_size: int) -> list[dict]:
    spec = InputSpec(root, split_size=split_size)
    files = ["pq/t.parquet"]
    readable, bad = _parquet_footers(root, files, file_infos(root, files))
    assert bad == []
    schema = _parquet_schema(readable, spec)
    units = parquet_units(readable, spec.split_size)
    return run_task(_row_group_batches(root, units, schema, spec, _parquet_output_schema(schema, spec), "fp"),
                    len(units))


def test_parquet_row_group_tasks_read_s3_like_local_files(s3_input):
    local, remote = s3_input
    rows = parquet_rows(local, 1 << 30)
    key = lambda r: r["_line"]  # noqa: E731
    assert sorted(parquet_rows(remote, 1024), key=key) == sorted(rows, key=key)
    docs = sorted((r["_line"], r["id"], r["text"], r["repairs"]) for r in rows if r["_kind"] is None)
    assert docs[:2] == [(1, "pq/t.parquet:1", "alpha", None), (4, "pq/t.parquet:4", "delta", "nul_removed")]
    reasons = sorted((r["_line"], r["_reason"]) for r in rows if r["_kind"] == "record")
    assert reasons[:2] == [(2, "null_text"), (3, "empty_text")] and len(reasons) == 10


def test_missing_bucket_is_one_line_naming_the_uri(bucket):
    with pytest.raises(CurateError, match=r"s3://no-such-bucket-e/x: bucket 'no-such-bucket-e' does not exist"):
        list_input_files("s3://no-such-bucket-e/x")


def test_missing_prefix_is_one_line_naming_the_uri(bucket):
    with pytest.raises(CurateError, match=f"input not found: {bucket}/nothing-here"):
        list_input_files(f"{bucket}/nothing-here")


def test_scheme_without_a_filesystem_names_the_extra():
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    with pytest.raises(CurateError, match=r"gs://b/x: no filesystem for 'gs://'.*install curate\[gcs\]"):
        list_input_files("gs://b/x")


def test_unknown_scheme_is_one_line():
    with pytest.raises(CurateError, match="nosuch://b/x"):
        list_input_files("nosuch://b/x")


def test_local_file_uri_and_missing_local_path(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(doc(1) + b"\n")
    assert list_input_files(f"file://{tmp_path}/a.jsonl") == (str(tmp_path), ["a.jsonl"])
    with pytest.raises(CurateError, match="input not found"):
        list_input_files(tmp_path / "missing")
