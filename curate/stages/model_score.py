"""Model-based score stages: ``fasttext_score`` (DCLM-style quality classifier) and
``dsir_score`` (Xie et al. 2023 importance weights over hashed n-grams).

Both store a struct column and keep every row: thresholds and budgets live in
``select_budget``. Scoring is one vectorised pass (an iterator pandas UDF over Arrow
batches of ``text``); models are loaded once per Python worker.
"""
from __future__ import annotations

import json
from typing import Iterator

import pandas as pd

from curate.core import TEXT, CurateError, StageContext, StageOutput, stage


def _append_struct(df, name: str, fields: dict, batch_fn):
    """Append the struct column ``name`` (replacing a column of that name) computed by
    ``batch_fn(text_list) -> {field: array}`` over Arrow batches of ``text``.

    An iterator pandas UDF: only ``text`` travels to Python and only the scores come back
    (a ``mapInArrow`` over whole rows would ship every column both ways).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    struct_type = StructType([StructField(f, t) for f, t in fields.items()])

    @F.pandas_udf(struct_type)
    def score(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for texts in batches:
            yield pd.DataFrame(batch_fn(texts.tolist()), columns=list(fields))

    return df.withColumn(name, score(F.col(TEXT)))


def _chunked(fn, batch_size: int):
    """Apply ``fn`` to slices of at most ``batch_size`` texts and concatenate the fields."""
    import numpy as np

    def run(texts):
        parts = [fn(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)] or [fn([])]
        return {f: np.concatenate([p[f] for p in parts]) for f in parts[0]}

    return run


@stage("fasttext_score")
def fasttext_score(df, ctx: StageContext, *, model: str, name: str = "fasttext_score", label: str = "hq",
                   batch_size: int = 1024) -> StageOutput:
    """Score documents with a fastText classifier (DCLM, Li et al. 2024): `<name>.prob` = P(label).

    The model must have a ``<model>.sha256`` sidecar (written by ``curate classifier train``
    or ``curate classifier hash``); text is normalized with the settings saved at training.
    """
    from pyspark.sql.types import DoubleType

    from curate.classifier import load_model

    if batch_size < 1:
        raise CurateError(f"fasttext_score: batch_size must be >= 1, got {batch_size}")
    path = str(ctx.resolve(model))
    load_model(path).check_label(label)  # verify hash and label on the driver, fail early

    def score(texts):
        return {"prob": load_model(path).predict_proba(texts, label)}

    scored = _append_struct(df, name, {"prob": DoubleType()}, _chunked(score, batch_size))
    return StageOutput(kept=scored)


@stage("dsir_score")
def dsir_score(df, ctx: StageContext, *, target: list | str, name: str = "dsir_score",
               target_field: str = "text", num_buckets: int = 10_000, ngram: int = 2,
               smoothing: float = 1.0) -> StageOutput:
    """Importance log-weights log p_target(x) − log p_raw(x) over hashed n-grams (DSIR, Xie et al. 2023).

    ``target``: one or more sources ``PATH[:N]`` (JSONL/Parquet files, stage directories),
    their ``target_field`` read as text. The raw model is fitted on this stage's input.
    Writes `<name>.log_weight` and `<name>.per_ngram` (log-weight / number of n-grams);
    resample with ``select_budget`` (``resample: gumbel``).
    """
    import numpy as np
    from pyspark.sql.types import DoubleType

    from curate import dsir
    from curate.classifier import source_texts

    if num_buckets < 1 or ngram < 1 or smoothing <= 0:
        raise CurateError("dsir_score: num_buckets and ngram must be >= 1 and smoothing > 0")
    features = dsir.HashedNgrams(num_buckets=num_buckets, ngram=ngram)
    specs = [target] if isinstance(target, str) else list(target)
    if not specs:
        raise CurateError("dsir_score: target needs at least one source")
    target_texts = [text for spec in specs for text in
                    source_texts(ctx.spark, _resolve_spec(ctx, spec), seed=ctx.seed, text_field=target_field)]
    target_counts = features.counts(target_texts)
    raw_counts = dsir.spark_counts(df, features)
    log_ratio = dsir.log_ratio(target_counts, raw_counts, smoothing=smoothing)

    artifact = ctx.artifact("dsir_model.npz")
    np.savez(artifact, target_counts=target_counts, raw_counts=raw_counts, log_ratio=log_ratio)
    ctx.artifact("dsir_model.json").write_text(json.dumps(
        {"method": "DSIR hashed n-grams (Xie et al. 2023)", "num_buckets": num_buckets, "ngram": ngram,
         "smoothing": smoothing, "target": specs, "target_docs": len(target_texts),
         "target_ngrams": int(target_counts.sum()), "raw_ngrams": int(raw_counts.sum())}, indent=2) + "\n")

    def score(texts):
        weights, lengths = features.log_weights(texts, log_ratio)
        return {"log_weight": weights, "per_ngram": weights / np.maximum(lengths, 1)}

    scored = _append_struct(df, name, {"log_weight": DoubleType(), "per_ngram": DoubleType()}, score)
    stats = {"target_docs": len(target_texts), "num_buckets": num_buckets, "ngram": ngram}
    return StageOutput(kept=scored, stats=stats)


def _resolve_spec(ctx: StageContext, spec: str) -> str:
    """Resolve the path part of ``PATH[:N]`` against the pipeline directory."""
    from curate.classifier import parse_source_spec

    path, limit = parse_source_spec(str(spec))
    resolved = str(ctx.resolve(path))
    return resolved if limit is None else f"{resolved}:{limit}"
