"""minhash_dedup / dedup_against on real text with edited near-copies, against an oracle."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import REPO
from pyspark.sql import functions as F

from curate.core import CurateError, get_stage
from curate.dedup import minhash as mh
from curate.dedup.minhash_dedup import dedup_against, minhash_dedup

_spec = importlib.util.spec_from_file_location("dedup_corpus", REPO / "bench" / "dedup_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)
SCHEMA = "id string, text string, q double"


@pytest.fixture(scope="module")
def docs(shared_data):
    """~400 real documents + ~320 near-copies (1-5 % word edits, some boilerplate).

    Edits of 1-5 % put the copies' 5-shingle Jaccard on both sides of 0.8 (about a third
    above), where LSH recall and verification matter; the benchmark uses 1-20 %.
    """
    rows = corpus.build(shared_data, n_sources=400, copy_fraction=0.8, max_rate=0.05, seed=11)
    return [{**d, "q": float(len(d["text"]) % 97)} for d in rows]


@pytest.fixture(scope="module")
def result(spark, stage_ctx, docs):
    """One minhash_dedup run at the default settings, shared by the tests below."""
    df = spark.createDataFrame(docs, SCHEMA).repartition(3)
    out = minhash_dedup(df, stage_ctx())
    rejected = {r["id"]: (r["duplicate_of"], r["dedup_cluster"], r["reject_reason"])
                for r in out.rejected.collect()}
    kept = {r["id"] for r in out.kept.select("id").collect()}
    return out, kept, rejected


def shingle_sets(docs):
    sh = mh.shingle([d["text"] for d in docs])
    hashes = mh.hash_shingles(sh).tolist()
    bounds = sh.doc_start.tolist() + [len(hashes)]
    return {d["id"]: set(hashes[bounds[i]:bounds[i + 1]]) for i, d in enumerate(docs)}


@pytest.fixture(scope="module")
def truth(docs):
    """Every pair with exact Jaccard >= 0.8, and its union-find components (the oracle)."""
    pairs = corpus.exact_pairs(shingle_sets(docs), 0.8)
    uf = corpus.UnionFind()
    for a, b, _ in pairs:
        uf.union(a, b)
    return pairs, uf.components()


def test_exact_pairs_oracle_equals_brute_force_all_pairs(docs):
    copies = docs[-60:]
    sources = {c["id"].split("~")[0] for c in copies}
    sample = shingle_sets(copies + [d for d in docs if d["id"] in sources] + docs[:60])
    keys = sorted(sample)
    brute = {(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]
             if corpus.jaccard(sample[a], sample[b]) >= 0.8}
    assert {(a, b) for a, b, _ in corpus.exact_pairs(sample, 0.8)} == brute and brute


def test_components_match_the_oracle(docs, result, truth):
    out, kept, rejected = result
    pairs, oracle = truth
    ours = {i: c for i, (_, c, _) in rejected.items()}
    ours.update({c: c for c in ours.values()})
    # precision: every cluster we form lies inside one oracle component (verification on)
    assert all(i in oracle and oracle[i] == oracle.get(c) for i, c in ours.items())
    # recall: pairs above the threshold that end up in the same cluster
    together = sum(ours.get(a, a) == ours.get(b, b) for a, b, _ in pairs)
    assert len(pairs) > 80 and together / len(pairs) >= 0.95, (together, len(pairs))
    assert kept | set(rejected) == {d["id"] for d in docs} and not kept & set(rejected)
    assert all(reason == "near_duplicate" and dup == cluster for dup, cluster, reason in rejected.values())
    stats = out.stats(out.kept, out.rejected)
    assert stats["removed_docs"] == len(rejected) and stats["verified_pairs"] <= stats["candidate_pairs"]
    assert stats["false_positives_removed"] == stats["candidate_pairs"] - stats["verified_pairs"]
    assert sum(stats["component_sizes"].values()) == stats["components"] == len(set(ours.values()))
    assert stats["docs_in_components"] == len(ours) and (stats["bands"], stats["rows"]) == (16, 8)


def test_reordered_repartitioned_input_with_an_exact_copy_appended_keeps_the_same_ids(
        spark, stage_ctx, docs, result):
    """Row order, partition count and an appended exact copy of the corpus change nothing kept."""
    _, kept, rejected = result
    copies = [{**d, "id": "zz-" + d["id"]} for d in docs]
    df = spark.createDataFrame(list(reversed(docs + copies)), SCHEMA).repartition(7, "text")
    out = minhash_dedup(df, stage_ctx())
    assert {r["id"] for r in out.kept.select("id").collect()} == kept
    assert {r["id"] for r in out.rejected.select("id").collect()} == set(rejected) | {c["id"] for c in copies}


def test_dedup_twice_changes_nothing(stage_ctx, result):
    out, _, _ = result
    assert minhash_dedup(out.kept, stage_ctx()).rejected.isEmpty()


def test_quality_column_picks_the_survivor_ties_by_id(spark, stage_ctx):
    base = "the quick brown fox jumps over the lazy dog near the river bank " * 3
    rows = [("a", base, 1.0), ("b", base + "x", 5.0), ("c", base + "y", 5.0), ("d", "unrelated text here", 0.0)]
    df = spark.createDataFrame(rows, SCHEMA)
    out = minhash_dedup(df, stage_ctx(), quality="q")
    assert sorted(r["id"] for r in out.kept.collect()) == ["b", "d"]
    assert {(r["id"], r["duplicate_of"], r["dedup_cluster"]) for r in out.rejected.collect()} == \
        {("a", "b", "a"), ("c", "b", "a")}


@pytest.mark.slow
def test_giant_cluster_of_ten_thousand_near_identical_documents(spark, stage_ctx):
    """Every band bucket holds all 10,000 documents: stars, not 50 million pairs."""
    base = " ".join(f"w{i}" for i in range(40))
    rows = [(f"d{i:05d}", f"{base} tail{i}", 0.0) for i in range(10_000)]
    df = spark.createDataFrame(rows, SCHEMA).repartition(4)
    out = minhash_dedup(df, stage_ctx())
    assert [r["id"] for r in out.kept.collect()] == ["d00000"]
    summary = out.rejected.agg(F.count("*").alias("n"), F.countDistinct("duplicate_of").alias("survivors"),
                               F.min("duplicate_of").alias("survivor")).first()
    assert tuple(summary) == (9_999, 1, "d00000")


def test_dedup_against_an_index_and_a_corpus(spark, stage_ctx, docs, truth, tmp_path):
    half = len(docs) // 2
    old, new = docs[:half], docs[half:]
    stage_dir = tmp_path / "first"
    minhash_dedup(spark.createDataFrame(old, SCHEMA), stage_ctx(stage_dir), save_index=True)
    index = stage_dir / "artifacts" / "minhash_index"
    spark.createDataFrame(old, SCHEMA).write.parquet(str(tmp_path / "old_corpus"))
    new_df = spark.createDataFrame(new, SCHEMA)
    via_index = dedup_against(new_df, stage_ctx(tmp_path / "x"), reference=str(index))
    via_corpus = dedup_against(new_df, stage_ctx(tmp_path / "y"), reference=str(tmp_path / "old_corpus"))
    removed = {r["id"]: r["duplicate_of"] for r in via_corpus.rejected.collect()}
    old_ids = {d["id"] for d in old}
    expected = {a if a not in old_ids else b for a, b, _ in truth[0] if (a in old_ids) != (b in old_ids)}
    assert len(expected) > 30 and set(removed) <= expected and len(removed) >= 0.95 * len(expected)
    assert all(dup in old_ids for dup in removed.values())
    index_removed = {r["id"] for r in via_index.rejected.collect()}
    # the index holds only what the first run kept, so it can only find fewer
    assert index_removed <= set(removed) and len(index_removed) >= 0.9 * len(removed)
    stats = via_index.stats(via_index.kept, via_index.rejected)
    assert stats["removed_docs"] == len(index_removed) <= stats["verified_pairs"] <= stats["candidate_pairs"]
    with pytest.raises(CurateError, match="num_perm"):
        dedup_against(new_df, stage_ctx(tmp_path / "z"), reference=str(index), num_perm=64)


def test_runner_chains_exact_and_fuzzy_dedup(spark, docs, result, tmp_path):
    """Through curate.engine.runner: exact copies go in exact_dedup, near-copies in minhash_dedup."""
    from curate.engine.runner import run_pipeline
    from curate.io.shards import read_stage

    _, kept, rejected = result
    copies = [{**d, "id": "zz-" + d["id"]} for d in docs[:25]]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs + copies))
    run = run_pipeline({"name": "fuzzy", "input": str(path), "output": str(tmp_path / "out"),
                        "stages": ["exact_dedup", {"minhash_dedup": {"threshold": 0.8}}]},
                       spark=spark, log=lambda m: None)
    exact_dir, fuzzy_dir = run.output_dir / "01-exact_dedup", run.output_dir / "02-minhash_dedup"
    exact_removed = {r["id"] for r in read_stage(spark, exact_dir, "rejected").select("id").collect()}
    assert exact_removed == {c["id"] for c in copies}
    fuzzy = {r["id"]: (r["duplicate_of"], r["dedup_cluster"], r["reject_reason"])
             for r in read_stage(spark, fuzzy_dir, "rejected").collect()}
    assert fuzzy == rejected
    assert {r["id"] for r in read_stage(spark, fuzzy_dir).select("id").collect()} == kept
    stats = run.stats["02-minhash_dedup"]
    assert stats["rejected"] == {"near_duplicate": len(rejected)}
    assert stats.get("stats", stats)["removed_docs"] == len(rejected)


def test_bad_parameters_fail_before_any_work(spark, stage_ctx):
    df = spark.createDataFrame([("a", "x", 0.0)], SCHEMA)
    ctx = stage_ctx()
    with pytest.raises(CurateError, match="both bands and rows"):
        minhash_dedup(df, ctx, bands=4)
    with pytest.raises(CurateError, match="quality column"):
        minhash_dedup(df, ctx, quality="nope.prob")
    with pytest.raises(CurateError, match="threshold"):
        minhash_dedup(df, ctx, threshold=1.2)
    with pytest.raises(CurateError, match="missing"):
        minhash_dedup(df.drop("text"), ctx)
    assert "threshold" in {p.name for p in get_stage("minhash_dedup").params}


CLUSTER_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from curate.engine.spark import get_spark
from curate.core import StageContext
from curate.dedup.minhash_dedup import minhash_dedup
spark = get_spark(sys.argv[2], {"spark.sql.shuffle.partitions": "4"})
rows = json.loads(Path(sys.argv[3]).read_text())
out = minhash_dedup(spark.createDataFrame(rows, "id string, text string, q double"),
                    StageContext(spark, Path(sys.argv[4])))
print(json.dumps(sorted(tuple(r) for r in out.rejected.select("id", "duplicate_of", "dedup_cluster").collect())))
"""


