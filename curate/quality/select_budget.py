"""``select_budget``: keep the best documents by stored scores, under a threshold or a
document / token budget. The method (exact, deterministic cut in Spark; Gumbel-top-k
sampling for DSIR) is documented in :mod:`curate.quality.budget`.
"""
from __future__ import annotations

from curate.core import StageContext, StageOutput, stage


@stage("select_budget")
def select_budget(df, ctx: StageContext, *, score: str | list, weights: list | None = None,
                  combine: str = "weighted", threshold: float | None = None, top_fraction: float | None = None,
                  keep_docs: int | None = None, keep_tokens: int | None = None,
                  keep_tokens_fraction: float | None = None, tokenizer: str | None = None,
                  resample: str | None = None, temperature: float = 1.0, seed: int | None = None,
                  sort_buckets: int | None = None, buckets: int | None = None,
                  bucket_column: str = "quality_bucket") -> StageOutput:
    """Keep top documents by score under a threshold, document or token budget (ties by id).

    ``score``: a column such as ``fasttext_score.prob`` or a list combined by ``combine``
    (``weighted`` sum, ``mean``, ``max``, ``rank_average``/``rank``: weighted mean of exact
    percent ranks, ``rank_max``: max percent rank as in Nemotron-CC) with ``weights``.
    Exactly one of ``threshold`` (key ≥ t), ``top_fraction`` / ``keep_docs`` (documents),
    ``keep_tokens`` / ``keep_tokens_fraction`` (tokens: whitespace words, or ``tokenizer``
    = a tokenizer.json). Budgets are never exceeded. ``resample: gumbel`` adds seeded
    Gumbel noise / ``temperature`` (importance resampling, DSIR). Rejected rows: reason ``budget``.
    ``buckets: N`` writes ``bucket_column`` = token-weighted percentile bucket of the combined
    score (Nemotron-CC, Su et al. 2024; 0 = lowest, N − 1 = highest); with no budget every
    scored row is kept (unscored rows: reason ``unscored``), for ``mix`` to weight by bucket.
    """
    from curate.quality.budget import select_by_budget

    kept, rejected, stats = select_by_budget(
        df, score=score, weights=weights, combine=combine, threshold=threshold, top_fraction=top_fraction,
        keep_docs=keep_docs, keep_tokens=keep_tokens, keep_tokens_fraction=keep_tokens_fraction,
        tokenizer=tokenizer, resample=resample, temperature=temperature,
        seed=ctx.seed if seed is None else seed, sort_buckets=sort_buckets, buckets=buckets,
        bucket_column=bucket_column, resolve=ctx.resolve)
    return StageOutput(kept=kept, rejected=rejected, stats=stats)
