"""Model-backed :class:`curate.core.Scorer` s: a fastText classifier and DSIR importance
weights, plus the ``{name: params}`` entries of the ``score`` stage that build them.

The filters of ``filters/`` are scorers already; these add the model scorers, so
``score: [gopher_quality, {fasttext: {model: models/q.bin}}]`` runs in one pass.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from curate.core import TEXT, CurateError, StageContext


@dataclass(frozen=True)
class FastTextScorer:
    """P(``label``) of a verified fastText classifier as ``<name>.prob`` (DCLM, Li et al. 2024).

    Text is normalized with the settings saved at training; fastText is called on slices
    of at most ``batch_size`` texts.
    """

    model: str
    name: str = "fasttext_score"
    label: str = "hq"
    batch_size: int = 1024

    fields: ClassVar[dict[str, str]] = {"prob": "double"}
    inputs: ClassVar[tuple[str, ...]] = (TEXT,)

    def setup(self) -> None:
        from curate.quality.classifier import load_classifier

        load_classifier(self.model).check_label(self.label)

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, np.ndarray]:
        from curate.quality.classifier import load_classifier

        clf = load_classifier(self.model)  # cached per process: setup() loaded it
        parts = [clf.predict_proba(texts[i:i + self.batch_size], self.label)
                 for i in range(0, len(texts), self.batch_size)]
        return {"prob": np.concatenate(parts) if parts else np.zeros(0, np.float64)}


def fasttext_scorer(model: str, *, name: str = "fasttext_score", label: str = "hq",
                    batch_size: int = 1024) -> FastTextScorer:
    """A checked :class:`FastTextScorer`: hash and label verified here, on the driver."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CurateError(f"fasttext: batch_size must be an integer >= 1, got {batch_size!r}")
    scorer = FastTextScorer(str(model), name=name, label=label, batch_size=batch_size)
    scorer.setup()  # fail early: missing file, bad sidecar, unknown label
    return scorer


@dataclass(frozen=True, eq=False)
class DsirScorer:
    """DSIR importance log-weight (Xie et al. 2023) over hashed n-grams: ``<name>.log_weight``
    and ``<name>.per_ngram`` (log-weight / number of n-grams)."""

    log_ratio: np.ndarray
    num_buckets: int = 10_000
    ngram: int = 2
    name: str = "dsir_score"

    fields: ClassVar[dict[str, str]] = {"log_weight": "double", "per_ngram": "double"}
    inputs: ClassVar[tuple[str, ...]] = (TEXT,)

    def setup(self) -> None:
        """Nothing to load: the fitted log-ratio travels with the scorer."""

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, np.ndarray]:
        from curate.quality.dsir import HashedNgrams

        weights, lengths = HashedNgrams(self.num_buckets, self.ngram).log_weights(texts, self.log_ratio)
        return {"log_weight": weights, "per_ngram": weights / np.maximum(lengths, 1)}


def fit_dsir(df, ctx: StageContext, *, target: list | str, name: str = "dsir_score", target_field: str = "text",
             num_buckets: int = 10_000, ngram: int = 2, smoothing: float = 1.0,
             artifact: str = "dsir_model") -> tuple[DsirScorer, dict[str, Any]]:
    """Fit DSIR on ``target`` sources (``PATH[:N]``, their ``target_field``) vs. ``df``'s text.

    Writes ``<artifact>.npz`` (counts, log-ratio) and ``<artifact>.json``; returns the
    scorer and its stats.
    """
    from curate.quality import dsir
    from curate.quality.classifier import source_texts

    if num_buckets < 1 or ngram < 1 or smoothing <= 0:
        raise CurateError("dsir: num_buckets and ngram must be >= 1 and smoothing > 0")
    specs = [target] if isinstance(target, str) else list(target or [])
    if not specs:
        raise CurateError("dsir: target needs at least one source")
    features = dsir.HashedNgrams(num_buckets=num_buckets, ngram=ngram)
    target_texts = [text for spec in specs for text in
                    source_texts(ctx.spark, _resolve_spec(ctx, spec), seed=ctx.seed, text_field=target_field)]
    target_counts = features.counts(target_texts)
    raw_counts = dsir.spark_counts(df, features)
    log_ratio = dsir.log_ratio(target_counts, raw_counts, smoothing=smoothing)
    np.savez(ctx.artifact(f"{artifact}.npz"), target_counts=target_counts, raw_counts=raw_counts,
             log_ratio=log_ratio)
    ctx.artifact(f"{artifact}.json").write_text(json.dumps(
        {"method": "DSIR hashed n-grams (Xie et al. 2023)", "num_buckets": num_buckets, "ngram": ngram,
         "smoothing": smoothing, "target": specs, "target_docs": len(target_texts),
         "target_ngrams": int(target_counts.sum()), "raw_ngrams": int(raw_counts.sum())}, indent=2) + "\n")
    stats = {"target_docs": len(target_texts), "num_buckets": num_buckets, "ngram": ngram}
    return DsirScorer(log_ratio, num_buckets=num_buckets, ngram=ngram, name=name), stats


