"""select_budget: exact budgets, ties by id, determinism across partitionings, on real text."""
from __future__ import annotations

import json
import math

import pytest

from curate.core import REJECT_REASON, CurateError, get_stage
from curate.quality.select_budget import select_budget
from curate.quality.tokens import count_tokens, count_words


@pytest.fixture(scope="module")
def corpus(spark, shared_data):
    """600 real Reuters articles with a deterministic pseudo-score and a tied score."""
    import gzip
    import zlib

    rows = []
    with gzip.open(shared_data / "corpora" / "reuters21578.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            digest = zlib.crc32(doc["id"].encode())
            rows.append((doc["id"], doc["text"], digest / 2**32, float(digest % 7)))
            if len(rows) == 600:
                break
    df = spark.createDataFrame(rows, "id string, text string, p double, coarse double")
    return df.selectExpr("id", "text", "named_struct('prob', p) AS fasttext_score", "coarse")


def _run(df, stage_ctx, **params):
    return select_budget(df, stage_ctx(), **params)


def _ids(out):
    return sorted(r.id for r in out.kept.select("id").collect())


def test_token_budget_is_exact_and_partition_independent(corpus, stage_ctx):
    rows = corpus.select("id", "text", "fasttext_score.prob").collect()
    total = sum(count_words(r.text) for r in rows)
    budget = total // 5
    results = []
    for parts, buckets in ((1, None), (5, 3)):
        out = _run(corpus.repartition(parts, "id"), stage_ctx, score="fasttext_score.prob",
                   keep_tokens=budget, sort_buckets=buckets)
        results.append((_ids(out), out.stats))
    (ids_a, stats_a), (ids_b, stats_b) = results
    assert ids_a == ids_b and stats_a["tokens_kept"] == stats_b["tokens_kept"]
    assert budget * 0.99 <= stats_a["tokens_kept"] <= budget  # within 1%, never over
    # Reference: greedy prefix in (score desc, id asc) order, computed in plain Python.
    ranked = sorted(rows, key=lambda r: (-r.prob, r.id))
    expected, used = [], 0
    for r in ranked:
        if used + count_words(r.text) > budget:
            break
        used += count_words(r.text)
        expected.append(r.id)
    assert ids_a == sorted(expected) and stats_a["tokens_kept"] == used
    assert stats_a["tokens_in"] == total and stats_a["rows_in"] == len(rows)
    assert stats_a["effective_threshold"] == ranked[len(expected) - 1].prob


def test_top_fraction_breaks_ties_by_id_and_rejects_with_reason(corpus, stage_ctx):
    out = _run(corpus, stage_ctx, score="coarse", top_fraction=0.25, sort_buckets=4)
    rows = corpus.select("id", "coarse").collect()
    k = math.floor(0.25 * len(rows) + 0.5)
    expected = sorted(r.id for r in sorted(rows, key=lambda r: (-r.coarse, r.id))[:k])
    assert _ids(out) == expected and out.stats["rows_out"] == k
    rejected = out.rejected.select(REJECT_REASON).distinct().collect()
    assert [r[0] for r in rejected] == ["budget"] and out.rejected.count() == len(rows) - k
    assert set(out.kept.columns) == set(corpus.columns)


def test_threshold_and_rank_average_and_gumbel(corpus, stage_ctx):
    rows = corpus.select("id", "fasttext_score.prob", "coarse").collect()
    out = _run(corpus, stage_ctx, score="fasttext_score.prob", threshold=0.8)
    assert out.stats["rows_out"] == sum(r.prob >= 0.8 for r in rows)
    assert out.stats["effective_threshold"] == 0.8

    ranked = _run(corpus, stage_ctx, score=["fasttext_score.prob", "coarse"], combine="rank",
                  weights=[1, 3], keep_docs=100, sort_buckets=3)

    def percent_rank(values):  # exact reference: (number of strictly smaller values) / (n - 1)
        ordered = sorted(values)
        return {v: ordered.index(v) / (len(values) - 1) for v in set(values)}

    p_rank, c_rank = percent_rank([r.prob for r in rows]), percent_rank([r.coarse for r in rows])
    combined = sorted(rows, key=lambda r: (-(p_rank[r.prob] + 3 * c_rank[r.coarse]) / 4, r.id))
    assert _ids(ranked) == sorted(r.id for r in combined[:100])

    sampled = [_ids(_run(corpus.repartition(p, "id"), stage_ctx, score="fasttext_score.prob",
                         keep_docs=300, resample="gumbel", temperature=0.2, seed=3)) for p in (1, 4)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 300
    top = {r.id for r in sorted(rows, key=lambda r: (-r.prob, r.id))[:300]}
    assert top != set(sampled[0])  # sampling, not plain top-k
    mean_prob = sum(r.prob for r in rows if r.id in set(sampled[0])) / 300
    assert mean_prob > 0.6  # tilted towards high scores (weights ∝ exp(prob / 0.2))


def test_bad_params_fail_clearly(corpus, stage_ctx):
    with pytest.raises(CurateError, match="exactly one of"):
        _run(corpus, stage_ctx, score="fasttext_score.prob", threshold=0.5, top_fraction=0.1)
    with pytest.raises(CurateError, match="not found"):
        _run(corpus, stage_ctx, score="nope.prob", top_fraction=0.1)
    get_stage("select_budget").validate({"score": "x", "keep_tokens": 10})


def test_tokenizer_file_counts_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from curate.integrity import write_sidecar

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the cat sat on the mat"] * 10, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    write_sidecar(path)  # tokenizers are hash-checked before loading
    assert count_tokens(["the cat, sat"], str(path)) == [4]
    assert count_tokens(["the  cat\nsat", None]) == [3, 0]


# ---------------------------------------------------------------- ensembles and buckets


def _percent_ranks(values):
    """Exact reference: (number of strictly smaller values) / (n - 1); ties share the rank."""
    ordered = sorted(values)
    return {v: ordered.index(v) / (len(values) - 1) for v in set(values)}


def _reference_buckets(rows, key, n):
    """Plain Python Nemotron-CC buckets: floor(n · tokens of strictly smaller keys / all tokens)."""
    tokens = {r.id: count_words(r.text) for r in rows}
    total = sum(tokens.values())
    below_key, running = {}, 0
    for k in sorted({key(r) for r in rows}):
        below_key[k] = running
        running += sum(tokens[r.id] for r in rows if key(r) == k)
    return {r.id: min(n - 1, n * below_key[key(r)] // total) for r in rows}


@pytest.mark.parametrize("combine", ["mean", "max", "rank_max"])  # rank_average: the bucket test
def test_combine_matches_python_reference(corpus, stage_ctx, combine):
    rows = corpus.select("id", "fasttext_score.prob", "coarse").collect()
    out = _run(corpus, stage_ctx, score=["fasttext_score.prob", "coarse"], combine=combine,
               keep_docs=150, sort_buckets=3)
    if combine.startswith("rank"):
        pr, cr = _percent_ranks([r.prob for r in rows]), _percent_ranks([r.coarse for r in rows])
        values = {r.id: (pr[r.prob], cr[r.coarse]) for r in rows}
    else:
        values = {r.id: (r.prob, r.coarse) for r in rows}
    key = {i: (max(v) if combine.endswith("max") else sum(v) / 2) for i, v in values.items()}
    expected = sorted(sorted(key, key=lambda i: (-key[i], i))[:150])
    assert _ids(out) == expected and out.stats["combine"] == combine


def test_token_buckets_match_python_reference_on_any_partitioning(corpus, stage_ctx):
    from pyspark.sql import functions as F

    # 1 in 10 documents unscored: kept out of the buckets, rejected with reason "unscored".
    df = corpus.withColumn("coarse", F.when(F.crc32("id") % 10 == 0, None).otherwise(F.col("coarse")))
    rows = df.select("id", "text", "fasttext_score.prob", "coarse").collect()
    scored = [r for r in rows if r.coarse is not None]
    params = {"score": ["fasttext_score.prob", "coarse"], "combine": "rank_average", "buckets": 20}
    results = []
    for parts, work in ((1, None), (4, 3)):
        out = _run(df.repartition(parts, "id"), stage_ctx, sort_buckets=work, **params)
        results.append(({r.id: r.quality_bucket for r in out.kept.select("id", "quality_bucket").collect()}, out))
    (got, out), (got_4, _) = results
    assert got == got_4  # same buckets on 1 and 4 partitions (and 1 vs 3 work ranges)

    # Each column is ranked among the rows that have it (prob: all 600, coarse: the scored ones).
    pr, cr = _percent_ranks([r.prob for r in rows]), _percent_ranks([r.coarse for r in scored])
    expected = _reference_buckets(scored, lambda r: (pr[r.prob] + cr[r.coarse]) / 2, 20)
    assert got == expected and set(got.values()) == set(range(20))
    rejected = out.rejected.select("id", REJECT_REASON, "quality_bucket").collect()
    assert len(rejected) == len(rows) - len(scored) > 0
    assert {r[REJECT_REASON] for r in rejected} == {"unscored"} and {r.quality_bucket for r in rejected} == {None}

    # Equal token mass: every bucket within one document of total / 20.
    tokens = {r.id: count_words(r.text) for r in scored}
    total, longest = sum(tokens.values()), max(tokens.values())
    per_bucket = [sum(t for i, t in tokens.items() if expected[i] == b) for b in range(20)]
    assert all(abs(t - total / 20) <= longest for t in per_bucket)
    assert out.stats["bucket_tokens"] == [[b, sum(v == b for v in expected.values()), per_bucket[b]] for b in range(20)]


def test_buckets_with_a_budget_and_mix_weights_by_bucket(corpus, stage_ctx, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.train.mix import build_mixture, parse_spec

    rows = corpus.select("id", "text", "fasttext_score.prob").collect()
    out = _run(corpus, stage_ctx, score="fasttext_score.prob", buckets=4, bucket_column="qb", top_fraction=0.5)
    expected = _reference_buckets(rows, lambda r: r.prob, 4)
    kept = out.kept.select("id", "text", "qb").toPandas()
    assert len(kept) == 300 and dict(zip(kept.id, kept.qb)) == {i: expected[i] for i in kept.id}
    assert set(kept.qb) == {2, 3}  # the top half by score holds the two upper token quartiles (±1 document)
    assert {r.qb for r in out.rejected.select("qb").collect()} <= {0, 1, 2}

    (tmp_path / "kept").mkdir()
    pq.write_table(pa.Table.from_pandas(kept, preserve_index=False), tmp_path / "kept" / "part-00000.parquet")
    spec = parse_spec({"total_tokens": 10**9, "sources": {
        "top": {"path": str(tmp_path / "kept"), "where": {"column": "qb", "min": 3}, "weight": 3, "max_epochs": 2},
        "rest": {"path": str(tmp_path / "kept"), "where": {"column": "qb", "max": 2}, "weight": 1}}})
    manifest = build_mixture(spec, tmp_path / "mix")
    top = kept[kept.qb == 3]
    assert manifest["sources"]["top"]["available_documents"] == len(top)
    assert manifest["sources"]["rest"]["available_documents"] == len(kept) - len(top)
    assert manifest["sources"]["top"]["epochs"] == 2.0  # the top bucket repeated twice, the rest once


def test_bucket_params_fail_clearly(corpus, stage_ctx):
    with pytest.raises(CurateError, match="exactly one of"):
        _run(corpus, stage_ctx, score="fasttext_score.prob")
    with pytest.raises(CurateError, match="buckets must be"):
        _run(corpus, stage_ctx, score="fasttext_score.prob", buckets=0)
    with pytest.raises(CurateError, match="takes no weights"):
        _run(corpus, stage_ctx, score=["fasttext_score.prob", "coarse"], combine="max", weights=[1, 2], keep_docs=3)
    with pytest.raises(CurateError, match="combine must be one of"):
        _run(corpus, stage_ctx, score="fasttext_score.prob", combine="median", keep_docs=3)
