"""Artifact tables (``ctx.artifact_table``) are committed like data shards: the stage manifest
lists each shard with its sha256 and rows, readers read only the listed shards and refuse a
changed one. Locally and on a real S3-API server (moto)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import s3server
from helpers import read_jsonl, tamper

from curate.core import CurateError
from curate.dedup.minhash_dedup import INDEX_NAME, SketchParams, dedup_against, write_index
from curate.engine.manifest import stage_attempt
from curate.engine.steps import _table_writer
from curate.io import fs
from curate.io.shards import artifact_entry, load_manifest, read_artifact_table, shard_uris

SCHEMA = "id string, text string"


@pytest.fixture(scope="module")
def docs(shared_data) -> list[tuple[str, str]]:
    """40 real paragraphs and near-copies of the first 10 (one word changed)."""
    rows = [(f"w{i:03d}", r["text"][:1500]) for i, r in enumerate(
        read_jsonl(shared_data / "corpora" / "wikitext2.jsonl", limit=200)) if len(r["text"].split()) > 40][:40]
    return rows + [(f"c{i:03d}", text.replace(" the ", " a ", 1)) for i, (_, text) in enumerate(rows[:10])]


@contextmanager
def _tasks_reach_s3(spark):
    """The AWS_* variables of the test's S3 server in the Spark tasks too (spark.executorEnv)."""
    env = spark.sparkContext.environment
    saved = dict(env)
    env.update(s3server.aws_env(os.environ["AWS_ENDPOINT_URL"]))
    try:
        yield
    finally:
        env.clear()
        env.update(saved)


def _commit_table(spark, docs, target: str) -> dict:
    """A stage attempt that writes one artifact table (7 rows per shard: several shards) through
    the writer ``ctx.artifact_table`` uses, then commits."""
    df = spark.createDataFrame(docs, SCHEMA)
    with stage_attempt(target) as work:
        _table_writer(spark, work, 7)("docs_copy", df)
        work.commit({"outputs": {"data": work.entry([], df.schema, "parquet")},
                     "artifacts": {"docs_copy": "artifacts/docs_copy"}})
    return load_manifest(target)


@pytest.fixture(scope="module", params=["local", "s3"])
def committed(request, spark, docs, tmp_path_factory):
    """``(target, manifest)`` of a committed stage holding the artifact table ``docs_copy``."""
    if request.param == "local":
        target = str(tmp_path_factory.mktemp("artifacts") / "out" / "01-stage")
        yield target, _commit_table(spark, docs, target)
        return
    s3server.start()
    target = f"s3://{s3server.BUCKET}/artifacts-{uuid.uuid4().hex[:12]}/01-stage"
    with _tasks_reach_s3(spark):
        yield target, _commit_table(spark, docs, target)


def _sha256(uri: str) -> str:
    return hashlib.sha256(fs.read_bytes(uri)).hexdigest()


def test_every_artifact_shard_is_listed_with_its_sha256_and_rows(committed):
    target, manifest = committed
    entry = manifest["artifact_tables"]["docs_copy"]
    assert manifest["artifacts"]["docs_copy"] == "artifacts/docs_copy"
    assert entry["format"] == "parquet" and len(entry["shards"]) == 8  # 50 rows, 7 per shard
    assert entry["rows"] == sum(s["rows"] for s in entry["shards"]) == 50
    assert all(s["file"].startswith("artifacts/docs_copy/part-") for s in entry["shards"])
    uris = shard_uris(target, entry)
    assert [_sha256(u) for u in uris] == [s["sha256"] for s in entry["shards"]]
    assert {fs.name(u) for u in uris} == {n for n in fs.listdir(fs.parent(uris[0])) if n.startswith("part-")}
    if fs.is_remote(target):  # under the committed attempt prefix, like the data shards
        assert entry["root"] == manifest["outputs"]["data"]["root"] and entry["root"].startswith("_attempts/")
        assert fs.listdir(fs.join(target, "_attempts")) == [entry["root"].split("/")[1]]


def test_readers_read_only_the_listed_shards(committed, spark, docs):
    target, manifest = committed
    entry = manifest["artifact_tables"]["docs_copy"]
    assert artifact_entry(target, "docs_copy") == entry and artifact_entry(target, "nothing") is None
    first = shard_uris(target, entry)[0]
    stray = fs.join(fs.parent(first), "part-99999.parquet")
    fs.write_bytes(stray, fs.read_bytes(first))  # a leftover no manifest lists
    try:
        rows = read_artifact_table(spark, target, "docs_copy").collect()
    finally:
        fs.remove(stray)
    assert sorted((r["id"], r["text"]) for r in rows) == sorted(docs)
    with pytest.raises(CurateError, match="no artifact table 'nothing' is listed in its _manifest.json"):
        read_artifact_table(spark, target, "nothing")


def test_a_tampered_artifact_shard_is_refused(committed, spark, tmp_path):
    target, manifest = committed
    entry = manifest["artifact_tables"]["docs_copy"]
    victim = shard_uris(target, entry)[1]
    original = fs.read_bytes(victim)
    local = tmp_path / "victim.parquet"
    local.write_bytes(original)
    tamper(local)
    fs.write_bytes(victim, local.read_bytes())
    try:
        listed = entry["shards"][1]["sha256"][:16]
        with pytest.raises(CurateError, match=(rf"^{re.escape(victim)}: sha256 \w+… differs from {listed}… listed "
                                               r"in .*_manifest.json; the shard changed after")):
            read_artifact_table(spark, target, "docs_copy")
    finally:
        fs.write_bytes(victim, original)
    assert read_artifact_table(spark, target, "docs_copy").count() == 50


@pytest.mark.slow
def test_dedup_against_a_committed_stage_reads_its_listed_verified_index(spark, stage_ctx, docs, tmp_path):
    """A MinHash index saved as minhash_dedup(save_index) does, committed as StageStep does, is
    what dedup_against reads: the listed shards, verified."""
    target = str(tmp_path / "out" / "01-minhash_dedup")
    with stage_attempt(target) as work:
        ctx = stage_ctx(work.scratch, table_writer=_table_writer(spark, work, 8))
        write_index(ctx, spark.createDataFrame(docs[:20], SCHEMA), SketchParams())
        work.commit({"outputs": {"data": work.entry([], spark.createDataFrame([], SCHEMA).schema, "parquet")},
                     "artifacts": dict(sorted(ctx.artifacts.items()))})
    entry = load_manifest(target)["artifact_tables"][INDEX_NAME]
    assert entry["rows"] == 20 and len(entry["shards"]) == 3
    new = spark.createDataFrame(docs[5:25], SCHEMA)  # w005..w019 are in the index, w020..w024 not
    removed = dedup_against(new, stage_ctx(), reference=target).rejected.select("id").collect()
    assert sorted(r["id"] for r in removed) == [f"w{i:03d}" for i in range(5, 20)]
    victim = Path(shard_uris(target, entry)[0])
    shutil.copyfile(victim, tmp_path / "backup")
    tamper(victim)
    with pytest.raises(CurateError, match="the shard changed after its stage was committed"):
        dedup_against(new, stage_ctx(), reference=target)
