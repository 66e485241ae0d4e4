"""curate.targeted.embedding and the `embed` stage: real all-MiniLM-L6-v2 model, real Spark, real text."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.targeted.embedding import embed_texts, load_embedder, resolve_model_dir, split_windows


@pytest.fixture(scope="module")
def texts(shared_data):
    science = [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_abc.jsonl")
               if r["meta"]["section"] == "science"][:6]
    reviews = [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_movie_reviews.jsonl", 6)]
    return science, reviews


def test_vectors_are_unit_float32_and_deterministic(texts):
    science, reviews = texts
    first = embed_texts(science + reviews, batch_size=4)
    again = embed_texts(science + reviews, batch_size=16)
    assert first.dtype == np.float32 and first.shape == (12, 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, again, atol=1e-5)  # batch size does not change a vector
    assert embed_texts([]).shape == (0, 384)


def test_similar_texts_are_closer(texts):
    science, reviews = texts
    question = embed_texts(["Which gas do plants absorb from the air for photosynthesis, and how "
                            "do scientists measure climate change effects on ecosystems?"])[0]
    sci, rev = embed_texts(science) @ question, embed_texts(reviews) @ question
    assert sci.mean() > rev.mean() + 0.1, (sci, rev)


def test_long_docs_first_window_vs_mean_of_windows(texts):
    science, reviews = texts
    long_doc = reviews[0]
    embedder = load_embedder()
    windows = split_windows(long_doc, embedder.tokenizer, embedder.max_seq_length - 2)
    assert len(windows) > 1 and "".join(windows) == long_doc
    first = embed_texts([long_doc, "a short sentence"])
    mean = embed_texts([long_doc, "a short sentence"], long_docs="mean")
    np.testing.assert_allclose(first[1], mean[1], atol=1e-5)  # one window: same vector
    assert float(first[0] @ mean[0]) < 0.999  # several windows: a different vector
    manual = embed_texts(windows).mean(axis=0)
    np.testing.assert_allclose(mean[0], manual / np.linalg.norm(manual), atol=1e-5)
    with pytest.raises(CurateError, match="long_docs"):
        embed_texts(["x"], long_docs="last")


def test_missing_model_says_how_to_install(tmp_path):
    with pytest.raises(CurateError, match="pip install"):
        resolve_model_dir("no-such-embedding-package")
    with pytest.raises(CurateError, match="not found"):
        resolve_model_dir(str(tmp_path / "missing" / "dir"))


def test_local_directory_needs_safetensors_and_sha256_sidecars(tmp_path):
    package_dir = resolve_model_dir(None)
    local = tmp_path / "minilm"
    shutil.copytree(package_dir, local, ignore=shutil.ignore_patterns("model.safetensors"))
    (local / "model.safetensors").symlink_to(package_dir / "model.safetensors")
    with pytest.raises(CurateError, match="sidecar"):
        resolve_model_dir(str(local))
    (local / "model.safetensors.sha256").write_text("0" * 64 + "  model.safetensors\n")
    with pytest.raises(CurateError, match="does not match"):
        resolve_model_dir(str(local))
    digest = hashlib.sha256((package_dir / "model.safetensors").read_bytes()).hexdigest()
    (local / "model.safetensors.sha256").write_text(f"{digest}  model.safetensors\n")
    vectors = embed_texts(["the same sentence"], model=str(local))
    np.testing.assert_allclose(vectors, embed_texts(["the same sentence"]), atol=1e-6)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CurateError, match="pickle"):
        resolve_model_dir(str(pickled))


def test_embed_stage_matches_driver_whatever_the_partitioning(spark, stage_ctx, tmp_path, texts):
    """One Spark pass: the column equals the driver's vectors (so partitioning cannot matter)."""
    from curate.targeted.embed import embed

    science, reviews = texts
    rows = [(f"d{i:02d}", t) for i, t in enumerate(science[:3] + reviews[:3])]
    df = spark.createDataFrame(rows, "id string, text string").repartition(3)
    out = embed(df, stage_ctx(tmp_path / "column"), batch_size=2).kept.cache()
    assert out.columns == ["id", "text", "embedding"]
    got = {r["id"]: r["embedding"] for r in out.collect()}
    np.testing.assert_allclose(np.array([got[i] for i, _ in rows]), embed_texts([t for _, t in rows]),
                               atol=1e-5)

    ctx = stage_ctx(tmp_path / "separate")
    kept = embed(df.coalesce(1), ctx, separate=True, column="vec").kept
    assert kept.columns == ["id", "text"]
    stored = spark.read.parquet(str(ctx.artifact("embeddings"))).collect()
    assert ctx.artifacts == {"embeddings": "artifacts/embeddings"}
    np.testing.assert_allclose(np.array([got[r["id"]] for r in stored]),
                               np.array([r["vec"] for r in stored]), atol=1e-6)
    with pytest.raises(CurateError, match="already exists"):
        embed(df, ctx, column="text")
