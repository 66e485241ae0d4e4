"""Static (Model2Vec) embeddings distilled from the bundled all-MiniLM-L6-v2: `curate embed distill`,
curate.targeted.static_embed, and the static kind of the shared embedding path on real Spark and text."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import read_jsonl, tamper

from curate.cli import main
from curate.core import CurateError
from curate.quality.hf_models import MANIFEST
from curate.targeted.embedding import embed_texts, load_embedder, model_argument, with_embeddings
from curate.targeted.static_embed import distill_static_model, is_static_model_dir

# A tiny vocabulary (~850 tokens) keeps distillation to a few CPU seconds: words and word pieces of
# one or two letters and the special tokens; every other token is dropped.
TINY_VOCABULARY = r"(?!(?:##)?[a-z]{1,2}$|\[(?:UNK|PAD|CLS|SEP|MASK)\]$)"
TINY_OPTIONS = ["--pca-dims", "24", "--drop-tokens", TINY_VOCABULARY]


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory):
    """The tiny static model, distilled through the command line."""
    out = tmp_path_factory.mktemp("static") / "tiny"
    result = CliRunner().invoke(main, ["embed", "distill", "-o", str(out), *TINY_OPTIONS])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dim"] == 24 and 800 < summary["vocabulary"] < 860
    return out


@pytest.fixture(scope="module")
def texts(shared_data):
    news = [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_abc.jsonl", 8)]
    reviews = [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_movie_reviews.jsonl", 8)]
    return news + reviews


def test_distilled_directory_is_hashed_and_recognised(static_dir):
    assert is_static_model_dir(static_dir)
    assert not is_static_model_dir(static_dir.parent)
    listed = {line.split("  ", 1)[1] for line in (static_dir / MANIFEST).read_text().splitlines()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= listed
    assert "/" not in json.loads((static_dir / "config.json").read_text())["tokenizer_name"]  # no local path


def test_distillation_is_deterministic(static_dir, tmp_path):
    from curate.targeted.embedding import resolve_model_dir

    again = tmp_path / static_dir.name  # the model card names the directory
    summary = distill_static_model(resolve_model_dir(None), again, pca_dims=24, drop_tokens=TINY_VOCABULARY)
    assert (again / MANIFEST).read_bytes() == (static_dir / MANIFEST).read_bytes()
    assert summary["dim"] == 24


def test_vectors_unit_deterministic_and_equal_to_model2vec(static_dir, texts):
    from model2vec import StaticModel

    vectors = embed_texts(texts, model=str(static_dir))
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 24)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([embed_texts([t], model=str(static_dir)) for t in texts])
    assert one_by_one.tobytes() == vectors.tobytes()  # a batch does not change a vector's bytes
    reference = StaticModel.from_pretrained(str(static_dir)).encode(texts, max_length=512)
    np.testing.assert_allclose(vectors, reference, atol=2e-3)  # model2vec pools in float16
    assert embed_texts([], model=str(static_dir)).shape == (0, 24)
    assert not embed_texts([""], model=str(static_dir)).any()  # no tokens: the zero vector


ODD_TEXTS = ["tab\tsep\x0bvt\x1cfs word,punct (x) a.b.c", "a\x0bb c\x85d e\u200bf", "中文abc中 x",
             "naïve café — “quoted” foo_bar €100 ©2020 e\u0301té", "x" * 300, "", "  ",
             "emoji 😀😀 ok",
             "\u200b " * 600 + "word " * 600]  # the first 512 chunks are deleted by the tokenizer: no piece


def test_memo_of_chunks_gives_the_tokenizer_path_bytes(static_dir, texts):
    import dataclasses

    from curate.targeted._word_pieces import WordPieces

    embedder = load_embedder(str(static_dir))
    assert embedder.word_pieces is not None  # a BERT tokenizer: the memo path
    exact = dataclasses.replace(embedder, word_pieces=None)
    forgetful = dataclasses.replace(embedder, word_pieces=WordPieces(embedder.tokenizer, limit=50))
    for batch in (texts, ODD_TEXTS):
        for max_tokens in (512, None):
            reference = exact.encode(batch, max_tokens=max_tokens).tobytes()
            assert embedder.encode(batch, max_tokens=max_tokens).tobytes() == reference
            assert forgetful.encode(batch, max_tokens=max_tokens).tobytes() == reference  # memo starts over


def test_static_vectors_keep_topics_apart(static_dir, texts):
    vectors = embed_texts(texts, model=str(static_dir), long_docs="mean")
    similarity = vectors @ vectors.T
    same = np.r_[similarity[:8, :8][np.triu_indices(8, 1)], similarity[8:, 8:][np.triu_indices(8, 1)]]
    # ~850 one- and two-letter tokens carry little meaning, yet the two sources still separate
    # (0.874 within vs 0.855 across); the full distilled model is measured in bench/embed_speed.py.
    assert same.mean() > similarity[:8, 8:].mean() + 0.01, (same.mean(), similarity[:8, 8:].mean())


def test_long_docs_first_keeps_512_tokens(static_dir, texts):
    long_doc = max(texts, key=len)
    embedder = load_embedder(str(static_dir))
    assert len(embedder.tokenizer.encode(long_doc, add_special_tokens=False).ids) > 512
    first, mean = embed_texts([long_doc], model=str(static_dir)), embed_texts([long_doc], model=str(static_dir),
                                                                               long_docs="mean")
    assert float(first[0] @ mean[0]) < 0.9999
    np.testing.assert_allclose(first, embedder.encode([long_doc], max_tokens=512), atol=0)


def test_tampered_or_unlisted_file_is_refused(static_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(static_dir, copy)
    (copy / "notes.txt").write_text("added later")
    with pytest.raises(CurateError, match="not listed"):
        embed_texts(["text"], model=str(copy))
    (copy / "notes.txt").unlink()
    tamper(copy / "model.safetensors")
    with pytest.raises(CurateError, match="does not match"):
        embed_texts(["text"], model=str(copy))


def test_model_argument_static_kind(static_dir, tmp_path):
    resolve = str
    assert model_argument({"kind": "static", "path": str(static_dir)}, resolve) == str(static_dir)
    with pytest.raises(CurateError, match="not a static model"):
        model_argument({"kind": "static", "path": str(tmp_path)}, resolve)
    with pytest.raises(CurateError, match="kind: static"):
        model_argument({"kind": "onnx", "path": str(static_dir)}, resolve)


def test_spark_path_and_embed_stage_equal_library_across_partitionings(spark, stage_ctx, static_dir, texts):
    from curate.targeted.embed import embed

    rows = [(f"d{i:02d}", t) for i, t in enumerate(texts)]
    expected = embed_texts(texts, model=str(static_dir))
    frames = [with_embeddings(spark.createDataFrame(rows, "id string, text string").repartition(1),
                              model=str(static_dir)),
              embed(spark.createDataFrame(rows, "id string, text string").repartition(3), stage_ctx(),
                    model={"kind": "static", "path": str(static_dir)}).kept]
    for frame in frames:
        got = {r["id"]: r["embedding"] for r in frame.collect()}
        matrix = np.asarray([got[i] for i, _ in rows], dtype=np.float32)
        assert matrix.tobytes() == expected.tobytes()
