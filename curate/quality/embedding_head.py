"""Label -> classifier on frozen embeddings (the FineWeb-Edu recipe, Penedo et al. 2024), with
fastText (Joulin et al. 2017) trained on the same labels and compared on the same held-out split.

FineWeb-Edu annotated documents with an LLM's 0–5 educational score and fitted a regression head
on frozen embeddings. Here the encoder is the bundled all-MiniLM-L6-v2 (mean pooling, unit
vectors — the same vectors as the ``embed`` stage) and the head is linear (logistic regression /
least squares) or a one-hidden-layer ReLU MLP, trained full-batch with Adam in torch.

Labels: numbers => regression (the value), strings => classes (``task`` overrides: integer
labels may be classes too). The model is saved as a directory ``hf_classify`` scores: the
encoder's files, ``head.safetensors``, ``curate_head.json`` (task, labels, window, pooling) and
``report.json``, all listed in ``SHA256SUMS``. fastText is saved beside it (``<dir>.fasttext.bin``
with its sidecar); for regression it learns the rounded values as classes and predicts the
expected value.
"""
from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from curate.core import CurateError
from curate.integrity import atomic_dir
from curate.quality.classifier import LABEL_PREFIX, fit_rows, normalize_line, roc_auc
from curate.quality.hf_models import (
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    MANIFEST,
    PICKLE_WEIGHTS,
    LoadedModel,
    encode_texts,
    head_logits,
    probabilities,
    write_manifest,
)

TASKS = ("auto", "classification", "regression")
REPORT = "report.json"


# ---------------------------------------------------------------- labelled data

def read_labelled(path: str | Path, *, text_field: str = "text", label_field: str = "label") -> tuple[list[str], list]:
    """(texts, labels) of a JSONL file; a line without text or label is a one-line CurateError."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CurateError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str) or row.get(label_field) is None:
                raise CurateError(f"{path}:{n}: needs a string '{text_field}' and a '{label_field}'")
            texts.append(row[text_field])
            labels.append(row[label_field])
    return texts, labels


def infer_task(labels: Sequence, task: str = "auto") -> str:
    """``regression`` for numeric labels, ``classification`` for strings (``task`` overrides)."""
    if task not in TASKS:
        raise CurateError(f"task must be one of {', '.join(TASKS)}, got '{task}'")
    numeric = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels]
    if task == "regression" and not all(numeric):
        raise CurateError("regression needs numeric labels")
    if task != "auto":
        return task
    if all(numeric):
        return "regression"
    if any(numeric) or not all(isinstance(v, str) for v in labels):
        raise CurateError("labels mix numbers and other values; use all numbers or all class names (strings)")
    return "classification"


def class_names(labels: Sequence) -> list[str]:
    """Sorted class names (numerically when they are all numbers)."""
    names = {_name(v) for v in labels}
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _name(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: a seeded permutation, ``round(holdout * n)`` (>= 1) held out."""
    if not 0 < holdout < 1:
        raise CurateError(f"holdout must be in (0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(holdout * n))
    if n - n_test < 2:
        raise CurateError(f"need at least {n_test + 2} labelled documents for holdout {holdout}, got {n}")
    return np.sort(order[n_test:]), np.sort(order[:n_test])


# ---------------------------------------------------------------- the head

def train_head(x: np.ndarray, y: np.ndarray, *, task: str, n_classes: int = 1, hidden: int = 0,
               epochs: int = 300, lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0) -> dict:
    """Head tensors (see :func:`curate.quality.hf_classify.head_logits`) fitted full-batch with
    AdamW: cross-entropy over ``n_classes`` (``y`` class indices) or squared error (``y`` values)."""
    import torch

    torch.manual_seed(seed)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outputs = 1 if task == "regression" else n_classes
    layers = ([torch.nn.Linear(inputs.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, outputs)]
              if hidden else [torch.nn.Linear(inputs.shape[1], outputs)])
    net = torch.nn.Sequential(*layers)
    if task == "regression":
        target = torch.from_numpy(np.asarray(y, dtype=np.float32)).unsqueeze(1)
        with torch.no_grad():
            net[-1].bias.fill_(float(target.mean()))
        loss_fn = torch.nn.functional.mse_loss
    else:
        target = torch.from_numpy(np.asarray(y, dtype=np.int64))
        loss_fn = torch.nn.functional.cross_entropy
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(net(inputs), target).backward()
        optimizer.step()
    names = ("hidden.weight", "hidden.bias", "out.weight", "out.bias") if hidden else ("weight", "bias")
    params = [p.detach().clone().contiguous() for p in net.parameters()]
    return dict(zip(names, params))


def predict_head(x: np.ndarray, tensors: dict, task: str) -> np.ndarray:
    """Probabilities (n, classes) or values (n, 1) of the head on embeddings ``x``."""
    import torch

    with torch.inference_mode():
        logits = head_logits(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), tensors)
    return probabilities(logits.numpy(), task)


