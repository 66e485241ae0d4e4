"""semantic_dedup (SemDeDup) on real Reuters text with planted reordered copies: the Spark stage
agrees with an exact all-pairs plain Python reference, whatever the partitioning."""
from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

from curate.core import REJECT_REASON, CurateError, get_stage
from curate.dedup.semantic_dedup import greedy_duplicates, semantic_dedup

THRESHOLD = 0.9
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _sentences(text: str) -> list[str]:
    return [s for s in SENTENCE.split(" ".join(text.split())) if len(s) > 20]


@pytest.fixture(scope="module")
def corpus(shared_data):
    """120 real articles (first 3 sentences) + 12 planted copies with the sentences reversed
    or rotated, embedded once with the bundled all-MiniLM-L6-v2 (the ``embed`` stage's model)."""
    from curate.targeted.embedding import embed_texts

    docs = []
    with gzip.open(shared_data / "corpora" / "reuters21578.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            sentences = _sentences(doc["text"])
            if len(sentences) >= 3:
                docs.append((doc["id"], sentences[:3]))
            if len(docs) == 120:
                break
    rows = [(i, " ".join(s)) for i, s in docs]
    planted = {}
    for n, (i, s) in enumerate(docs[::10]):
        copy = f"{i}-copy"
        planted[copy] = i
        rows.append((copy, " ".join(s[::-1] if n % 2 else s[1:] + s[:1])))
    vectors = embed_texts([t for _, t in rows], batch_size=32)
    return {"rows": rows, "vectors": vectors, "planted": planted}


def _frame(spark, corpus, rows=None, partitions: int = 2):
    rows = rows or corpus["rows"]
    index = {i: k for k, (i, _) in enumerate(corpus["rows"])}
    data = [(i, t, corpus["vectors"][index[i]].tolist(), float(i.endswith("-copy"))) for i, t in rows]
    df = spark.createDataFrame(data, "id string, text string, embedding array<float>, q double")
    df = df.selectExpr("id", "text", "embedding", "named_struct('prob', q) AS quality")
    return df.repartition(partitions, "id")


def _reference(ids, vectors, scores, threshold):
    """Exact all-pairs cosine (float64) and the greedy rule, written plainly: walk documents
    best first; a document is removed when a kept one is ≥ threshold similar (the most similar)."""
    x = np.asarray(vectors, np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    pairs = {(a, b) for a in range(len(ids)) for b in range(a + 1, len(ids)) if sim[a, b] >= threshold}
    ranked = sorted(range(len(ids)), key=lambda k: (-scores[k], ids[k]))
    kept, removed = [], {}
    for k in ranked:
        matches = [(sim[k, s], -pos) for pos, s in enumerate(kept) if sim[k, s] >= threshold]
        if matches:
            best_sim, neg_pos = max(matches)
            removed[ids[k]] = (ids[kept[-neg_pos]], best_sim)
        else:
            kept.append(k)
    return {(ids[a], ids[b]) for a, b in pairs}, removed


def _run(df, stage_ctx, tmp_path, name, **params):
    ctx = stage_ctx(tmp_path / name, seed=7)
    return semantic_dedup(df, ctx, **get_stage("semantic_dedup").validate(params)), ctx


def _removed(out) -> dict:
    rows = out.rejected.select("id", "duplicate_of", "similarity", REJECT_REASON).collect()
    assert {r[REJECT_REASON] for r in rows} <= {"semantic_duplicate"}
    return {r.id: (r.duplicate_of, r.similarity) for r in rows}


def test_one_cluster_matches_exact_all_pairs_and_dedup_twice_changes_nothing(spark, corpus, stage_ctx, tmp_path):
    ids = [i for i, _ in corpus["rows"]]
    pairs, expected = _reference(ids, corpus["vectors"], [0.0] * len(ids), THRESHOLD)
    assert {frozenset(p) for p in corpus["planted"].items()} <= {frozenset(p) for p in pairs}

    out, ctx = _run(_frame(spark, corpus), stage_ctx, tmp_path, "a", threshold=THRESHOLD)
    got = _removed(out)
    assert got.keys() == expected.keys()  # recall 1.0 (and precision 1.0) against exact all-pairs
    for doc, (survivor, sim) in got.items():
        assert survivor == expected[doc][0] and sim == pytest.approx(expected[doc][1], abs=1e-6)
    assert out.stats["similar_pairs"] == len(pairs) and out.stats["duplicates"] == len(expected)
    assert out.stats["clusters"] == 1 and out.stats["largest_cluster"] == len(ids)
    assert set(corpus["planted"]) <= got.keys()  # every planted copy goes (its original has the smaller id)
    kept = {r.id for r in out.kept.select("id").collect()}
    assert kept.isdisjoint(got) and len(kept) + len(got) == len(ids)
    assert set(out.kept.columns) == {"id", "text", "embedding", "quality"}

    again, _ = _run(out.kept, stage_ctx, tmp_path, "again", threshold=THRESHOLD)
    assert again.stats["duplicates"] == 0  # no two survivors are that similar: dedup twice changes nothing


def test_clusters_with_score_agree_with_reference_per_cluster_on_any_partitioning(spark, corpus, stage_ctx,
                                                                                  tmp_path):
    params = {"threshold": THRESHOLD, "score": "quality.prob", "clusters": 3}
    a, ctx = _run(_frame(spark, corpus, partitions=1), stage_ctx, tmp_path, "p1", **params)
    b, _ = _run(_frame(spark, corpus, partitions=4), stage_ctx, tmp_path, "p4", **params)
    got = _removed(a)
    assert got == _removed(b) and a.stats == b.stats  # same rows and numbers on 1 and 4 partitions
    assert a.stats["nonempty_clusters"] == 3 and a.stats["largest_cluster"] < len(corpus["rows"])

    # Plain Python per cluster (the k-means assignment read from the artifact) gives the same result.
    cluster = {r.id: r.cluster for r in spark.read.parquet(str(ctx.artifact("semantic_clusters"))).collect()}
    index = {i: k for k, (i, _) in enumerate(corpus["rows"])}
    expected, all_pairs = {}, 0
    for c in set(cluster.values()):
        ids = sorted(i for i in cluster if cluster[i] == c)
        pairs, removed = _reference(ids, corpus["vectors"][[index[i] for i in ids]],
                                    [float(i.endswith("-copy")) for i in ids], THRESHOLD)
        expected.update(removed)
        all_pairs += len(pairs)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in expected.items()}
    assert a.stats["similar_pairs"] == all_pairs
    for copy, original in corpus["planted"].items():
        if cluster[copy] == cluster[original]:
            assert got[original][0] == copy  # the copies score 1.0: their originals are the ones removed


def test_embeddings_computed_with_the_embed_model_when_absent(spark, corpus, stage_ctx, tmp_path):
    copies = [r for r in corpus["rows"] if r[0].endswith("-copy")][:2]
    rows = corpus["rows"][:12] + copies
    df = spark.createDataFrame(rows, "id string, text string")
    out, ctx = _run(df, stage_ctx, tmp_path, "e", threshold=THRESHOLD)
    ids = [i for i, _ in rows]
    index = {i: k for k, (i, _) in enumerate(corpus["rows"])}
    _, expected = _reference(ids, corpus["vectors"][[index[i] for i in ids]], [0.0] * len(ids), THRESHOLD)
    assert {k: v[0] for k, v in _removed(out).items()} == {k: v[0] for k, v in expected.items()}
    assert {i for i, _ in copies} <= expected.keys() and set(out.kept.columns) == {"id", "text"}
    assert spark.read.parquet(str(ctx.artifact("embeddings"))).count() == len(rows)


def test_greedy_rule_removes_no_transitive_chain():
    # a~b and b~c are similar, a~c is not: b goes (duplicate of a), c stays (its only match b is gone).
    dup, sim = greedy_duplicates(3, np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.93]))
    assert dup.tolist() == [-1, 0, -1] and sim[1] == 0.95 and np.isnan(sim[2])
    # two kept candidates: the most similar wins, ties go to the better ranked.
    dup, _ = greedy_duplicates(3, np.array([0, 1]), np.array([2, 2]), np.array([0.91, 0.97]))
    assert dup.tolist() == [-1, -1, 1]
    dup, _ = greedy_duplicates(3, np.array([1, 0]), np.array([2, 2]), np.array([0.97, 0.97]))
    assert dup.tolist() == [-1, -1, 0]


def test_bad_input_fails_clearly(spark, corpus, stage_ctx, tmp_path):
    df = _frame(spark, corpus, rows=corpus["rows"][:5])
    with pytest.raises(CurateError, match="threshold must be in"):
        _run(df, stage_ctx, tmp_path, "t", threshold=0)
    with pytest.raises(CurateError, match="score column 'nope' not found"):
        _run(df, stage_ctx, tmp_path, "n", score="nope")
    holes = df.selectExpr("id", "text", f"IF(id = '{corpus['rows'][0][0]}', NULL, embedding) AS embedding")
    with pytest.raises(CurateError, match="1 document\\(s\\) have no 'embedding'"):
        _run(holes, stage_ctx, tmp_path, "h")
