"""Budgeted selection, the library of the ``select_budget`` stage: keep the best documents
by stored scores, under a threshold or a document / token budget — exact, deterministic, computed in Spark.

Documents are ordered by a *key* (one score, a weighted sum, or a weighted rank-average of
several; optionally plus seeded Gumbel noise, which turns top-k into sampling without
replacement with probability ∝ exp(key) — the Gumbel-top-k trick used by DSIR, Xie et al.
2023, after Kool et al. 2019). Ties are broken by ``id``. The cut is found without sorting
the corpus on one machine: keys are cut into quantile buckets, per-bucket totals locate the
bucket holding the budget boundary, and only that bucket is ordered row by row. The result
is then a plain filter ``(key, id) ≥ (key*, id*)``, so it does not depend on partitioning.

Ensembles (``combine``): ``weighted`` sum, ``mean`` (weighted mean), ``max`` of the raw
scores (same-scale scores, e.g. probabilities); ``rank_average`` (alias ``rank``): the
weighted mean of each column's exact percent rank, so scores on different scales count
alike; ``rank_max``: the maximum percent rank — the Nemotron-CC ensemble (Su et al. 2024),
which takes the maximum of its three classifiers' percentile scores. A row missing any
score is unscored (null key).

Token-weighted percentile buckets (Nemotron-CC): with ``buckets = N`` every scored row gets
``floor(N · T_below / T)`` (at most N − 1), where ``T`` is the total tokens of the scored rows
and ``T_below`` the tokens of rows with a strictly smaller combined score — N buckets of
(nearly) equal token mass, 0 = lowest scores, N − 1 = highest, equal scores always in one
bucket. Each bucket is reduced to its smallest key on the driver (≤ N numbers), so the
column is a plain function of the key, computed the same on any partitioning.
"""
from __future__ import annotations

import math
import operator
from functools import reduce
from typing import Any, Callable

from curate.core import ID, REJECT_REASON, CurateError

KEY, TOKENS, BUCKET = "__select_key", "__select_tokens", "__select_bucket"
SCORE_KEY = "__select_score"  # the combined score without resampling noise (buckets)
COMBINES = ("weighted", "mean", "max", "rank_average", "rank", "rank_max")
RANKED = ("rank_average", "rank", "rank_max")
MAX_BUCKETS = 256
ROWS_PER_BUCKET = 200_000
KEEP_ALL, KEEP_NONE = "all", "none"


# ---------------------------------------------------------------- keys

def _score_value(df, name: str):
    """The score column ``name`` (dotted struct paths allowed) as double, NaN as null."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    column = F.col(name).cast("double")
    try:
        _ = df.select(column).schema  # analysed eagerly: a missing column fails here
    except AnalysisException:
        raise CurateError(f"select_budget: score column '{name}' not found; columns: {', '.join(df.columns)}") from None
    return F.when(F.isnan(column), None).otherwise(column)


def _quantile_bucket(df, value, n_buckets: int):
    """Bucket index of ``value`` (0 = lowest) over approximate quantile cut points.

    The cut points only decide how work is split; exactness comes from ordering rows
    inside a bucket, so approximate (even partition-dependent) quantiles are fine.
    """
    from pyspark.sql import functions as F

    if n_buckets <= 1:
        return F.when(value.isNotNull(), F.lit(0))
    probe = df.select(value.alias("__v")).filter(F.col("__v").isNotNull())
    cuts = sorted(set(probe.approxQuantile("__v", [i / n_buckets for i in range(1, n_buckets)], 0.25 / n_buckets)))
    if not cuts:
        return F.when(value.isNotNull(), F.lit(0))
    return F.when(value.isNotNull(), F.size(F.filter(F.array(*[F.lit(float(c)) for c in cuts]), lambda c: c <= value)))


def _percent_rank(df, value, n_buckets: int):
    """Exact percent rank (rank − 1) / (n − 1) of ``value`` among non-null rows, ties equal."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    bucket = _quantile_bucket(df, value, n_buckets)
    sized = df.select(bucket.alias(BUCKET)).filter(F.col(BUCKET).isNotNull()).groupBy(BUCKET).count().collect()
    before, running = {}, 0
    for row in sorted(sized, key=lambda r: r[BUCKET]):
        before[row[BUCKET]], running = running, running + row["count"]
    offset = F.create_map(*[F.lit(x) for kv in before.items() for x in kv]) if before else F.create_map()
    in_bucket = F.rank().over(Window.partitionBy(bucket).orderBy(value))
    rank = offset[bucket] + in_bucket
    return F.when(value.isNotNull(), (rank - 1) / F.lit(max(running - 1, 1))).cast("double")


