"""The Scorer protocol and its one Arrow adapter: heuristic filters, a real fastText model and
DSIR in ONE ``score`` pass give the same columns as the separate stages; ``setup()`` runs
once per Python worker; bad entries fail with one-line errors."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
from helpers import read_jsonl

import filters
from curate.core import CurateError, Scorer
from curate.quality.classifier import train_classifier
from curate.quality.columns import append_scores
from curate.quality.dsir_score import dsir_score
from curate.quality.fasttext_score import fasttext_score
from curate.quality.score import score


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, shared_data):
    """A small fastText classifier: Python docs (hq) vs movie reviews (lq), 120 docs each."""
    corpora = shared_data / "corpora"
    out = tmp_path_factory.mktemp("scorers") / "q.bin"
    train_classifier([d["text"] for d in read_jsonl(corpora / "python_docs.jsonl", 120)],
                     [d["text"] for d in read_jsonl(corpora / "nltk_movie_reviews.jsonl", 120)],
                     out, bucket=50_000, seed=1)
    return out


@pytest.fixture(scope="module")
def docs(spark, shared_data):
    """Unseen real documents of both kinds (one null text), over 6 partitions."""
    corpora = shared_data / "corpora"
    rows = []
    for prefix, name in (("py", "python_docs.jsonl"), ("mv", "nltk_movie_reviews.jsonl")):
        rows += [(f"{prefix}{i:03d}", d["text"]) for i, d in enumerate(read_jsonl(corpora / name, 200)[150:])]
    rows.append(("none", None))
    return spark.createDataFrame(rows, "id string, text string").repartition(6, "id")


def by_id(df, columns):
    return {r["id"]: {c: r[c] for c in columns} for r in df.select("id", *columns).collect()}


def test_filters_fasttext_and_dsir_in_one_pass_equal_the_separate_stages(stage_ctx, docs, model_path, shared_data):
    target = f"{shared_data / 'corpora' / 'python_docs.jsonl'}:40"
    ctx = stage_ctx(base_dir=model_path.parent)
    out = score(docs, ctx, filters=["gopher_quality", {"c4": {"min_words_per_line": 2}},
                                    {"fasttext": {"model": "q.bin", "name": "fasttext_score"}},
                                    {"dsir": {"target": target, "name": "dsir_score", "num_buckets": 4096}}])
    one_pass = out.kept
    assert one_pass.columns == ["id", "text", "gopher_quality", "c4", "fasttext_score", "dsir_score"]
    stats = out.stats(one_pass, None)
    assert stats["dsir_score"]["target_docs"] == 40 and (ctx.stage_dir / "artifacts" / "dsir_score_model.npz").is_file()

    heuristics = score(docs, stage_ctx(), filters=["gopher_quality", {"c4": {"min_words_per_line": 2}}]).kept
    separate = fasttext_score(heuristics, stage_ctx(), model=str(model_path)).kept
    separate = dsir_score(separate, stage_ctx(), target=target, num_buckets=4096).kept
    assert one_pass.schema == separate.schema  # same types and the filters' parameter metadata
    columns = ["gopher_quality", "c4", "fasttext_score", "dsir_score"]
    got, want = by_id(one_pass, columns), by_id(separate, columns)
    assert got == want and len(got) == 101
    probs = {i: row["fasttext_score"]["prob"] for i, row in got.items()}
    assert sum(probs[i] > 0.5 for i in probs if i.startswith("py")) >= 45  # the model works on unseen docs
    assert sum(probs[i] < 0.5 for i in probs if i.startswith("mv")) >= 45


@dataclass(frozen=True)
class CountingScorer:
    """Writes one line per setup() and per batch (with the worker's pid) to files under ``log_dir``."""

    log_dir: str
    name: str = "counted"
    fields: ClassVar[dict[str, str]] = {"chars": "double"}
    inputs: ClassVar[tuple[str, ...]] = ("text",)

    def setup(self) -> None:
        with open(os.path.join(self.log_dir, "setup.log"), "a") as fh:
            fh.write(f"{os.getpid()}\n")

    def score_batch(self, texts, **_columns):
        with open(os.path.join(self.log_dir, "batch.log"), "a") as fh:
            fh.write(f"{os.getpid()} {len(texts)}\n")
        return {"chars": [float(len(t)) for t in texts]}


def test_setup_runs_once_per_worker_and_each_batch_once(spark, docs, tmp_path):
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    counted = CountingScorer(str(tmp_path))
    assert isinstance(counted, Scorer)
    scored = append_scores(docs, [filters.build("gopher_quality"), counted])
    rows = scored.collect()
    scored.select("id", "counted.chars").collect()  # a second job on the same workers: no new setup
    setups = (tmp_path / "setup.log").read_text().split()
    batches = [line.split() for line in (tmp_path / "batch.log").read_text().splitlines()]
    assert len(setups) == len(set(setups)), setups  # once per Python worker...
    assert len(setups) < 2 * docs.rdd.getNumPartitions()  # ...not once per task (12 tasks ran)
    assert {pid for pid, _ in batches} <= set(setups)
    assert sum(int(n) for _, n in batches) == 2 * 101  # every row scored once per job: one UDF evaluation
    assert all(r["counted"]["chars"] == len(r["text"] or "") for r in rows)


def test_scorer_entries_are_validated(stage_ctx, docs, model_path):
    ctx = stage_ctx(base_dir=model_path.parent)
    with pytest.raises(CurateError, match="fasttext: missing required parameter.*model"):
        score(docs, ctx, filters=[{"fasttext": {}}])
    with pytest.raises(CurateError, match="fasttext: unknown parameter.*threshold; valid: model, name, label"):
        score(docs, ctx, filters=[{"fasttext": {"model": "q.bin", "threshold": 0.5}}])
    with pytest.raises(CurateError, match="batch_size must be an integer >= 1"):
        score(docs, ctx, filters=[{"fasttext": {"model": "q.bin", "batch_size": 0}}])
    with pytest.raises(CurateError, match="label 'good' is not in model"):
        score(docs, ctx, filters=[{"fasttext": {"model": "q.bin", "label": "good"}}])
    with pytest.raises(CurateError, match="unknown filter or scorer 'fastext'; valid: .*gopher_quality.*, dsir"):
        score(docs, ctx, filters=["fastext"])
    with pytest.raises(CurateError, match="listed twice"):
        score(docs, ctx, filters=[{"fasttext": {"model": "q.bin"}}, {"fasttext": {"model": "q.bin"}}])
