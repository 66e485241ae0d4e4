"""``dsir_score``: DSIR importance weights over hashed n-grams (Xie et al. 2023)."""
from __future__ import annotations

from curate.core import StageContext, StageOutput, stage


@stage("dsir_score")
def dsir_score(df, ctx: StageContext, *, target: list | str, name: str = "dsir_score",
               target_field: str = "text", num_buckets: int = 10_000, ngram: int = 2,
               smoothing: float = 1.0) -> StageOutput:
    """Importance log-weights log p_target(x) − log p_raw(x) over hashed n-grams (DSIR, Xie et al. 2023).

    ``target``: one or more sources ``PATH[:N]`` (JSONL/Parquet files, stage directories),
    their ``target_field`` read as text. The raw model is fitted on this stage's input.
    Writes `<name>.log_weight` and `<name>.per_ngram` (log-weight / number of n-grams);
    resample with ``select_budget`` (``resample: gumbel``). Same as the ``score`` entry ``{dsir: ...}``.
    """
    from curate.quality.columns import scored_output
    from curate.quality.scorers import fit_dsir

    scorer, stats = fit_dsir(df, ctx, target=target, name=name, target_field=target_field,
                             num_buckets=num_buckets, ngram=ngram, smoothing=smoothing)
    return scored_output(df, [scorer], stats)
