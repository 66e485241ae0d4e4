"""End to end on real text: tiny GPT-2 models trained here on different corpus mixes, their error on
real ARC-Easy questions, the loss matrix on a document sample, and the full selection stages.

At this scale (1-layer models, ~chance benchmark accuracy) the check is about the pipeline —
artifacts agree with each other and with the numpy estimators, budgets hold, reruns agree —
not about whether the selected data is better (see docs/perplexity_correlation.md).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import read_jsonl

from curate.core import CurateError, get_stage
from curate.pplcorr import estimators as pplcorr
from curate.pplcorr import lossmatrix as lm

torch = pytest.importorskip("torch")
pytest.importorskip("fasttext")
from helpers import save_tiny_lm, train_tokenizer  # noqa: E402

CORPORA = {"wiki": "wikitext2.jsonl", "code": "python_docs.jsonl", "reviews": "nltk_movie_reviews.jsonl",
           "news": "reuters21578.jsonl.gz", "speech": "nltk_state_union.jsonl"}
# (name, training mix, steps): different data and different amounts of training.
MODELS = [("wiki120", ["wiki"], 120), ("code90", ["code"], 90), ("news70", ["news", "reviews"], 70),
          ("mix60", list(CORPORA), 60), ("speech30", ["speech"], 30), ("mix10", list(CORPORA), 10)]
DOC_CHARS = 800
DOCS_PER_SOURCE = 30
# DCLM's 2M buckets × 100 dims make an 800 MB model. threads=10: with fewer threads this fastText
# build initialises only threads/10 of the input matrix and training then hits NaN at random
# (seen in about half the runs with threads=1 on these small samples).
SMALL_FASTTEXT = {"bucket": 50_000, "dim": 32, "threads": 10}


@pytest.fixture(scope="module")
def world(shared_data, tmp_path_factory):
    """Corpus documents, tiny models trained on mixes, and their ARC-Easy error CSV."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pplcorr_world")
    docs = []
    for source, file in CORPORA.items():
        rows = read_jsonl(shared_data / "corpora" / file, limit=DOCS_PER_SOURCE + 60)
        for row in rows:
            docs.append({"id": row["id"], "text": row["text"][:DOC_CHARS], "source": source})
    docs = pd.DataFrame(docs)
    held_in = docs.groupby("source").head(DOCS_PER_SOURCE)  # the corpus the stage selects from
    training = docs.drop(held_in.index)  # models train on other documents of each source
    tokenizer = train_tokenizer(training["text"].tolist(), root / "tok", vocab_size=500)
    questions = read_jsonl(shared_data / "benchmarks" / "arc_easy.jsonl", limit=60)
    errors, dirs = {}, {}
    for i, (name, mix, steps) in enumerate(MODELS):
        texts = training[training["source"].isin(mix)]["text"].tolist()
        dirs[name] = save_tiny_lm(tokenizer, texts, root / name, steps=steps, seed=i)
        model, tok = lm.load_causal_lm(dirs[name], "cpu")
        errors[name] = lm.multiple_choice_error(model, tok, questions)
    pd.DataFrame({"model": list(errors), "error": list(errors.values())}).to_csv(root / "errors.csv", index=False)
    yield {"root": root, "docs": held_in.reset_index(drop=True), "dirs": dirs, "errors": errors}
    torch.set_num_threads(previous)


def run_stage(name, stage_ctx, world, stage_dir, **params):
    spec = get_stage(name)
    ctx = stage_ctx(stage_dir, base_dir=world["root"], seed=7)
    df = ctx.spark.createDataFrame(world["docs"]).repartition(3, "id")
    out = spec.fn(df, ctx, **spec.validate(params))
    return out, ctx


def test_errors_are_real_benchmark_measurements(world):
    errors = np.array(list(world["errors"].values()))
    assert ((errors > 0.3) & (errors < 0.95)).all()  # 4-way multiple choice: near chance for tiny models
    assert len(np.unique(errors)) >= 3  # the models differ


def test_perplexity_correlation_end_to_end(stage_ctx, world, tmp_path):
    models = [f"{n}={p}" for n, p in world["dirs"].items()]
    out, ctx = run_stage("perplexity_correlation", stage_ctx, world, tmp_path / "s1", errors="errors.csv",
                         models=models, sample_docs=80, keep_fraction=0.3, batch_size=16,
                         classifier=SMALL_FASTTEXT)
    art = tmp_path / "s1" / "artifacts"
    assert {"matrix.parquet", "estimates.parquet", "errors.csv", "labels.parquet", "classifier.bin",
            "classifier.bin.sha256", "classifier.bin.json", "summary.json"} <= set(ctx.artifacts)
    matrix = pd.read_parquet(art / "matrix.parquet")
    assert len(matrix) == 80 and lm.model_names(matrix) == [m[0] for m in MODELS]
    assert set(matrix["id"]) <= set(world["docs"]["id"])
    bpb = matrix[[f"bpb:{m[0]}" for m in MODELS]]
    assert ((bpb > 0.5) & (bpb < 8)).all().all()
    # Longer-trained models on a broad mix fit the sample better than 10 steps of it.
    assert (matrix["bpb:mix60"] < matrix["bpb:mix10"]).mean() > 0.9

    # The estimates are the numpy estimator and projection applied to the written matrix and y.
    X, y, names = lm.align(matrix, lm.read_errors(art / "errors.csv"))
    est = pd.read_parquet(art / "estimates.parquet")
    np.testing.assert_allclose(est["estimate"], pplcorr.spearmanr(X, y))
    np.testing.assert_allclose(est["weight"], pplcorr.linear(est["estimate"].to_numpy(), est["tau"].to_numpy()))
    assert est["weight"].sum() == pytest.approx(1.0) and (est["weight"] <= est["tau"] + 1e-12).all()
    labels = pd.read_parquet(art / "labels.parquet")
    positives = set(labels.loc[labels["label"] == "hq", "id"])
    assert positives == set(est.loc[est["weight"] > 0, "id"])
    assert 0.2 < len(positives) / len(labels) < 0.5  # ~keep_fraction of the sample's tokens

    # Selection over the whole input: accounting and the token budget.
    kept, rejected = out.kept.toPandas(), out.rejected.toPandas()
    assert len(kept) + len(rejected) == len(world["docs"])
    assert set(rejected["reject_reason"]) == {"budget"}
    assert kept["perplexity_correlation"].map(lambda s: 0 <= s["prob"] <= 1).all()
    sel = out.stats["selection"]
    assert sel["tokens_kept"] <= 0.3 * sel["tokens_in"] and sel["tokens_kept"] > 0.2 * sel["tokens_in"]
    assert json.loads((art / "summary.json").read_text())["models"] == names



