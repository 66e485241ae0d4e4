"""hf_classify: a tiny BERT classifier fine-tuned here on real text (benchmark questions vs Reuters
news), saved in HF format, loaded offline; Spark vs plain Python vs a plain transformers loop."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import read_jsonl, tamper

from curate.core import CurateError
from curate.quality.hf_classify import hf_classify
from curate.quality.hf_models import (
    HFClassifier,
    bucket_width,
    classify_texts,
    load_model,
    probabilities,
    run_windows,
    windows_of,
    write_manifest,
)

WINDOW = 64


def labelled_texts(shared_data, n: int = 160) -> tuple[list[str], list[int]]:
    """Benchmark questions (label 1) and Reuters news openings (label 0), interleaved."""
    questions = [f"{r['query']} {' '.join(r['choices'])}"
                 for r in read_jsonl(shared_data / "benchmarks" / "arc_easy.jsonl", n)]
    news = [r["text"][:400] for r in read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", n)]
    texts = [t for pair in zip(questions, news) for t in pair]
    return texts, [1, 0] * n


def fine_tune(texts, labels, out_dir, *, num_labels: int = 2, steps: int = 40, seed: int = 0):
    """A 2-layer, hidden-32 BertForSequenceClassification on the MiniLM tokenizer, trained ``steps``
    Adam steps; saved as safetensors with a SHA256SUMS manifest."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from curate.targeted.embedding import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_dir()), local_files_only=True)
    tokenizer.model_max_length = WINDOW
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=WINDOW, num_labels=num_labels,
                        id2label={0: "news", 1: "benchmark"} if num_labels == 2 else None)
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        pick = torch.randint(0, len(texts), (16,), generator=gen).tolist()
        batch = tokenizer([texts[i] for i in pick], truncation=True, max_length=WINDOW, padding=True,
                          return_tensors="pt")
        target = torch.tensor([labels[i] for i in pick], dtype=torch.float if num_labels == 1 else torch.long)
        loss = model(**batch, labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    write_manifest(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def data(shared_data):
    texts, labels = labelled_texts(shared_data)
    return {"train": (texts[:240], labels[:240]), "test": (texts[240:], labels[240:])}


@pytest.fixture(scope="module")
def model_dir(data, tmp_path_factory):
    return fine_tune(*data["train"], tmp_path_factory.mktemp("hf") / "clf")


def plain_transformers(model_dir, texts) -> np.ndarray:
    """The reference: a plain transformers loop (tokenizer truncation + padding, softmax)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True).eval()
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), 16):
            batch = tokenizer(texts[i:i + 16], truncation=True, max_length=WINDOW, padding=True, return_tensors="pt")
            rows.append(model(**batch).logits.float().numpy())
    return np.concatenate(rows)


def test_matches_plain_transformers_and_beats_chance(model_dir, data):
    texts, labels = data["test"]
    loaded = load_model(model_dir, device="cpu")
    assert loaded.task == "classification" and loaded.labels == ("news", "benchmark") and loaded.max_length == WINDOW
    got = classify_texts(texts, loaded, batch_size=8)
    want = probabilities(plain_transformers(model_dir, texts), "classification")
    np.testing.assert_allclose(got["probs"], want, atol=1e-5)
    np.testing.assert_allclose(got["score"], want[:, 1], atol=1e-5)  # P(second label)
    accuracy = np.mean((got["score"] >= 0.5) == np.asarray(labels, bool))
    assert accuracy >= 0.9, accuracy
    assert got["label"] == [loaded.labels[i] for i in want.argmax(axis=1)]


def test_bucket_widths():
    assert [bucket_width(n, 512) for n in (1, 8, 9, 64, 65, 128, 129, 256, 257, 500)] == \
        [8, 8, 16, 64, 80, 128, 160, 256, 320, 512]
    assert bucket_width(60, 50) == 50 and bucket_width(130, 128) == 128


def test_fixed_layout_is_independent_of_neighbours_and_agrees_with_other_layouts(model_dir, data):
    texts = data["test"][0]
    loaded = load_model(model_dir, device="cpu")
    pieces, _ = windows_of(texts, loaded, "first")
    fixed = run_windows(pieces, loaded, 8)
    # the same windows with other neighbours, in other orders, other batches: the same bytes
    assert np.array_equal(run_windows(pieces[::-1], loaded, 8)[::-1], fixed)
    assert np.array_equal(run_windows(pieces[1::3], loaded, 8), fixed[1::3])
    assert np.array_equal(run_windows(pieces[5:6], loaded, 8), fixed[5:6])
    # the other layouts (shapes chosen by the neighbours) agree to float32 rounding
    for layout in ("sorted", "input"):
        np.testing.assert_allclose(run_windows(pieces, loaded, 8, layout=layout), fixed, atol=1e-5)
    np.testing.assert_allclose(run_windows(pieces, loaded, 1), fixed, atol=1e-5)
    with pytest.raises(CurateError, match="layout must be one of"):
        run_windows(pieces, loaded, 8, layout="random")


def test_mean_of_windows(model_dir, data):
    loaded = load_model(model_dir, device="cpu")
    long_text = " ".join(data["test"][0][:6])
    pieces, owner = windows_of([long_text, "short"], loaded, "mean")
    n_tokens = len(loaded.tokenizer(long_text, add_special_tokens=False)["input_ids"])
    assert owner.count(0) == -(-n_tokens // loaded.window) > 1 and owner.count(1) == 1
    per_window = probabilities(run_windows(pieces, loaded, 4), "classification")
    mean = classify_texts([long_text, "short"], loaded, long_docs="mean")
    np.testing.assert_allclose(mean["probs"][0], per_window[:owner.count(0)].mean(axis=0), atol=1e-6)
    first = classify_texts([long_text], loaded, long_docs="first")
    np.testing.assert_allclose(first["probs"][0], per_window[0], atol=1e-6)


def test_spark_matches_python_and_is_byte_identical_across_partitionings(spark, stage_ctx, model_dir, data):
    from curate.quality.score import score

    texts = data["test"][0] + [None, ""]
    rows = [(f"d{i:03d}", t) for i, t in enumerate(texts)]
    want = classify_texts(texts, load_model(model_dir, device="cpu"), batch_size=8)
    df = spark.createDataFrame(rows, "id string, text string")
    options = {"model": str(model_dir), "name": "q", "batch_size": 8, "device": "cpu"}
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    saved = spark.conf.get(key)
    spark.conf.set(key, "5")  # Arrow batches unlike the one Python batch; 7 partitions give some of one row
    outputs = {}
    try:
        for parts in (1, 2, 7):  # 1 partition: as an entry of `score`, in one pass with a filter
            out = (score(df.repartition(1), stage_ctx(), filters=["length", {"hf_classify": options}]) if parts == 1
                   else hf_classify(df.repartition(parts), stage_ctx(), **options))
            got = sorted((r["id"], r["q"]["score"], r["q"]["label"], r["q"]["probs"]) for r in out.kept.collect())
            outputs[parts] = (np.asarray([g[1] for g in got], np.float64).tobytes(),
                              np.asarray([g[3] for g in got], np.float32).tobytes(), [g[2] for g in got])
    finally:
        spark.conf.set(key, saved)
    assert outputs[1] == outputs[2] == outputs[7]  # score and probs bytes, labels
    assert out.stats["labels"] == ["news", "benchmark"] and len(got) == len(rows)
    for i, (doc_id, _) in enumerate(rows):  # in-process (other torch threads): equal to float32 rounding
        assert got[i][0] == doc_id and got[i][2] == want["label"][i]
        assert got[i][1] == pytest.approx(want["score"][i], abs=1e-6)
        np.testing.assert_allclose(got[i][3], want["probs"][i], atol=1e-6)


def test_regression_model_gives_the_value(data, tmp_path):
    texts, labels = data["train"]
    reg = fine_tune(texts, labels, tmp_path / "reg", num_labels=1, steps=5)
    loaded = load_model(reg, device="cpu")
    assert loaded.task == "regression" and loaded.labels == ()
    got = classify_texts(data["test"][0][:20], loaded)
    np.testing.assert_allclose(got["score"], plain_transformers(reg, data["test"][0][:20])[:, 0], atol=1e-5)
    assert got["label"] == [None] * 20 and got["probs"].shape == (20, 0)


def test_tampered_or_unlisted_files_are_refused(model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    tamper(weights)
    with pytest.raises(CurateError, match="does not match SHA256SUMS"):
        load_model(copy, device="cpu")
    write_manifest(copy)
    (copy / "extra.py").write_text("print('remote code')\n")
    with pytest.raises(CurateError, match="extra.py not listed"):
        load_model(copy, device="cpu")
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(CurateError, match="no SHA256SUMS"):
        load_model(copy, device="cpu")
    with pytest.raises(CurateError, match="positive label 'hq'"):
        HFClassifier(str(model_dir), positive="hq", device="cpu").setup()
