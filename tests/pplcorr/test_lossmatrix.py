"""Loss-matrix builder: real tiny GPT-2 models in HF format, a byte-level BPE tokenizer trained here
(the builders ``train_tokenizer`` and ``save_tiny_lm`` are in helpers.py)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate.core import CurateError
from curate.integrity import write_sidecar
from curate.pplcorr import lossmatrix as lm

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from helpers import LM_CONTEXT as CONTEXT  # noqa: E402
from helpers import save_tiny_lm, train_tokenizer  # noqa: E402

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Überraschung: naïve café façade — 東京 and emoji-free bytes.",
    "def add(a, b):\n    return a + b\n" * 4,
    "Short.",
    "A longer paragraph about markets, wheat prices and shipping rates. " * 12,
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids heavy oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(one_torch_thread, tmp_path_factory):
    """Two tiny models sharing one tokenizer: ``a`` (trained 30 steps) and ``b`` (untrained)."""
    root = tmp_path_factory.mktemp("tiny_lms")
    tokenizer = train_tokenizer(TEXTS * 5, root / "tok")
    return {"a": save_tiny_lm(tokenizer, TEXTS, root / "a", steps=30),
            "b": save_tiny_lm(tokenizer, TEXTS, root / "b", steps=0, seed=1)}


@pytest.mark.parametrize("context,stride", [(4, 1), (4, 3), (8, 4), (16, 15)])
def test_windows_score_every_token_once_with_enough_history(context, stride):
    for length in range(1, 40):
        ids = list(range(length))
        seen = []
        for window, n in lm.windows(ids, context, stride):
            assert 1 <= len(window) <= context and 1 <= n < len(window) + 1
            first = window[0]
            targets = window[len(window) - n:]
            assert targets[0] - first >= min(targets[0], context - stride)  # history before the first target
            seen += targets
        assert seen == ids[1:]


def test_losses_match_hf_loss_and_do_not_depend_on_batching(tiny):
    model, tok = lm.load_causal_lm(tiny["a"], "cpu")
    text = TEXTS[0]
    ids = torch.tensor([lm.encode(tok, text)])
    assert ids.shape[1] <= CONTEXT
    with torch.inference_mode():
        hf_total = model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
    nll, count = lm.text_losses(model, tok, [text], batch_size=1)
    assert count[0] == ids.shape[1] - 1
    assert nll[0] == pytest.approx(hf_total, rel=1e-5)
    # Padding in mixed-length batches must not change any text's loss.
    one = lm.text_losses(model, tok, TEXTS, batch_size=1, max_length=16, stride=8)
    many = lm.text_losses(model, tok, TEXTS, batch_size=7, max_length=16, stride=8)
    np.testing.assert_allclose(one[0], many[0], rtol=1e-5)
    np.testing.assert_array_equal(one[1], many[1])
    # Chunking scores every token exactly once: counts equal the unchunked ones.
    full = lm.text_losses(model, tok, TEXTS, batch_size=4)
    np.testing.assert_array_equal(full[1], one[1])
    assert one[1].tolist() == [len(lm.encode(tok, t)) - 1 for t in TEXTS]


def test_bits_per_byte_uses_utf8_bytes(tiny, tmp_path):
    docs = pd.DataFrame({"id": ["a", "b"], "text": TEXTS[:2]})
    out = lm.build_matrix(docs, [lm.ModelSpec("a", tiny["a"])], tmp_path / "m.parquet", device="cpu",
                          log=lambda _: None)
    model, tok = lm.load_causal_lm(tiny["a"], "cpu")
    nll, _ = lm.text_losses(model, tok, TEXTS[:2])
    n_bytes = [len(t.encode("utf-8")) for t in TEXTS[:2]]
    assert n_bytes[1] > len(TEXTS[1]) and out["bytes"].tolist() == n_bytes  # bytes, not characters
    np.testing.assert_allclose(out["bpb:a"], nll / (math.log(2) * np.array(n_bytes)), rtol=1e-9)
    assert out["tokens:a"].tolist() == [len(lm.encode(tok, t)) - 1 for t in TEXTS[:2]]


def test_spark_workers_give_the_single_process_matrix(tiny, tmp_path, spark):
    docs = pd.DataFrame({"id": [f"d{i}" for i in range(len(TEXTS))], "text": TEXTS})
    specs = [lm.ModelSpec("a", tiny["a"])]
    local = lm.build_matrix(docs, specs, tmp_path / "local.parquet", device="cpu", max_length=16, log=lambda _: None)
    on_spark = lm.build_matrix(docs, specs, tmp_path / "spark.parquet", device="cpu", max_length=16, spark=spark,
                               log=lambda _: None)
    pd.testing.assert_frame_equal(local, on_spark, rtol=1e-6)


def test_trained_model_has_lower_bpb_than_untrained(tiny):
    docs = pd.DataFrame({"id": [f"d{i}" for i in range(len(TEXTS))], "text": TEXTS})
    matrix = lm.build_matrix(docs, [lm.ModelSpec("a", tiny["a"]), lm.ModelSpec("b", tiny["b"])],
                             Path(tiny["a"]).parent / "m.parquet", device="cpu", log=lambda _: None)
    assert (matrix["bpb:a"] < matrix["bpb:b"]).all()
    assert (matrix["bpb:b"] > 1.0).all()  # a random model: about log2(vocab)/bytes-per-token bits


def test_build_matrix_resumes_per_model_and_refuses_other_texts(tiny, tmp_path):
    docs = pd.DataFrame({"id": ["x2", "x1", "x3"], "text": TEXTS[:3]})
    out = tmp_path / "matrix.parquet"
    first = lm.build_matrix(docs, [lm.ModelSpec("a", tiny["a"])], out, device="cpu", log=lambda _: None)
    assert first["id"].tolist() == ["x1", "x2", "x3"]  # sorted by id: same file whatever the input order
    saved = pd.read_parquet(out)
    saved.loc[0, "bpb:a"] = 123.0  # a marker: a recomputed column would lose it
    saved.to_parquet(out, index=False)
    logs = []
    both = lm.build_matrix(docs, [lm.ModelSpec("a", tiny["a"]), lm.ModelSpec("b", tiny["b"])], out,
                           device="cpu", log=logs.append)
    assert both.loc[0, "bpb:a"] == 123.0 and "bpb:b" in both.columns
    assert any("skipped" in line for line in logs)
    assert lm.model_names(pd.read_parquet(out)) == ["a", "b"]
    with pytest.raises(CurateError, match="other texts"):
        lm.build_matrix(docs.iloc[:2], [lm.ModelSpec("a", tiny["a"])], out, device="cpu")


def test_model_dirs_are_checked_before_loading(tiny, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((Path(tiny["a"]) / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CurateError, match="safetensors"):
        lm.load_causal_lm(pickled, "cpu")
    with pytest.raises(CurateError, match="config.json"):
        lm.load_causal_lm(tmp_path, "cpu")
    weights = next(Path(tiny["b"]).glob("*.safetensors"))
    sidecar = weights.with_name(weights.name + ".sha256")
    sidecar.write_text("0" * 64 + "  model.safetensors\n")
    try:
        with pytest.raises(CurateError, match="sha256"):
            lm.load_causal_lm(Path(tiny["b"]), "cpu")
        sidecar.unlink()
        with pytest.raises(CurateError, match="no sha256 sidecar"):
            lm.load_causal_lm(Path(tiny["b"]), "cpu")
    finally:
        write_sidecar(weights)
    lm.load_causal_lm(Path(tiny["b"]), "cpu")


def test_domain_aggregate_is_token_weighted():
    matrix = pd.DataFrame({"id": ["a", "b", "c"], "source": ["s", "s", "t"], "bytes": [100, 300, 50],
                           "bpb:m": [1.0, 2.0, 0.5], "tokens:m": [30, 70, 10]})
    dom = lm.aggregate_domains(matrix, "source")
    assert dom["id"].tolist() == ["s", "t"]
    assert dom["bytes"].tolist() == [400, 50] and dom["tokens:m"].tolist() == [100, 10]
    assert dom["docs"].tolist() == [2, 1]
    # Σ bits / Σ bytes = (100·1 + 300·2) / 400
    np.testing.assert_allclose(dom["bpb:m"], [700 / 400, 0.5])
    with pytest.raises(CurateError, match="domain column"):
        lm.aggregate_domains(matrix, "lang")


def test_read_errors_both_layouts(tmp_path, shared_data):
    simple = tmp_path / "y.csv"
    simple.write_text("model,error\nm1,0.3\nm2,0.7\n")
    assert lm.read_errors(simple) == {"m1": 0.3, "m2": 0.7}
    wide = shared_data / "tables" / "perplexity_correlations_error.csv"
    errors = lm.read_errors(wide, "arc_easy")
    # 90 columns, one model (LLM360/Amber) listed under two orgs with equal values: 89 models.
    assert len(errors) == 89 and all(0 < v < 1 for v in errors.values())
    assert errors["LLM360/Amber"] == pytest.approx(0.297138, abs=1e-6)
    with pytest.raises(CurateError, match="choose a benchmark"):
        lm.read_errors(wide)
    with pytest.raises(CurateError, match="valid: arc_easy"):
        lm.read_errors(wide, "hellaswag")


def test_align_requires_an_error_for_every_model():
    matrix = pd.DataFrame({"id": ["a"], "bytes": [1], **{f"bpb:m{i}": [1.0] for i in range(3)}})
    X, y, names = lm.align(matrix, {"m0": 0.1, "m1": 0.2, "m2": 0.3, "other": 0.9})
    assert X.shape == (3, 1) and names == ["m0", "m1", "m2"] and y.tolist() == [0.1, 0.2, 0.3]
    with pytest.raises(CurateError, match="m2"):
        lm.align(matrix, {"m0": 0.1, "m1": 0.2})


def test_cli_ppl_matrix_builds_resumes_and_fails_clearly(tiny, tmp_path):
    from click.testing import CliRunner

    from curate.cli import main

    sample = tmp_path / "sample.jsonl"
    pd.DataFrame({"id": ["d1", "d2", "d3"], "text": TEXTS[:3], "source": ["s", "s", "t"]}).to_json(
        sample, orient="records", lines=True)
    out = tmp_path / "m.parquet"
    args = ["ppl-matrix", "--models", f"a={tiny['a']}", f"b={tiny['b']}", "--input", str(sample),
            "-o", str(out), "--domain-column", "source", "--device", "cpu", "--max-length", "16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 texts × 2 models" in result.output
    matrix = pd.read_parquet(out)
    assert list(matrix.columns) == ["id", "source", "bytes", "bpb:a", "tokens:a", "bpb:b", "tokens:b"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("skipped") == 2
    missing = CliRunner().invoke(main, ["ppl-matrix", "--models", str(tmp_path), "--input", str(sample),
                                        "-o", str(tmp_path / "x.parquet"), "--device", "cpu"])
    assert missing.exit_code != 0 and "config.json" in missing.output