def _gumbel(seed: int):
    """Gumbel(0, 1) noise from a seeded hash of ``id``: same value whatever the partitioning."""
    from pyspark.sql import functions as F

    uniform = (F.shiftrightunsigned(F.xxhash64(F.lit(seed), F.col(ID)), 11) + 0.5) / float(1 << 53)
    return -F.log(-F.log(uniform))


def selection_key(df, scores: list[str], *, weights: list[float] | None = None, combine: str = "weighted",
                  resample: str | None = None, temperature: float = 1.0, seed: int = 0, n_buckets: int = 1):
    """The Column that orders documents (higher is better; null = unscored, never kept)."""
    from pyspark.sql import functions as F

    weights = [1.0] * len(scores) if weights is None else [float(w) for w in weights]
    values = [_score_value(df, s) for s in scores]
    if combine in RANKED and len(values) > 1:
        values = [_percent_rank(df, v, n_buckets) for v in values]
    key = combine_values(values, weights, combine)
    if resample == "gumbel":
        key = key / F.lit(float(temperature)) + _gumbel(seed)
    return key.cast("double")


def combine_values(values: list, weights: list[float], combine: str):
    """One Column from several (null when any is null): weighted sum, weighted mean, or max."""
    from pyspark.sql import functions as F

    if len(values) == 1:
        return values[0]
    if combine in ("max", "rank_max"):
        present = reduce(operator.and_, [v.isNotNull() for v in values])
        return F.when(present, F.greatest(*values))
    total = reduce(operator.add, [v * F.lit(w) for w, v in zip(weights, values)])
    return total if combine == "weighted" else total / F.lit(sum(weights))


# ---------------------------------------------------------------- buckets

