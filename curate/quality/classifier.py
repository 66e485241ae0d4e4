"""fastText quality classifiers: train, verify, load and score (pure Python, no Spark).

The recipe follows DCLM (Li et al. 2024, "DataComp-LM"): a supervised fastText model
(Joulin et al. 2017) over word uni+bigrams, trained on a balanced set of positive ("hq")
and negative ("lq") documents, each folded to one line. The same :func:`normalize_line`
runs at train and at score time; its settings are saved beside the model in
``<model>.json`` together with held-out metrics and the model's sha256, and the sha256
also goes to ``<model>.sha256`` (``sha256sum`` format). :func:`load_classifier` refuses a file
whose hash differs from its sidecar: a corrupted fastText ``.bin`` can crash the process
at predict time instead of failing to load (fastText issue #1087).

Other modules use :func:`train_classifier`, :func:`load_classifier` and
:meth:`Classifier.predict_proba`; the ``fasttext_score`` stage is the Spark wrapper.
"""
from __future__ import annotations

import json
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from curate.core import CurateError
from curate.integrity import atomic_file, load_fasttext, write_sidecar, write_text_atomic
from curate.io import fs

DEFAULT_MAX_CHARS = 100_000
LABEL_PREFIX = "__label__"
# DCLM's baselines/train_fasttext_classifier.py defaults, with wordNgrams=2 as in the paper.
# ``bucket`` is fastText's default hash-table size for n-grams (the .bin is about bucket*dim*4 bytes).
DCLM_HYPERPARAMETERS = {"epoch": 5, "lr": 0.1, "dim": 100, "word_ngrams": 2, "min_count": 1, "bucket": 2_000_000}


