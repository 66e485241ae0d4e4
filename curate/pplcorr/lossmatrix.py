"""Bits-per-byte of texts under local causal LMs: the X matrix of perplexity correlations.

bpb = Σ token NLL (nats) / (ln 2 · UTF-8 bytes) = (tokens / bytes) · mean token loss / ln 2
(Thrush et al. 2024, arXiv:2409.05816, §4: bpb normalises across tokenizers).

Models are local Hugging Face directories loaded with ``AutoModelForCausalLM`` from safetensors
only, ``local_files_only=True`` and no remote code. Every weights file must match its
``<file>.sha256`` sidecar before anything is loaded. Long texts are scored in windows of the model's context that
advance by ``stride`` tokens, so every token is scored exactly once with at least
``context − stride`` tokens of history. bf16 on CUDA, float32 on CPU.

The matrix file is one row per document (``id``, ``bytes``, carried ``domain``) and, per model
``m``, the columns ``bpb:m`` and ``tokens:m``. It is rewritten atomically after each model, so an
interrupted build resumes at the first model without a column.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from curate.core import CurateError
from curate.integrity import atomic_file, verify_file

BPB = "bpb:"
TOKENS = "tokens:"
BYTES = "bytes"
LN2 = math.log(2)


@dataclass(frozen=True)
class ModelSpec:
    """A model to score with: ``name`` labels its matrix columns and its row in the y CSV."""

    name: str
    path: Path


def parse_model(spec: str, base: Path | None = None) -> ModelSpec:
    """``NAME=PATH`` or ``PATH`` (the name is then the directory's name)."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = "", spec
    p = Path(path).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    return ModelSpec(name or p.resolve().name, p.resolve())


def model_names(matrix: pd.DataFrame) -> list[str]:
    """Models with a bits-per-byte column in ``matrix``, in column order."""
    return [c[len(BPB):] for c in matrix.columns if c.startswith(BPB)]


def check_model_dir(path: Path) -> list[Path]:
    """Fail clearly unless ``path`` is a HF model dir whose safetensors weights match their sidecars."""
    if not (path / "config.json").is_file():
        raise CurateError(f"{path}: not a Hugging Face model directory (no config.json)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CurateError(f"{path}: no *.safetensors weights (pickled .bin/.pt weights are refused)")
    for w in weights:
        verify_file(w, what="model weights")
    return weights


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(path: Path, device: str | None = None):
    """Load (model, tokenizer) from a local HF dir: safetensors, no network, no remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_dir(path)
    device = device or default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=dtype
    )
    return model.to(device).eval(), tokenizer


def context_length(model, tokenizer, max_length: int | None) -> int:
    """The window size: ``max_length`` if given, else the model's positions (capped by the tokenizer's)."""
    if max_length:
        return int(max_length)
    limits = [getattr(model.config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if isinstance(x, int) and 1 < x < 1_000_000]
    if not limits:
        raise CurateError("cannot tell the model's context length; pass max_length")
    return min(limits)


def windows(ids: Sequence[int], context: int, stride: int) -> Iterable[tuple[list[int], int]]:
    """Split ``ids`` into (window, n_scored): each target position 1..len−1 is scored in exactly one window."""
    scored_until = 1  # position 0 has no history; it is only context
    start = 0
    while scored_until < len(ids):
        end = min(start + context, len(ids))
        yield list(ids[start:end]), end - scored_until
        scored_until = end
        start = max(0, min(start + stride, len(ids) - context))
        if end == len(ids):
            break


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with the BOS (or end-of-text) token in front, so the first token is scored."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    lead = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return ([lead] if lead is not None else []) + list(ids)


def text_losses(model, tokenizer, texts: Sequence[str], *, max_length: int | None = None,
                stride: int | None = None, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per text: (Σ token NLL in nats, number of scored tokens)."""
    import torch

    context = context_length(model, tokenizer, max_length)
    stride = min(int(stride or context // 2), context - 1) if context > 1 else 1
    stride = max(stride, 1)
    items = [(i, w, n) for i, t in enumerate(texts) for w, n in windows(encode(tokenizer, t), context, stride)]
    items.sort(key=lambda item: (len(item[1]), item[0]))  # similar lengths per batch: little padding
    nll = np.zeros(len(texts), dtype=np.float64)
    count = np.zeros(len(texts), dtype=np.int64)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            batch = items[lo:lo + batch_size]
            for (i, _, n), loss in zip(batch, _window_nll(model, batch, device)):
                nll[i] += loss
                count[i] += n
    return nll, count


def _window_nll(model, batch, device) -> list[float]:
    """Σ NLL over the last ``n`` targets of each window in one padded forward pass."""
    import torch
    import torch.nn.functional as F

    width = max(len(w) for _, w, _ in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width - 1), dtype=torch.bool)
    for row, (_, w, n) in enumerate(batch):
        ids[row, :len(w)] = torch.tensor(w)
        mask[row, :len(w)] = 1
        scored[row, len(w) - 1 - n:len(w) - 1] = True  # targets w[len−n:], predicted from positions before
    ids, mask, scored = ids.to(device), mask.to(device), scored.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    losses = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return (losses * scored).sum(dim=1).double().cpu().tolist()


def bits_per_byte(nll_nats, n_bytes) -> np.ndarray:
    return np.asarray(nll_nats, dtype=np.float64) / (LN2 * np.asarray(n_bytes, dtype=np.float64))


def utf8_bytes(texts: Iterable[str]) -> np.ndarray:
    return np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)


def check_texts(docs: pd.DataFrame) -> None:
    if not {"id", "text"} <= set(docs.columns):
        raise CurateError(f"sample needs 'id' and 'text' columns, has {list(docs.columns)}")
    if docs["id"].duplicated().any():
        raise CurateError("sample ids must be unique")
    empty = docs["text"].fillna("").str.len() == 0
    if empty.any():
        raise CurateError(f"{int(empty.sum())} sample texts are empty (bpb undefined); filter them first")


def build_matrix(docs: pd.DataFrame, models: Sequence[ModelSpec], out: Path, *,
                 carry: Sequence[str] = (), device: str | None = None, max_length: int | None = None,
                 stride: int | None = None, batch_size: int = 8, spark=None, log=print) -> pd.DataFrame:
    """Score ``docs`` (id, text, …) under each model into ``out``; models already in ``out`` are skipped.

    Scoring runs in this process (one GPU, or the CPU), or with ``spark`` on the executors, where
    each Python worker loads a model once and scores its share of the sample (large samples).
    """
    check_texts(docs)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise CurateError(f"model names must be unique, got {names}; use NAME=PATH")
    docs = docs.sort_values("id", kind="stable").reset_index(drop=True)
    base = docs[["id", *carry]].assign(**{BYTES: utf8_bytes(docs["text"])})
    matrix = _resume(base, out)
    options = {"max_length": max_length, "stride": stride, "batch_size": batch_size}
    for spec in models:
        if BPB + spec.name in matrix.columns:
            log(f"{spec.name}: already in {out}, skipped")
            continue
        log(f"{spec.name}: scoring {len(docs)} texts from {spec.path}")
        if spark is None:
            model, tokenizer = load_causal_lm(spec.path, device)
            nll, tokens = text_losses(model, tokenizer, docs["text"].tolist(), **options)
        else:
            nll, tokens = spark_text_losses(spark, docs, spec, device=device, **options)
        matrix[BPB + spec.name] = bits_per_byte(nll, matrix[BYTES])
        matrix[TOKENS + spec.name] = tokens
        write_atomic(matrix, out)
    if not out.exists():
        write_atomic(matrix, out)
    return matrix


_WORKER_MODEL: dict[tuple[str, str | None], tuple] = {}


def _worker_model(path: str, device: str | None):
    """The model for this Python worker, loaded once (one model held at a time)."""
    key = (path, device)
    if key not in _WORKER_MODEL:
        _WORKER_MODEL.clear()
        _WORKER_MODEL[key] = load_causal_lm(Path(path), device)
    return _WORKER_MODEL[key]


def spark_text_losses(spark, docs: pd.DataFrame, spec: ModelSpec, *, device: str | None = None,
                      **options) -> tuple[np.ndarray, np.ndarray]:
    """:func:`text_losses` of ``docs`` (sorted by id) computed on Spark executors, one model per worker."""
    check_model_dir(spec.path)  # fail on the driver, not in every task
    path = str(spec.path)

    def score(batches):
        model, tokenizer = _worker_model(path, device)
        for batch in batches:
            nll, tokens = text_losses(model, tokenizer, batch["text"].tolist(), **options)
            yield pd.DataFrame({"id": batch["id"], "nll": nll, "tokens": tokens})

    frame = spark.createDataFrame(docs[["id", "text"]])
    scored = frame.mapInPandas(score, "id string, nll double, tokens long").toPandas()
    aligned = docs[["id"]].merge(scored, on="id", how="left", validate="one_to_one")
    return aligned["nll"].to_numpy(), aligned["tokens"].to_numpy(dtype=np.int64)


def _resume(base: pd.DataFrame, out: Path) -> pd.DataFrame:
    if not out.exists():
        return base
    existing = pd.read_parquet(out)
    if existing["id"].tolist() != base["id"].tolist():
        raise CurateError(f"{out} was built for other texts; remove it or choose another output")
    return existing


def write_atomic(df: pd.DataFrame, out: Path) -> None:
    with atomic_file(out) as tmp:
        df.to_parquet(tmp, index=False)


def aggregate_domains(matrix: pd.DataFrame, domain: str) -> pd.DataFrame:
    """One row per domain: bytes and tokens summed, bpb = Σ NLL / (ln 2 · Σ bytes) (token-weighted loss)."""
    if domain not in matrix.columns:
        raise CurateError(f"matrix has no domain column '{domain}'; columns: {list(matrix.columns)}")
    names = model_names(matrix)
    nll = {m: matrix[BPB + m] * matrix[BYTES] for m in names}  # in bits
    frame = pd.DataFrame({"id": matrix[domain].astype(str), BYTES: matrix[BYTES], "docs": 1,
                          **{TOKENS + m: matrix[TOKENS + m] for m in names},
                          **{"_bits:" + m: nll[m] for m in names}})
    sums = frame.groupby("id", sort=True).sum().reset_index()
    for m in names:
        sums[BPB + m] = sums.pop("_bits:" + m) / sums[BYTES]
    return sums[["id", BYTES, "docs", *[c for m in names for c in (BPB + m, TOKENS + m)]]]


def read_errors(path: Path, benchmark: str | None = None) -> dict[str, float]:
    """Benchmark error per model from a CSV.

    Either two columns ``model,error`` (one row per model), or a wide table with a ``benchmark``
    column (one row per benchmark, one column per model, as the perplexity-correlations
    ``error.csv``), from which the row ``benchmark`` is taken. Column labels written as
    ``('org', 'repo/name')`` are keyed by ``repo/name``.
    """
    if not Path(path).is_file():
        raise CurateError(f"benchmark-error CSV not found: {path}")
    table = pd.read_csv(path)
    if {"model", "error"} <= set(table.columns):
        if table["model"].duplicated().any():
            raise CurateError(f"{path}: duplicate model names")
        errors = dict(zip(table["model"].astype(str), table["error"].astype(float)))
    elif "benchmark" in table.columns:
        if benchmark is None:
            raise CurateError(f"{path} is a wide table; choose a benchmark: {', '.join(table['benchmark'])}")
        row = table[table["benchmark"] == benchmark]
        if len(row) != 1:
            raise CurateError(f"benchmark '{benchmark}' not in {path}; valid: {', '.join(table['benchmark'])}")
        errors = {}
        for column, value in row.drop(columns="benchmark").iloc[0].items():
            label = _model_label(column)
            if pd.isna(value):
                continue
            if label in errors and errors[label] != float(value):
                raise CurateError(f"{path}: model '{label}' has two different errors for {benchmark}")
            errors[label] = float(value)  # the same model listed under two orgs: one entry
    else:
        raise CurateError(f"{path}: expected columns model,error or a 'benchmark' column")
    return errors


def _model_label(column: str) -> str:
    text = column.strip()
    if text.startswith("(") and text.endswith(")"):
        parts = [p.strip().strip("'\"") for p in text[1:-1].split(",")]
        return parts[-1]
    return text


def align(matrix: pd.DataFrame, errors: dict[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X: models × texts, y, model names) for the models present in both matrix and y."""
    names = [m for m in model_names(matrix) if m in errors]
    missing = sorted(set(model_names(matrix)) - set(errors))
    if missing:
        raise CurateError(f"no benchmark error for model(s) {', '.join(missing)} in the y CSV")
    if len(names) < 3:
        raise CurateError(f"need at least 3 models with both bpb and error, have {len(names)}")
    X = np.stack([matrix[BPB + m].to_numpy(dtype=np.float64) for m in names])
    y = np.array([errors[m] for m in names], dtype=np.float64)
    return X, y, names


def multiple_choice_error(model, tokenizer, questions: Sequence[dict], *, batch_size: int = 16,
                          length_normalized: bool = True) -> float:
    """1 − accuracy by log-likelihood multiple choice: each ``{"query", "choices", "gold"}`` is
    answered by the choice with the highest (per-byte, if ``length_normalized``) log-likelihood
    after the query, as in the lm-evaluation-harness ``acc_norm`` scheme."""
    import torch

    context = context_length(model, tokenizer, None)
    items, units = [], []
    for question in questions:
        prefix = encode(tokenizer, question["query"])
        for choice in question["choices"]:
            cont = tokenizer(" " + choice, add_special_tokens=False)["input_ids"][: context - 1]
            window = (prefix + cont)[-context:]
            items.append((len(items), window, len(cont)))
            units.append(len(choice.encode("utf-8")) if length_normalized else 1)
    device = next(model.parameters()).device
    nll = np.zeros(len(items))
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            nll[lo:lo + batch_size] = _window_nll(model, items[lo:lo + batch_size], device)
    scores = nll / np.array(units, dtype=np.float64)
    correct, cursor = 0, 0
    for question in questions:
        k = len(question["choices"])
        correct += int(np.argmin(scores[cursor:cursor + k]) == int(question["gold"]))
        cursor += k
    return 1.0 - correct / max(len(questions), 1)