def bucket_starts(narrow, key: str, n: int, n_work: int) -> tuple[list, list]:
    """``(starts, sizes)``: (smallest key, bucket) of every non-empty token-weighted bucket,
    by key, and [bucket, rows, tokens] of each.

    ``narrow`` has the (non-null) ``key`` column and ``__select_tokens``; a row's bucket is
    floor(n · tokens of strictly smaller keys / all tokens), capped at n − 1. Rows are split
    into ``n_work`` quantile ranges of the key (only to spread the work); the tokens below
    each range come from per-range totals collected to the driver.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    value = F.col(key)
    staged = narrow.withColumn(BUCKET, _quantile_bucket(narrow, value, n_work))
    totals = {r[BUCKET]: r["w"] for r in staged.groupBy(BUCKET).agg(F.sum(TOKENS).alias("w")).collect()}
    before, running = {}, 0
    for work in sorted(totals):
        before[work], running = running, running + int(totals[work] or 0)
    if not totals:
        return [], []
    offset = F.create_map(*[F.lit(x) for kv in before.items() for x in kv])
    at_or_below = F.sum(TOKENS).over(Window.partitionBy(BUCKET).orderBy(value))  # range frame: ties included
    same_key = F.sum(TOKENS).over(Window.partitionBy(BUCKET, key))
    below = offset[F.col(BUCKET)] + at_or_below - same_key
    bucket = F.expr(f"cast(least(({int(n)} * __below) div {max(running, 1)}, {int(n) - 1}) as int)")  # exact integers
    rows = (staged.withColumn("__below", below).withColumn("__b", bucket)
            .groupBy("__b").agg(F.min(value).alias("__start"), F.count("*").alias("__rows"),
                                F.sum(TOKENS).alias("__tokens")).collect())
    rows = sorted(rows, key=lambda r: r["__b"])
    return ([(float(r["__start"]), int(r["__b"])) for r in rows],
            [[int(r["__b"]), int(r["__rows"]), int(r["__tokens"] or 0)] for r in rows])


def bucket_column_of(starts: list[tuple[float, int]], key: str):
    """Column: the bucket of ``key`` (the last start ≤ key), null for a null key."""
    from pyspark.sql import functions as F

    value = F.col(key)
    if not starts:
        return F.lit(None).cast("int")
    cuts = F.array(*[F.lit(float(k)) for k, _ in starts])
    index = F.size(F.filter(cuts, lambda c: c <= value))
    return F.when(value.isNotNull(), F.element_at(F.array(*[F.lit(b) for _, b in starts]), F.greatest(index, F.lit(1))))


# ---------------------------------------------------------------- the cut

def prefix_cut(narrow, budget: float, n_buckets: int, total: float | None = None):
    """The last row of the longest prefix, in order (key desc, id asc), whose summed
    weight stays ≤ ``budget``: returns (key*, id*), KEEP_ALL or KEEP_NONE.

    ``narrow`` has columns id, ``__select_key`` (non-null) and ``__select_tokens`` (the
    weight: tokens, or 1 per document); ``total`` is their summed weight when known.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.col(KEY)
    staged = narrow.withColumn(BUCKET, _quantile_bucket(narrow, key, n_buckets))
    if n_buckets <= 1:  # one bucket: its total is the caller's grand total, skip a job
        totals = {0: total} if total else {}
    else:
        totals = {r[BUCKET]: r["w"] for r in staged.groupBy(BUCKET).agg(F.sum(TOKENS).alias("w")).collect()}
    cumulative, last_full, cut_bucket = 0, None, None
    for bucket in sorted(totals, reverse=True):
        if cumulative + totals[bucket] > budget:
            cut_bucket = bucket
            break
        cumulative, last_full = cumulative + totals[bucket], bucket
    if cut_bucket is None:
        return KEEP_ALL
    order = Window.partitionBy(BUCKET).orderBy(key.desc(), F.col(ID).asc())
    inside = (staged.filter(F.col(BUCKET) == cut_bucket)
              .withColumn("__cum", F.sum(TOKENS).over(order.rowsBetween(Window.unboundedPreceding, 0)))
              .withColumn("__row", F.row_number().over(order))
              .filter(F.col("__cum") <= budget - cumulative)
              .orderBy(F.col("__row").desc()).limit(1).collect())
    if inside:
        return inside[0][KEY], inside[0][ID]
    if last_full is None:
        return KEEP_NONE
    last = staged.filter(F.col(BUCKET) == last_full).orderBy(key.asc(), F.col(ID).desc()).limit(1).collect()[0]
    return last[KEY], last[ID]


def kept_predicate(cut, threshold: float | None = None):
    """Column: True for kept rows (null keys are never kept)."""
    from pyspark.sql import functions as F

    key = F.col(KEY)
    if threshold is not None:
        keep = key >= F.lit(float(threshold))
    elif cut == KEEP_ALL:
        keep = key.isNotNull()
    elif cut == KEEP_NONE:
        keep = F.lit(False)
    else:
        cut_key, cut_id = cut
        keep = (key > F.lit(cut_key)) | ((key == F.lit(cut_key)) & (F.col(ID) <= F.lit(cut_id)))
    return F.coalesce(keep, F.lit(False))


# ---------------------------------------------------------------- the stage