def test_preselect_by_domain_resuming_a_matrix(stage_ctx, world, tmp_path):
    matrix_path = tmp_path / "work" / "matrix.parquet"
    models = [f"{n}={p}" for n, p in world["dirs"].items()]
    # A matrix file holding three models (an interrupted build); the stage adds the other three.
    lm.build_matrix(world["docs"].iloc[::2], [lm.parse_model(m) for m in models[:3]], matrix_path,
                    device="cpu", log=lambda _: None)
    first = pd.read_parquet(matrix_path)
    out, _ = run_stage("preselect", stage_ctx, world, tmp_path / "p1", errors="errors.csv", models=models,
                       matrix=str(matrix_path), domain="source", label_fraction=0.2, keep_fraction=0.4,
                       classifier=SMALL_FASTTEXT, workers=True)  # the three new models: on Spark workers
    matrix = pd.read_parquet(matrix_path)
    assert lm.model_names(matrix) == [m[0] for m in MODELS]
    pd.testing.assert_frame_equal(matrix[first.columns], first)  # resumed: the first models untouched

    # One row per source; S is PreSelect's strength of the aggregated (token-weighted) bpb.
    art = tmp_path / "p1" / "artifacts"
    strength = pd.read_parquet(art / "strength.parquet")
    assert sorted(strength["id"]) == sorted(CORPORA)
    X, y, _ = lm.align(lm.aggregate_domains(matrix.merge(world["docs"][["id", "source"]], on="id"), "source"),
                       lm.read_errors(art / "errors.csv"))
    np.testing.assert_allclose(strength["strength"], pplcorr.predictive_strength(X, y))
    hq, lq = (strength.loc[strength["label"] == lab] for lab in ("hq", "lq"))
    assert len(hq) == len(lq) == 1 and hq["strength"].iloc[0] >= lq["strength"].iloc[0]
    # Every sampled document carries its source's label.
    labels = pd.read_parquet(art / "labels.parquet").merge(world["docs"][["id", "source"]], on="id")
    assert len(labels) == len(first)
    expected = labels["source"].map(dict(zip(strength["id"], strength["label"])))
    assert labels["label"].fillna("-").tolist() == expected.fillna("-").tolist()
    assert out.stats["unit"] == "source" and out.stats["texts"] == 5
    kept, rejected = out.kept.count(), out.rejected.count()
    assert kept + rejected == len(world["docs"]) and kept > 0


def test_sample_does_not_depend_on_partitioning(spark, world):
    from curate.pplcorr.perplexity_correlation import sample_documents

    df = spark.createDataFrame(world["docs"])
    one = sample_documents(df.coalesce(1), 25, 3, ["id", "text"])
    many = sample_documents(df.repartition(5, "text"), 25, 3, ["id", "text"])
    pd.testing.assert_frame_equal(one, many)
    assert one["id"].is_monotonic_increasing and len(one) == 25
    assert sample_documents(df, 25, 4, ["id"])["id"].tolist() != one["id"].tolist()  # the seed matters


def test_stage_errors_are_clear(stage_ctx, world, tmp_path):
    with pytest.raises(CurateError, match="give `models`"):
        run_stage("perplexity_correlation", stage_ctx, world, tmp_path / "e1", errors="errors.csv")
    with pytest.raises(CurateError, match="valid: spearmanr"):
        run_stage("perplexity_correlation", stage_ctx, world, tmp_path / "e0", errors="errors.csv",
                  models=["mix10=nowhere"], estimator="pearson")
    with pytest.raises(CurateError, match="classifier: unknown option"):
        run_stage("preselect", stage_ctx, world, tmp_path / "e0", errors="errors.csv", classifier={"ngrams": 3})
    with pytest.raises(CurateError, match="domain column 'lang'"):
        run_stage("preselect", stage_ctx, world, tmp_path / "e2", errors="errors.csv", domain="lang",
                  models=["mix10=nowhere"])
    bad_y = world["root"] / "partial.csv"
    bad_y.write_text("model,error\nwiki120,0.5\n")
    with pytest.raises(CurateError, match="no benchmark error"):
        run_stage("perplexity_correlation", stage_ctx, world, tmp_path / "e3", errors=str(bad_y),
                  models=[f"wiki120={world['dirs']['wiki120']}", f"mix10={world['dirs']['mix10']}"],
                  sample_docs=5)