def _resolve_spec(ctx: StageContext, spec: str) -> str:
    """Resolve the path part of ``PATH[:N]`` against the pipeline directory."""
    from curate.quality.classifier import parse_source_spec

    path, limit = parse_source_spec(str(spec))
    resolved = str(ctx.resolve(path))
    return resolved if limit is None else f"{resolved}:{limit}"


# ---------------------------------------------------------------- entries of the ``score`` stage

def _fasttext_entry(df, ctx: StageContext, *, model: str, name: str = "fasttext", label: str = "hq",
                    batch_size: int = 1024):
    """fastText classifier: ``<name>.prob`` = P(label) (model with a ``.sha256`` sidecar)."""
    return fasttext_scorer(str(ctx.resolve(model)), name=name, label=label, batch_size=batch_size), {}


def _dsir_entry(df, ctx: StageContext, *, target: list | str, name: str = "dsir", target_field: str = "text",
                num_buckets: int = 10_000, ngram: int = 2, smoothing: float = 1.0):
    """DSIR (Xie et al. 2023): ``<name>.log_weight``, ``<name>.per_ngram``; fitted on this input."""
    return fit_dsir(df, ctx, target=target, name=name, target_field=target_field, num_buckets=num_buckets,
                    ngram=ngram, smoothing=smoothing, artifact=f"{name}_model")


def _hf_classify_entry(df, ctx: StageContext, *, model: str, name: str = "hf_classify", positive: str | None = None,
                       batch_size: int = 32, long_docs: str = "first", max_length: int | None = None,
                       device: str | None = None, precision: str = "auto"):
    """A local HF sequence classifier/regressor: ``<name>.score``, ``.label``, ``.probs`` (docs/hf_classify.md)."""
    from curate.quality.hf_models import hf_scorer

    scorer = hf_scorer(str(ctx.resolve(model)), name=name, positive=positive, batch_size=batch_size,
                       long_docs=long_docs, max_length=max_length, device=device, precision=precision)
    return scorer, {"model": str(model)}


@dataclass(frozen=True)
class Entry:
    """A model scorer the ``score`` stage accepts in its list: ``{name: {params}}``."""

    build: Callable[..., tuple[Any, dict]]
    params: tuple[str, ...] = field(default=())
    required: tuple[str, ...] = field(default=())


def _entry(fn: Callable) -> Entry:
    ps = [p for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return Entry(fn, tuple(p.name for p in ps), tuple(p.name for p in ps if p.default is inspect.Parameter.empty))


MODEL_SCORERS: dict[str, Entry] = {"fasttext": _entry(_fasttext_entry), "dsir": _entry(_dsir_entry),
                                   "hf_classify": _entry(_hf_classify_entry)}
"""Model scorers of the ``score`` stage, beside the filters of ``filters/``."""


def build_model_scorer(kind: str, params: Mapping[str, Any], df, ctx: StageContext):
    """``(scorer, stats)`` for the ``score`` entry ``{kind: params}``, parameters checked."""
    entry = MODEL_SCORERS[kind]
    unknown = sorted(set(params) - set(entry.params))
    if unknown:
        raise CurateError(f"score: {kind}: unknown parameter(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(entry.params)}")
    missing = [p for p in entry.required if p not in params]
    if missing:
        raise CurateError(f"score: {kind}: missing required parameter(s) {', '.join(missing)}")
    return entry.build(df, ctx, **params)
