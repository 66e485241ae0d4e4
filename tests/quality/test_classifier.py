"""fastText quality classifier: trained on real text, verified, scored in Spark == in Python."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import read_jsonl

from curate.core import CurateError
from curate.integrity import sha256_file
from curate.quality.classifier import (
    Classifier,
    binary_metrics,
    load_classifier,
    normalize_line,
    parse_source_spec,
    roc_auc,
    train_classifier,
)
from curate.quality.fasttext_score import fasttext_score

SMALL = {"bucket": 50_000}  # small model files (20 MB); DCLM defaults otherwise


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, shared_data, spark):
    """Python docs (hq) vs movie reviews (lq), trained through the CLI from 150-doc samples."""
    from curate.commands.classifier import command

    out = tmp_path_factory.mktemp("clf") / "quality.bin"
    corpora = shared_data / "corpora"
    result = CliRunner().invoke(command, [
        "train", "--positive", f"{corpora / 'python_docs.jsonl'}:150",
        "--negative", f"{corpora / 'nltk_movie_reviews.jsonl'}:150", "-o", str(out),
        "--bucket", str(SMALL["bucket"]), "--holdout", "0.2"])
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output
    return out


@pytest.fixture(scope="module")
def unseen(shared_data):
    """Documents from the end of both files (the CLI samples 150 of each file by id hash, so
    some may overlap; the fixture below removes any text the model was trained on)."""
    pos = [d["text"] for d in read_jsonl(shared_data / "corpora" / "python_docs.jsonl")][-120:]
    neg = [d["text"] for d in read_jsonl(shared_data / "corpora" / "nltk_movie_reviews.jsonl")][-120:]
    return pos, neg


def test_held_out_roc_auc_and_sidecars(model_path, unseen):
    meta = json.loads(model_path.with_name(model_path.name + ".json").read_text())
    assert meta["sha256"] == sha256_file(model_path) == model_path.with_name(
        model_path.name + ".sha256").read_text().split()[0]
    assert meta["metrics"]["roc_auc"] >= 0.95 and meta["counts"]["holdout"] == 60
    assert meta["hyperparameters"]["word_ngrams"] == 2 and meta["normalization"]["lowercase"] is False
    assert meta["sources"]["positive"][0].endswith("python_docs.jsonl:150")
    clf = load_classifier(model_path)
    pos, neg = unseen
    probs = clf.predict_proba(pos + neg, "hq")
    assert roc_auc(probs, [1] * len(pos) + [0] * len(neg)) >= 0.95
    assert np.allclose(clf.predict_proba(pos[:5], "lq"), 1 - probs[:5], atol=1e-4)


def test_spark_scoring_equals_single_process(model_path, unseen, spark, stage_ctx):
    pos, neg = unseen
    rows = [(f"doc-{i:04d}", t) for i, t in enumerate(pos[:60] + neg[:60] + ["", "one\nline\r\nonly"])]
    df = spark.createDataFrame(rows, "id string, text string").repartition(3)
    out = fasttext_score(df, stage_ctx(base_dir=model_path.parent),
                         model=model_path.name, name="quality", batch_size=7)
    assert out.kept.schema["quality"].dataType.simpleString() == "struct<prob:double>"
    spark_probs = dict(out.kept.select("id", "quality.prob").collect())
    local = load_classifier(model_path).predict_proba([t for _, t in rows], "hq")
    assert [spark_probs[i] for i, _ in rows] == local.tolist()  # exactly equal, not approximately


def test_corrupt_or_unverified_model_is_refused(model_path, spark, stage_ctx, tmp_path):
    copy = tmp_path / "copy.bin"
    shutil.copy(model_path, copy)
    with pytest.raises(CurateError, match="no sha256 sidecar"):
        load_classifier(copy)
    shutil.copy(model_path.with_name(model_path.name + ".sha256"), tmp_path / "copy.bin.sha256")
    assert isinstance(load_classifier(copy), Classifier)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    df = spark.createDataFrame([("a", "text")], "id string, text string")
    with pytest.raises(CurateError, match="sha256"):
        fasttext_score(df, stage_ctx(), model=str(copy))
    with pytest.raises(CurateError, match="label 'good' is not in model"):
        fasttext_score(df, stage_ctx(), model=str(model_path), label="good")


def test_training_is_deterministic_and_balanced(tmp_path, shared_data):
    pos = [d["text"] for d in read_jsonl(shared_data / "corpora" / "python_docs.jsonl", 40)]
    neg = [d["text"] for d in read_jsonl(shared_data / "corpora" / "nltk_abc.jsonl", 90)]
    reports = [train_classifier(pos, neg, tmp_path / f"m{i}.bin", seed=7, epoch=2, lowercase=True, **SMALL)
               for i in range(2)]
    assert reports[0]["sha256"] == reports[1]["sha256"]
    assert reports[0]["counts"]["per_class_balanced"] == 40 and reports[0]["counts"]["train"] == 72
    assert load_classifier(tmp_path / "m0.bin").lowercase is True
    with pytest.raises(CurateError, match="at least 2"):
        train_classifier(pos, [""], tmp_path / "bad.bin")


def test_normalize_and_metrics():
    assert normalize_line("A\nb\r\n\tC  ") == "A b C"
    assert normalize_line("Hello World", lowercase=True, max_chars=7) == "hello w"
    assert normalize_line(None) == ""
    assert parse_source_spec("s3://b/x.jsonl:500") == ("s3://b/x.jsonl", 500)
    assert parse_source_spec("/data/x.jsonl") == ("/data/x.jsonl", None)
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5
    m = binary_metrics([0.9, 0.6, 0.4, 0.2], [1, 0, 1, 0])
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)


def test_pipeline_scores_then_selects_a_token_budget(model_path, unseen, spark, tmp_path):
    """fasttext_score + select_budget through the runner: accounting and kept docs are the hq ones."""
    from curate.engine.runner import run_pipeline

    pos, neg = unseen
    docs = [{"id": f"p{i:03d}", "text": t[:3000]} for i, t in enumerate(pos[:30])] + \
           [{"id": f"n{i:03d}", "text": t[:3000]} for i, t in enumerate(neg[:30])]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    result = run_pipeline({
        "name": "quality", "input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "out"),
        "stages": [{"fasttext_score": {"model": str(model_path)}},
                   {"select_budget": {"score": "fasttext_score.prob", "keep_tokens_fraction": 0.3}}],
    }, spark=spark, log=lambda m: None)
    stats = result.stats["02-select_budget"]
    assert stats["rows_in"] == 60 and stats["rows_out"] + stats["rejected"]["budget"] == 60
    assert 0.25 * stats["tokens_in"] < stats["tokens_kept"] <= 0.3 * stats["tokens_in"]  # stage stats are merged
    from curate.io.shards import read_stage

    kept = [r.id for r in read_stage(spark, result.output_dir / "02-select_budget").select("id").collect()]
    assert kept and all(i.startswith("p") for i in kept)