def _auto_buckets(n_rows: int | None) -> int:
    return 1 if n_rows is None else max(1, min(MAX_BUCKETS, n_rows // ROWS_PER_BUCKET))


_BUDGETS = ("threshold", "top_fraction", "keep_docs", "keep_tokens", "keep_tokens_fraction")


def _check(scores, weights, combine, budgets: dict, resample, temperature, buckets) -> str:
    chosen = [name for name, value in budgets.items() if value is not None]
    if buckets is not None and (isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1):
        raise CurateError(f"select_budget: buckets must be an integer >= 1, got {buckets!r}")
    if len(chosen) > 1 or (not chosen and buckets is None):
        raise CurateError(f"select_budget: set exactly one of {', '.join(_BUDGETS)} "
                          f"(got {', '.join(chosen) or 'none'}; with buckets, none keeps every scored row)")
    mode = chosen[0] if chosen else "buckets"
    if not scores:
        raise CurateError("select_budget: 'score' needs at least one column")
    if weights is not None and len(weights) != len(scores):
        raise CurateError(f"select_budget: {len(weights)} weights for {len(scores)} scores")
    if combine not in COMBINES:
        raise CurateError(f"select_budget: combine must be one of {', '.join(COMBINES)}, got '{combine}'")
    if weights is not None and combine in ("max", "rank_max"):
        raise CurateError(f"select_budget: combine '{combine}' takes no weights")
    if resample not in (None, "gumbel"):
        raise CurateError(f"select_budget: resample must be null or 'gumbel', got '{resample}'")
    if resample and mode == "threshold":
        raise CurateError("select_budget: resample needs a budget (top_fraction, keep_docs, keep_tokens…), "
                          "not a threshold")
    if temperature <= 0:
        raise CurateError("select_budget: temperature must be > 0")
    for name in ("top_fraction", "keep_tokens_fraction"):
        if budgets[name] is not None and not 0 <= budgets[name] <= 1:
            raise CurateError(f"select_budget: {name} must be in [0, 1], got {budgets[name]}")
    for name in ("keep_docs", "keep_tokens"):
        if budgets[name] is not None and budgets[name] < 0:
            raise CurateError(f"select_budget: {name} must be >= 0")
    return mode


def select_by_budget(df, *, score: str | list, weights: list | None = None, combine: str = "weighted",
                     threshold: float | None = None, top_fraction: float | None = None,
                     keep_docs: int | None = None, keep_tokens: int | None = None,
                     keep_tokens_fraction: float | None = None, tokenizer: str | None = None,
                     resample: str | None = None, temperature: float = 1.0, seed: int = 0,
                     sort_buckets: int | None = None, buckets: int | None = None,
                     bucket_column: str = "quality_bucket", resolve: Callable[[str], Any] = str):
    """``(kept, rejected, stats)``: the top documents of ``df`` by ``score`` under one budget
    (the parameters of the ``select_budget`` stage; ``resolve`` locates ``tokenizer``).
    With ``buckets``, both outputs get ``bucket_column`` (token-weighted percentile bucket of
    the combined score, without resampling noise) and the budget may be omitted (keep every
    scored row). Rejected rows carry ``reject_reason = "budget"`` (``"unscored"`` when only bucketing)."""
    from pyspark.sql import functions as F

    scores = [score] if isinstance(score, str) else list(score or [])
    budgets = {"threshold": threshold, "top_fraction": top_fraction, "keep_docs": keep_docs,
               "keep_tokens": keep_tokens, "keep_tokens_fraction": keep_tokens_fraction}
    mode = _check(scores, weights, combine, budgets, resample, temperature, buckets)
    tokenizer_path = str(resolve(tokenizer)) if tokenizer else None

    n_rows = df.count() if combine in RANKED and len(scores) > 1 and not sort_buckets else None
    n_buckets = sort_buckets or _auto_buckets(n_rows)
    options = {"weights": weights, "combine": combine, "temperature": temperature, "seed": seed,
               "n_buckets": n_buckets}
    keyed = df.withColumn(KEY, selection_key(df, scores, resample=resample, **options))
    score_key = KEY
    if buckets and resample:
        score_key = SCORE_KEY
        keyed = keyed.withColumn(SCORE_KEY, selection_key(df, scores, resample=None, **options))
    keep, totals, summary, budget, n_buckets, starts = _select(
        keyed, mode, budgets, tokenizer_path, sort_buckets, buckets, score_key)
    stats = {"mode": mode, "budget": budget if budget is not None else threshold, "rows_in": totals["rows"],
             "rows_out": int(summary["rows_out"] or 0), "tokens_in": int(totals["tokens"] or 0),
             "tokens_kept": int(summary["tokens_kept"] or 0),
             "unscored_rows": totals["rows"] - int(totals["scored_rows"] or 0),
             "effective_threshold": threshold if mode == "threshold" else summary["min_kept_key"],
             "score": scores, "combine": combine, "resample": resample,
             "token_estimate": tokenizer or "whitespace words", "sort_buckets": n_buckets}
    if buckets:
        stats.update(buckets=buckets, bucket_column=bucket_column,
                     bucket_starts=[[b, k] for k, b in starts[0]], bucket_tokens=starts[1])
        keyed = keyed.withColumn(bucket_column, bucket_column_of(starts[0], score_key))
    reason = "unscored" if mode == "buckets" else "budget"
    kept = keyed.filter(keep).drop(KEY, SCORE_KEY)
    rejected = keyed.filter(~keep).drop(KEY, SCORE_KEY).withColumn(REJECT_REASON, F.lit(reason))
    return kept, rejected, stats


def _select(keyed, mode: str, budgets: dict, tokenizer_path: str | None, sort_buckets: int | None,
            buckets: int | None = None, score_key: str = KEY):
    """(keep predicate, totals row, kept-summary row, budget, sort buckets, bucket starts) over
    the narrow (id, key, tokens) projection of ``keyed``, persisted while the cuts are found."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from curate.quality.tokens import token_count_column

    extra = [score_key] if score_key != KEY else []
    narrow = keyed.select(ID, KEY, *extra, token_count_column(tokenizer=tokenizer_path).alias(TOKENS)).persist(
        StorageLevel.MEMORY_AND_DISK)
    try:
        scored = F.col(KEY).isNotNull()
        totals = narrow.agg(F.count("*").alias("rows"), F.sum(TOKENS).alias("tokens"),
                            F.sum(F.when(scored, 1).otherwise(0)).alias("scored_rows"),
                            F.sum(F.when(scored, F.col(TOKENS)).otherwise(0)).alias("scored_tokens")).first()
        n_buckets = sort_buckets or _auto_buckets(totals["rows"])
        cut, budget = None, None
        if mode == "buckets":
            cut = KEEP_ALL
        elif mode != "threshold":
            budget = _budget_value(mode, budgets, totals["rows"], totals["tokens"] or 0)
            by_docs = mode in ("top_fraction", "keep_docs")
            candidates = narrow.filter(scored)
            if by_docs:
                candidates = candidates.withColumn(TOKENS, F.lit(1).cast("long"))
            cut = prefix_cut(candidates, budget, n_buckets,
                             total=totals["scored_rows"] if by_docs else totals["scored_tokens"])
        starts = ([], [])
        if buckets:
            starts = bucket_starts(narrow.filter(F.col(score_key).isNotNull()), score_key, buckets, n_buckets)
        keep = kept_predicate(cut, budgets["threshold"])
        summary = narrow.agg(
            F.sum(F.when(keep, 1).otherwise(0)).alias("rows_out"),
            F.sum(F.when(keep, F.col(TOKENS)).otherwise(0)).alias("tokens_kept"),
            F.min(F.when(keep, F.col(KEY))).alias("min_kept_key")).first()
    finally:
        narrow.unpersist()
    return keep, totals, summary, budget, n_buckets, starts


def _budget_value(mode: str, budgets: dict, n_rows: int, total_tokens: int) -> float:
    """The budget in documents or tokens for a budget ``mode``."""
    if mode == "top_fraction":
        return math.floor(budgets["top_fraction"] * n_rows + 0.5)
    if mode == "keep_tokens_fraction":
        return budgets["keep_tokens_fraction"] * total_tokens
    return budgets[mode]  # keep_docs, keep_tokens