# ---------------------------------------------------------------- metrics

def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    out = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    for start, end in zip(starts, np.r_[starts[1:], len(values)]):
        out[order[start:end]] = (start + end + 1) / 2.0
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson on average ranks); NaN when one side is constant."""
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def regression_metrics(predicted: Sequence[float], truth: Sequence[float]) -> dict:
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    return {"rmse": float(math.sqrt(np.mean((predicted - truth) ** 2))), "spearman": spearman(predicted, truth),
            "baseline_rmse": float(truth.std()), "n": int(len(truth))}


def classification_metrics(probs: np.ndarray, truth: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class F1 (and ROC-AUC of the second class for two classes)."""
    truth = np.asarray(truth, dtype=np.int64)
    predicted = probs.argmax(axis=1)
    per_class = {}
    for k, name in enumerate(classes):
        tp = int(((predicted == k) & (truth == k)).sum())
        fp = int(((predicted == k) & (truth != k)).sum())
        fn = int(((predicted != k) & (truth == k)).sum())
        per_class[name] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    out = {"accuracy": float((predicted == truth).mean()), "macro_f1": float(np.mean(list(per_class.values()))),
           "f1": per_class, "n": int(len(truth))}
    if len(classes) == 2:
        out["roc_auc"] = roc_auc(probs[:, 1], truth == 1)
    return out


def evaluate(probs: np.ndarray, task: str, truth: np.ndarray, classes: Sequence[str]) -> dict:
    if task == "regression":
        return regression_metrics(probs[:, 0], truth)
    return classification_metrics(probs, truth, classes)


# ---------------------------------------------------------------- fastText on the same split

def fasttext_side(texts: Sequence[str], targets: np.ndarray, train: np.ndarray, test: np.ndarray, *, task: str,
                  classes: Sequence[str], out_path: Path, seed: int, hyper: dict) -> dict:
    """Train fastText on the ``train`` rows and evaluate it on the ``test`` rows (same metrics).

    Regression values are learnt as rounded classes; the prediction is the expected value."""
    names = ([_name(float(round(v))) for v in targets] if task == "regression"
             else [classes[int(k)] for k in targets])
    lines = [normalize_line(t) for t in texts]
    rows = [(names[i], lines[i]) for i in train if lines[i]]
    random.Random(f"{seed}:order").shuffle(rows)
    if len({label for label, _ in rows}) < 2:
        raise CurateError("fastText needs at least two distinct labels in the training split")
    params = {"epoch": 5, "lr": 0.1, "dim": 100, "word_ngrams": 2, "min_count": 1, "bucket": 2_000_000,
              **hyper, "threads": 1, "seed": seed}
    model, digest = fit_rows(rows, out_path, params)
    got, probs = model.predict([lines[i] for i in test], k=-1)
    labels = [label.removeprefix(LABEL_PREFIX) for label in model.get_labels()]
    table = np.zeros((len(test), len(labels)), dtype=np.float64)
    for row, (ls, ps) in enumerate(zip(got, probs)):
        for label, p in zip(ls, ps):
            table[row, labels.index(label.removeprefix(LABEL_PREFIX))] = p
    if task == "regression":
        values = np.asarray([float(label) for label in labels])
        predicted = (table @ values)[:, None]
    else:  # columns in the head's class order (a class absent from the training split scores 0)
        predicted = np.stack([table[:, labels.index(c)] if c in labels else np.zeros(len(test)) for c in classes], 1)
    return {"model": out_path.name, "sha256": digest, "hyperparameters": params,
            "metrics": evaluate(predicted, task, targets[test], classes)}


