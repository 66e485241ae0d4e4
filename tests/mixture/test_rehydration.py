"""Rehydration (FineWeb2): minhash_dedup keeps each survivor's duplicate-cluster size as a column
(nothing changes when the option is off), and mix repeats documents by a step function of it."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.dedup.minhash_dedup import minhash_dedup
from curate.train.mix import build_mixture, copies_for, parse_spec

SCHEMA = "id string, text string"


@pytest.fixture(scope="module")
def docs(shared_data):
    """Six real articles; the first copied twice (one copy with a changed word), the second once."""
    texts = [r["text"][:1200] for r in read_jsonl(shared_data / "corpora" / "wikitext2.jsonl", limit=20)
             if len(r["text"]) > 1200][:6]
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    rows += [{"id": "d0-copy", "text": texts[0]}, {"id": "d0-edit", "text": texts[0].replace(" the ", " a ", 1)},
             {"id": "d1-copy", "text": texts[1]}]
    return rows


@pytest.fixture(scope="module")
def deduped(spark, stage_ctx, docs):
    df = spark.createDataFrame(docs, SCHEMA)
    on = minhash_dedup(df, stage_ctx(), cluster_size_column="dup_cluster_size")
    off = minhash_dedup(df, stage_ctx())
    return on, off


def test_survivors_carry_their_cluster_size(deduped):
    on, _ = deduped
    sizes = {r["id"]: r["dup_cluster_size"] for r in on.kept.collect()}
    assert sizes == {"d0": 3, "d1": 2, "d2": 1, "d3": 1, "d4": 1, "d5": 1}
    assert sorted(r["id"] for r in on.rejected.collect()) == ["d0-copy", "d0-edit", "d1-copy"]


def test_option_off_leaves_the_outputs_unchanged(deduped, docs):
    on, off = deduped
    assert off.kept.columns == ["id", "text"] and on.kept.columns == ["id", "text", "dup_cluster_size"]
    assert sorted(map(tuple, off.kept.collect())) == sorted(map(tuple, on.kept.drop("dup_cluster_size").collect()))
    assert sorted(map(tuple, off.rejected.collect())) == sorted(map(tuple, on.rejected.collect()))


def test_copies_step_function():
    steps = ((1, 1), (2, 2), (5, 3), (100, 1))
    assert copies_for([None, 1, 2, 4, 5, 99, 100, 5000], steps) == [1, 1, 2, 2, 3, 3, 1, 1]
    assert copies_for([1, 3], ((2, 4),)) == [1, 4]


def test_mix_rehydrates_by_cluster_size(tmp_path):
    table = pa.table({"id": ["a", "b", "c"], "text": ["alpha beta gamma", "delta epsilon", "zeta eta theta iota"],
                      "dup_cluster_size": [1, 3, 7]})
    pq.write_table(table, tmp_path / "web.parquet")
    rehydrated = parse_spec({"sources": {"web": {"path": str(tmp_path / "web.parquet"),
                                                 "rehydrate": {"column": "dup_cluster_size",
                                                               "copies": {1: 1, 2: 2, 5: 4}}}}})
    manifest = build_mixture(rehydrated, tmp_path / "mix")
    ids = pq.read_table(tmp_path / "mix" / "data" / "part-00000.parquet").column("id").to_pylist()
    assert sorted(ids) == ["a", "b", "b", "c", "c", "c", "c"]
    assert manifest["sources"]["web"]["rehydrate"]["extra_copies"] == 4
    plain = build_mixture(parse_spec({"sources": {"web": str(tmp_path / "web.parquet")}}), tmp_path / "plain")
    assert "rehydrate" not in plain["sources"]["web"] and plain["documents"] == 3
    with pytest.raises(CurateError, match="'rehydrate' must be"):
        parse_spec({"sources": {"web": {"path": "x", "rehydrate": {"column": "c", "copies": {0: 1}}}}})
    with pytest.raises(CurateError, match="'rehydrate' column 'nope' not found"):
        build_mixture(parse_spec({"sources": {"web": {"path": str(tmp_path / "web.parquet"),
                                                      "rehydrate": {"column": "nope", "copies": {1: 2}}}}}),
                      tmp_path / "bad")
    assert json.loads((tmp_path / "mix" / "_manifest.json").read_text())["documents"] == 7
