"""``dsir_score``: DSIR importance weights over hashed n-grams (Xie et al. 2023)."""
from __future__ import annotations

import json

from curate.core import CurateError, StageContext, StageOutput, stage
from curate.quality.columns import append_struct


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

    from curate.quality import dsir
    from curate.quality.classifier import source_texts

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

    scored = append_struct(df, name, {"log_weight": DoubleType(), "per_ngram": DoubleType()}, score)
    stats = {"target_docs": len(target_texts), "num_buckets": num_buckets, "ngram": ngram}
    return StageOutput(kept=scored, stats=stats)


def _resolve_spec(ctx: StageContext, spec: str) -> str:
    """Resolve the path part of ``PATH[:N]`` against the pipeline directory."""
    from curate.quality.classifier import parse_source_spec

    path, limit = parse_source_spec(str(spec))
    resolved = str(ctx.resolve(path))
    return resolved if limit is None else f"{resolved}:{limit}"