# ---------------------------------------------------------------- the whole recipe

def train_embedding_head(texts: Sequence[str], labels: Sequence, out_dir: str | Path, *, encoder: LoadedModel,
                         encoder_dir: str | Path, encoder_name: str, task: str = "auto", hidden: int = 0,
                         epochs: int = 300, lr: float = 0.01, weight_decay: float = 1e-4, holdout: float = 0.2,
                         seed: int = 0, batch_size: int = 64, fasttext: dict | None = None,
                         metadata: dict | None = None) -> dict:
    """Embed ``texts`` with the frozen ``encoder``, fit the head on the training split, evaluate it
    and fastText on the same held-out split, write the model directory; return the report."""
    if len(texts) != len(labels):
        raise CurateError(f"{len(texts)} texts but {len(labels)} labels")
    task = infer_task(labels, task)
    classes = [] if task == "regression" else class_names(labels)
    if task == "classification" and len(classes) < 2:
        raise CurateError(f"classification needs at least two classes, got {classes}")
    targets = (np.asarray(labels, dtype=np.float64) if task == "regression"
               else np.asarray([classes.index(_name(v)) for v in labels], dtype=np.int64))
    train, test = split_indices(len(texts), holdout, seed)
    vectors = encode_texts(texts, encoder, batch_size=batch_size)
    tensors = train_head(vectors[train], targets[train], task=task, n_classes=len(classes), hidden=hidden,
                         epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)
    head_probs = predict_head(vectors[test], tensors, task)
    out_dir = Path(out_dir)
    fasttext_report = fasttext_side(texts, targets, train, test, task=task, classes=classes,
                                    out_path=out_dir.with_name(out_dir.name + ".fasttext.bin"), seed=seed,
                                    hyper=fasttext or {})
    spec = {"kind": "embedding-head", "task": task, "labels": classes, "max_length": encoder.max_length,
            "pooling": "mean", "normalize": True, "hidden": hidden, "encoder": encoder_name}
    report = {**spec, "split": {"seed": seed, "holdout": holdout, "train": int(len(train)), "test": int(len(test))},
              "embedding_head": {"hyperparameters": {"hidden": hidden, "epochs": epochs, "lr": lr,
                                                     "weight_decay": weight_decay, "seed": seed},
                                 "metrics": evaluate(head_probs, task, targets[test], classes)},
              "fasttext": fasttext_report, "held_out_rows": [int(i) for i in test], **(metadata or {})}
    report = _finite(report)
    save_head_dir(out_dir, encoder_dir, tensors, spec, report)
    return report


def save_head_dir(out_dir: Path, encoder_dir: str | Path, tensors: dict, spec: dict, report: dict) -> None:
    """The model directory, written atomically: encoder files (no pickle weights), head, spec, report, manifest."""
    from safetensors.torch import save_file

    encoder_dir = Path(encoder_dir)
    with atomic_dir(out_dir) as tmp:
        for src in sorted(p for p in encoder_dir.rglob("*") if p.is_file()):
            rel = src.relative_to(encoder_dir)
            if src.name.endswith(PICKLE_WEIGHTS + (".sha256",)) or src.name in (MANIFEST, "README.md"):
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
        save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(tmp / HEAD_WEIGHTS))
        (tmp / HEAD_CONFIG).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_manifest(tmp)


def _finite(value: Any) -> Any:
    """NaN/inf -> None so the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