@pytest.mark.slow
@pytest.mark.cluster
def test_local_cluster_gives_the_same_output_as_local(docs, result, tmp_path):
    """Separate executor JVMs (local-cluster, in a subprocess) agree with the local[2] fixture run."""
    _, _, rejected = result
    data = tmp_path / "docs.json"
    data.write_text(json.dumps([[d["id"], d["text"], d["q"]] for d in docs]))
    proc = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, str(REPO), "local-cluster[2,1,1024]", str(data),
                           str(tmp_path / "cluster")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == sorted(
        [i, dup, cluster] for i, (dup, cluster, _) in rejected.items())


@pytest.mark.slow
def test_dedup_against_an_index_and_a_corpus_on_s3(spark, stage_ctx, docs, truth, tmp_path):
    """References under ``s3://`` (moto), read by the tasks: a saved index found through the
    committed ``minhash_dedup`` stage that saved it (its attempt prefix) removes what the local
    index removes; a JSONL corpus removes the oracle's cross pairs, as a local one does above."""
    import os
    import uuid

    s3server = pytest.importorskip("s3server")
    pytest.importorskip("s3fs")
    from curate.engine.manifest import stage_attempt
    from curate.io import fs

    s3server.start()
    half = len(docs) // 2
    old, new = spark.createDataFrame(docs[:half], SCHEMA), spark.createDataFrame(docs[half:], SCHEMA)
    root = f"s3://{s3server.BUCKET}/dedup-against-{uuid.uuid4().hex[:8]}"
    local_stage = tmp_path / "first"
    minhash_dedup(old, stage_ctx(local_stage), save_index=True)
    index = local_stage / "artifacts" / "minhash_index"
    with stage_attempt(f"{root}/02-minhash_dedup") as work:  # a committed stage holding the index, as a run leaves it
        fs.put_tree(index, work.path("artifacts", "minhash_index"))
        entry = {"format": "parquet", "schema": {}, "shards": [], "rows": 0, "root": work.root}
        work.commit({"outputs": {"data": entry}, "artifacts": {"minhash_index": "artifacts/minhash_index"}})
    fs.write_text(f"{root}/corpus/old.jsonl",
                  "".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in docs[:half]))
    env = spark.sparkContext.environment  # the tasks read s3:// with these (spark.executorEnv)
    saved = dict(env)
    env.update(s3server.aws_env(os.environ["AWS_ENDPOINT_URL"]))
    try:
        removed = {}
        for name, ref in [("index-local", str(index)), ("index-s3", f"{root}/02-minhash_dedup"),
                          ("corpus-s3", f"{root}/corpus/")]:
            out = dedup_against(new, stage_ctx(tmp_path / name), reference=ref)
            removed[name] = sorted((r["id"], r["duplicate_of"]) for r in out.rejected.collect())
    finally:
        env.clear()
        env.update(saved)
    assert len(removed["index-local"]) > 30 and removed["index-s3"] == removed["index-local"]
    old_ids = {d["id"] for d in docs[:half]}
    expected = {a if a not in old_ids else b for a, b, _ in truth[0] if (a in old_ids) != (b in old_ids)}
    found = {i for i, _ in removed["corpus-s3"]}
    assert len(expected) > 30 and found <= expected and len(found) >= 0.95 * len(expected)
    assert {i for i, _ in removed["index-s3"]} <= found
    assert fs.listdir(f"{root}/02-minhash_dedup/_attempts") == [work.attempt]
    with pytest.raises(CurateError, match="does not exist"):
        dedup_against(new, stage_ctx(tmp_path / "missing"), reference=f"{root}/nothing-here")