def normalize_line(text: str | None, *, lowercase: bool = False, max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """Fold ``text`` to one line: whitespace runs (newlines included) become one space,
    optionally lowercased, cut to ``max_chars`` characters (None: no cap)."""
    if not text:
        return ""
    if max_chars is not None:
        text = text[: 4 * max_chars]  # bound the work on huge documents before folding
    line = " ".join(text.split())  # str.split(): every Unicode whitespace run, newlines included
    if lowercase:
        line = line.lower()
    return line[:max_chars] if max_chars is not None else line


def metadata_path(model_path: str | Path) -> Path:
    """``MODEL.bin`` -> ``MODEL.bin.json`` (training report and normalization settings)."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


# ---------------------------------------------------------------- loading and scoring

@dataclass(frozen=True)
class Classifier:
    """A verified fastText model plus the text normalization it was trained with."""

    model: Any
    path: str
    sha256: str
    labels: tuple[str, ...]
    lowercase: bool = False
    max_chars: int | None = DEFAULT_MAX_CHARS

    def normalize_line(self, text: str | None) -> str:
        """:func:`normalize_line` with the settings this model was trained with."""
        return normalize_line(text, lowercase=self.lowercase, max_chars=self.max_chars)

    def check_label(self, label: str) -> None:
        if label not in self.labels:
            raise CurateError(f"label '{label}' is not in model {self.path}; its labels: {', '.join(self.labels)}")

    def predict_proba(self, texts: Sequence[str | None], label: str = "hq") -> np.ndarray:
        """Probability of ``label`` for each text (float64), one batched fastText call."""
        self.check_label(label)
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float64)
        wanted = LABEL_PREFIX + label
        labels, probs = self.model.predict([self.normalize_line(t) for t in texts], k=-1)
        return np.fromiter(
            (p[ls.index(wanted)] if wanted in ls else 0.0 for ls, p in zip(labels, probs)),
            dtype=np.float64, count=len(texts))


def load_classifier(path: str | Path) -> Classifier:
    """A fastText classifier, loaded only after its sha256 matches ``<model>.sha256``.

    The model is loaded once per Python process and content (a Spark worker loads it once,
    not per batch); a replaced file is verified again.
    """
    path = fs.local_copy(path).expanduser().resolve()  # an s3://… model is fetched with its sidecar
    model, digest = load_fasttext(path, what="model")
    labels = tuple(label.removeprefix(LABEL_PREFIX) for label in model.get_labels())
    settings = read_metadata(path).get("normalization", {})
    return Classifier(model, str(path), digest, labels,
                      lowercase=bool(settings.get("lowercase", False)),
                      max_chars=settings.get("max_chars", DEFAULT_MAX_CHARS))


def read_metadata(model_path: str | Path) -> dict:
    """The ``<model>.json`` written at training time ({} for models trained elsewhere)."""
    meta = metadata_path(model_path)
    return json.loads(meta.read_text()) if meta.is_file() else {}


# ---------------------------------------------------------------- training

def balance(positives: Sequence[str], negatives: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """Down-sample the larger class to the size of the smaller one (seeded, order-independent
    of the other class)."""
    size = min(len(positives), len(negatives))
    return (_seeded_sample(positives, size, seed, "pos"), _seeded_sample(negatives, size, seed, "neg"))


def _seeded_sample(items: Sequence[str], size: int, seed: int, salt: str) -> list[str]:
    chosen = list(items)
    random.Random(f"{seed}:{salt}").shuffle(chosen)
    return chosen[:size]


def split_holdout(items: list[str], holdout: float) -> tuple[list[str], list[str]]:
    """(train, held-out) with ``round(holdout * n)`` items held out (at least 1 when holdout > 0)."""
    n_out = max(1, round(holdout * len(items))) if holdout > 0 and len(items) > 1 else 0
    return items[n_out:], items[:n_out]


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve via the Mann–Whitney U statistic (ties count one half)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):  # average rank within each tie group
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(probs: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> dict:
    """Precision, recall, F1 (at ``threshold``), accuracy and ROC-AUC of the positive class."""
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=bool)
    predicted = probs >= threshold
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "accuracy": float((predicted == truth).mean()) if len(truth) else float("nan"),
            "roc_auc": roc_auc(probs, truth), "threshold": threshold, "n": int(len(truth))}


def train_fasttext_isolated(train_file: str | Path, out_path: str | Path, **hyperparameters: Any) -> None:
    """``fasttext.train_supervised(train_file, **hyperparameters)`` saved to ``out_path``, in a
    fresh child process.

    fastText 0.9.2 (``fasttext-numpy2-wheel``) trained twice in one process with the same file,
    seed and one thread can give a different model or abort with "Encountered NaN", while fresh
    processes agree byte for byte (seen with small ``bucket`` values); one fresh interpreter per
    model makes training reproducible. Raises RuntimeError with fastText's message.
    """
    import subprocess
    import sys

    job = json.dumps({"input": str(train_file), "out": str(out_path), "hyper": hyperparameters})
    done = subprocess.run([sys.executable, "-c", _TRAIN_AND_SAVE, job], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise RuntimeError(lines[-1].removeprefix("RuntimeError: "))


_TRAIN_AND_SAVE = """
import json, sys
import fasttext
job = json.loads(sys.argv[1])
fasttext.train_supervised(input=job["input"], **job["hyper"]).save_model(job["out"])
"""


def train_classifier(positives: Sequence[str], negatives: Sequence[str], out_path: str | Path, *,
                     seed: int = 0, holdout: float = 0.1, lowercase: bool = False,
                     max_chars: int | None = DEFAULT_MAX_CHARS, epoch: int = DCLM_HYPERPARAMETERS["epoch"],
                     lr: float = DCLM_HYPERPARAMETERS["lr"], dim: int = DCLM_HYPERPARAMETERS["dim"],
                     word_ngrams: int = DCLM_HYPERPARAMETERS["word_ngrams"],
                     min_count: int = DCLM_HYPERPARAMETERS["min_count"],
                     bucket: int = DCLM_HYPERPARAMETERS["bucket"], threads: int = 1,
                     label_positive: str = "hq", label_negative: str = "lq", metadata: dict | None = None) -> dict:
    """Train a balanced binary fastText classifier (DCLM recipe) and write it with sidecars.

    Writes ``out_path`` (fastText .bin), ``<out_path>.sha256`` and ``<out_path>.json``
    (metrics, hyper-parameters, normalization, sha256, counts, plus ``metadata``); returns it.
    ``threads=1`` makes training reproducible for a given seed; more threads train faster
    but fastText's Hogwild updates then make the model vary from run to run.
    """
    if label_positive == label_negative:
        raise CurateError("label_positive and label_negative must differ")
    norm = {"lowercase": bool(lowercase), "max_chars": max_chars}
    data = _training_data(positives, negatives, norm, seed, holdout, (label_positive, label_negative))
    hyper = {"epoch": epoch, "lr": lr, "dim": dim, "word_ngrams": word_ngrams, "min_count": min_count,
             "bucket": bucket, "loss": "softmax", "threads": threads, "seed": seed}
    out_path = Path(out_path)
    model, digest = fit_rows(data["train"], out_path, hyper)

    classifier = Classifier(model, str(out_path), digest, (label_positive, label_negative), **norm)
    test_texts, test_labels = data["test"]
    metrics = (binary_metrics(classifier.predict_proba(test_texts, label_positive), test_labels)
               if test_texts else {})
    report = {
        "model": out_path.name, "sha256": digest, "method": "fastText supervised (DCLM recipe)",
        "labels": {"positive": label_positive, "negative": label_negative},
        "normalization": norm, "hyperparameters": hyper, "holdout": holdout,
        "counts": {"positive_input": len(positives), "negative_input": len(negatives), **data["counts"]},
        "metrics": metrics, **(metadata or {}),
    }
    write_text_atomic(metadata_path(out_path), json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _training_data(positives: Sequence[str], negatives: Sequence[str], norm: dict, seed: int, holdout: float,
                   labels: tuple[str, str]) -> dict:
    """Normalized, balanced, split and shuffled rows: ``train`` [(label, line)], ``test`` (lines, 0/1), counts."""
    pos = [line for line in (normalize_line(t, **norm) for t in positives) if line]
    neg = [line for line in (normalize_line(t, **norm) for t in negatives) if line]
    if min(len(pos), len(neg)) < 2:
        raise CurateError(f"need at least 2 non-empty positive and negative documents, got {len(pos)} and {len(neg)}")
    if not 0 <= holdout < 1:
        raise CurateError(f"holdout must be in [0, 1), got {holdout}")
    pos_bal, neg_bal = balance(pos, neg, seed)
    pos_train, pos_test = split_holdout(pos_bal, holdout)
    neg_train, neg_test = split_holdout(neg_bal, holdout)
    train_rows = [(labels[0], t) for t in pos_train] + [(labels[1], t) for t in neg_train]
    random.Random(f"{seed}:order").shuffle(train_rows)
    test = (pos_test + neg_test, [1] * len(pos_test) + [0] * len(neg_test))
    counts = {"positive_nonempty": len(pos), "negative_nonempty": len(neg), "per_class_balanced": len(pos_bal),
              "train": len(train_rows), "holdout": len(test[0])}
    return {"train": train_rows, "test": test, "counts": counts}


def fit_rows(train_rows: list[tuple[str, str]], out_path: Path, hyper: dict):
    """Train fastText on ``train_rows`` [(label, normalized line)] in a fresh process, write
    ``out_path`` and its sidecar; return (model, sha256). Also used by the embedding-head
    comparison (:mod:`curate.quality.embedding_head`)."""
    import fasttext

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".train-") as tmp, atomic_file(out_path) as staged:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{LABEL_PREFIX}{label} {text}\n" for label, text in train_rows),
                              encoding="utf-8")
        try:
            train_fasttext_isolated(train_file, staged, epoch=hyper["epoch"], lr=hyper["lr"], dim=hyper["dim"],
                                    wordNgrams=hyper["word_ngrams"], minCount=hyper["min_count"],
                                    bucket=hyper["bucket"], loss="softmax", thread=hyper["threads"],
                                    seed=hyper["seed"], verbose=0)
        except RuntimeError as exc:  # fastText reports a diverged or degenerate run as "Encountered NaN."
            raise CurateError(f"fastText training failed ({exc}); small training sets hit this — "
                              "use more documents, a lower --lr or another --seed/--dim") from None
        model = fasttext.load_model(str(staged))
        digest = write_sidecar(staged, out_path)
    return model, digest


# ---------------------------------------------------------------- sources

def parse_source_spec(spec: str) -> tuple[str, int | None]:
    """``PATH[:N]`` -> (PATH, N); only a trailing ``:<digits>`` counts as a sample size."""
    match = re.fullmatch(r"(.+):(\d+)", spec)
    return (match.group(1), int(match.group(2))) if match else (spec, None)


def source_texts(spark, spec: str, *, seed: int = 0, text_field: str = "text") -> list[str]:
    """Texts of ``PATH[:N]`` (files, a stage directory or a pipeline output), read with
    :func:`curate.io.read.read_source`. With N, a deterministic sample: the N rows whose
    seeded hash of ``id`` is smallest (independent of file order and partitioning)."""
    from pyspark.sql import functions as F

    from curate.io.read import read_source

    path, limit = parse_source_spec(spec)
    df = read_source(spark, path, text_field=text_field)
    if limit is not None:
        df = df.orderBy(F.xxhash64(F.lit(seed), F.col("id")), F.col("id")).limit(limit)
    return [row[0] for row in df.select("text").collect()]