def test_with_jaccard_equals_the_jaccard_of_the_shingle_sets(spark, docs):
    """The verification's Jaccard (union size from the intersection's) equals Python's set
    Jaccard of the same shingle hashes, for near copies, unrelated pairs and an empty set."""
    from curate.dedup.minhash_dedup import SketchParams, shingle_sets, with_jaccard

    rows = [(d["id"], d["text"]) for d in sorted(docs, key=lambda d: d["id"])[:60]]  # sources beside their copies
    sets = shingle_sets(spark.createDataFrame(rows, "id string, text string"), SketchParams()).collect()
    by_id = {**{r["id"]: set(r["shingles"]) for r in sets}, "empty": set()}
    ids = sorted(by_id)
    pairs = [(a, b) for a in ids for b in ids if a < b]
    sets_df = spark.createDataFrame([(i, sorted(s)) for i, s in by_id.items()], "id string, shingles array<bigint>")
    found = {(r["a"], r["b"]): r["jaccard"] for r in with_jaccard(
        spark.createDataFrame(pairs, "a string, b string"), sets_df, sets_df).collect()}
    expected = {(a, b): len(by_id[a] & by_id[b]) / len(by_id[a] | by_id[b]) for a, b in pairs}
    assert found == expected
    assert sum(j >= 0.8 for j in expected.values()) >= 5 and min(expected.values()) == 0.0
