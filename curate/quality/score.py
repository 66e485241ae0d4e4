"""``score`` and ``select``: run document filters in one pass, then apply their thresholds.

Score, store, then select (the Dolma "attributes" idea, Soldaini et al. 2024): ``score``
stores each filter's measurements in a struct column named after the filter, plus the
filter's parameters in that column's metadata; ``select`` rebuilds each filter with
threshold overrides and applies ``reject`` to the stored columns, so changing a threshold
never recomputes a score.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from curate.core import REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage

META_KEY = "curate_filter"


# ---------------------------------------------------------------------------- score


@stage("score")
def score(df, ctx: StageContext, *, filters: list = ()) -> StageOutput:
    """Score documents with filters, modifiers and model scorers in one pass (one struct column each).

    ``filters`` lists filters (``curate filters``) and the model scorers ``fasttext``
    (``model``, ``label``, ``name``, ``batch_size``) and ``dsir`` (``target``, …), run in order.
    """
    from curate.quality.columns import append_scores, layer_columns

    if TEXT not in df.columns:
        raise CurateError("score: the input has no 'text' column")
    built, stats = [], {}
    for item in filters or ():
        scorer, extra = _build_for_scoring(item, df, ctx)
        built.append(scorer)
        if extra:
            stats[scorer.name] = extra
    if not built:
        raise CurateError(f"score: list at least one filter or scorer; valid: {', '.join(_valid_names())}")
    names = [s.name for s in built]
    if len(set(names)) != len(names):
        raise CurateError(f"score: filter listed twice in {names}")

    scored = _with_filter_metadata(append_scores(df, built), [s for s in built if _is_filter(s)])
    modifiers = [s for s in built if _is_filter(s) and s.modifies_text]
    return StageOutput(kept=scored, stats=lambda kept, _rejected: stats | _modifier_totals(kept, modifiers),
                       adds=layer_columns(built))


def _valid_names() -> list[str]:
    import filters as registry
    from curate.quality.scorers import MODEL_SCORERS

    return [*registry.registry(), *MODEL_SCORERS]


def _is_filter(scorer) -> bool:
    import filters as registry

    return isinstance(scorer, registry.Filter)


def _build_for_scoring(item: Any, df, ctx: StageContext):
    """``(scorer, stats)`` for one list entry: a filter (its faster equivalent where
    :mod:`curate.quality.fast_filters` has one: same scores), or a model scorer (fastText, DSIR)."""
    import filters as registry
    from curate.quality.fast_filters import fast_filter
    from curate.quality.scorers import MODEL_SCORERS, build_model_scorer

    name, params = registry.parse_spec(item)
    if name in MODEL_SCORERS:
        return build_model_scorer(name, params, df, ctx)
    if name not in registry.registry():
        raise CurateError(f"score: unknown filter or scorer '{name}'; valid: {', '.join(_valid_names())}")
    cls = registry.get(name)
    for key in cls.path_params:
        if params.get(key) is not None:
            params[key] = _resolve_paths(params[key], ctx)
    return fast_filter(registry.build(name, params)), {}


def _resolve_paths(value: Any, ctx: StageContext) -> Any:
    if isinstance(value, Mapping):
        return {k: str(ctx.resolve(v)) for k, v in value.items()}
    return str(ctx.resolve(value))


def _with_filter_metadata(df, built):
    """Record each filter's parameters on its column, so ``select`` can rebuild it."""
    from pyspark.sql import functions as F

    from filters import params_of

    meta = {f.name: {META_KEY: {"name": f.name, "params": params_of(f)}} for f in built}
    return df.select(*[F.col(c).alias(c, metadata=meta[c]) if c in meta else F.col(c)
                       for c in df.columns])


def _modifier_totals(kept, modifiers) -> dict[str, Any]:
    """Sum of each modifier's counts over the kept rows (e.g. emails redacted)."""
    if not modifiers:
        return {}
    from pyspark.sql import functions as F

    aggs = [F.sum(F.col(f"{m.name}.{key}")).alias(f"{m.name}.{key}")
            for m in modifiers for key in m.keys]
    row = kept.agg(*aggs).first().asDict()
    return {"modified": {k: int(v or 0) for k, v in row.items()}}


# ---------------------------------------------------------------------------- select


@stage("select")
def select(df, ctx: StageContext, *, filters: dict | None = None) -> StageOutput:
    """Apply the scored filters' thresholds in score order; the first failing rule is the reject_reason."""
    marked = with_reject_reason(df, selected_filters(df.schema, filters or {}))
    kept = marked.filter(marked[REJECT_REASON].isNull()).drop(REJECT_REASON)
    rejected = marked.filter(marked[REJECT_REASON].isNotNull())
    return StageOutput(kept=kept, rejected=rejected, stats=funnel_stats, verdict=marked)


def with_reject_reason(df, active):
    """``df`` plus ``reject_reason`` (null: kept), computed by an Arrow UDF that sees only the
    scored columns of the ``active`` filters (the text never travels to Python)."""
    from pyspark.sql import functions as F

    from curate.quality.columns import iterator_udf

    df = df.drop(REJECT_REASON)
    if not active:
        return df.withColumn(REJECT_REASON, F.lit(None).cast("string"))
    reasons = F.arrow_udf(iterator_udf(_SelectPass(active)), "string")
    return df.withColumn(REJECT_REASON, reasons(F.struct(*[F.col(f.name) for f in active])))


def scored_columns(schema) -> list[tuple[str, dict[str, Any]]]:
    """``(filter name, score-time params)`` of every scored column, in score order."""
    import filters as registry

    found = []
    for field in schema.fields:
        meta = field.metadata.get(META_KEY)
        if meta:
            found.append((meta["name"], dict(meta["params"])))
        elif field.name in registry.registry() and _looks_scored(field, registry.get(field.name)):
            found.append((field.name, {}))
    return found


def _looks_scored(field, cls) -> bool:
    names = getattr(field.dataType, "fieldNames", lambda: [])()
    return list(names) == list(cls.keys)


def selected_filters(schema, overrides: Mapping[str, Any]) -> list:
    """Rebuild the scored filters with threshold ``overrides`` (``{name: false}`` skips one)."""
    import filters as registry

    scored = scored_columns(schema)
    if not scored:
        raise CurateError("select: no scored filter columns in the input; run the 'score' stage first")
    names = [name for name, _ in scored]
    unknown = [name for name in overrides if name not in names]
    if unknown:
        raise CurateError(f"select: {', '.join(unknown)} not scored; scored filters: {', '.join(names)}")
    active = []
    for name, params in scored:
        override = overrides.get(name, {})
        if override is False:
            continue
        override = dict(override or {})
        cls = registry.get(name)
        fixed = sorted(set(override) & set(cls.score_params))
        if fixed:
            raise CurateError(f"select: {name}.{', '.join(fixed)} changes the scores; "
                              f"set it in the 'score' stage instead")
        active.append(registry.build(name, {**params, **override}))
    return active


def first_reason(active, row: Mapping[str, Any]) -> str | None:
    """``filter:reason`` of the first filter (in order) that rejects the row, else None."""
    for flt in active:
        reason = flt.reject(row[flt.name])
        if reason is not None:
            return f"{flt.name}:{reason}"
    return None


class _SelectPass:
    """Batches of the scored columns (struct arrays) -> the ``reject_reason`` of each row."""

    def __init__(self, active):
        self.active = active

    def __call__(self, batches: Iterator) -> Iterator:
        import pyarrow as pa

        for batch in batches:
            yield pa.array([first_reason(self.active, row) for row in batch.to_pylist()], pa.string())


def funnel_stats(kept, rejected) -> dict[str, Any]:
    """``{"funnel": ...}``: docs and characters kept and rejected per reason, overall and per ``source``
    (one aggregation over kept and rejected rows together; a kept row's reason is null)."""
    from pyspark.sql import functions as F

    by_source = "source" in kept.columns
    keys = ["source"] if by_source else []
    marked = kept.select(*keys, TEXT, F.lit(None).cast("string").alias(REJECT_REASON))
    if rejected is not None:
        marked = marked.unionByName(rejected.select(*keys, TEXT, REJECT_REASON))
    rows = (marked.groupBy(*keys, REJECT_REASON)
                  .agg(F.count(F.lit(1)).alias("docs"), F.coalesce(F.sum(F.length(TEXT)), F.lit(0)).alias("chars"))
                  .collect())
    stats, per_source = _empty(), {}
    for row in rows:
        reason = row[REJECT_REASON]
        for bucket in [stats, per_source.setdefault(str(row["source"]), _empty())] if by_source else [stats]:
            _add(_counts(bucket, reason), row)
    for bucket in [stats, *per_source.values()]:
        bucket["rejected"] = dict(sorted(bucket["rejected"].items()))
    if by_source:
        stats["by_source"] = dict(sorted(per_source.items()))
    return {"funnel": stats}


def _empty() -> dict[str, Any]:
    return {"kept": {"docs": 0, "chars": 0}, "rejected": {}}


def _counts(bucket: dict[str, Any], reason: str | None) -> dict[str, int]:
    """The kept counts of a funnel bucket (no reason), or those of one rejection reason."""
    return bucket["kept"] if reason is None else bucket["rejected"].setdefault(reason, {"docs": 0, "chars": 0})


def _add(bucket: dict[str, int], row: Mapping[str, Any]) -> None:
    bucket["docs"] += int(row["docs"])
    bucket["chars"] += int(row["chars"])


def format_funnel(funnel: Mapping[str, Any]) -> str:
    """A plain-text funnel table (from ``stats["funnel"]``): docs and characters removed per reason."""
    kept = funnel["kept"]
    rejected = funnel["rejected"]
    total_docs = kept["docs"] + sum(r["docs"] for r in rejected.values())
    total_chars = kept["chars"] + sum(r["chars"] for r in rejected.values())

    def pct(part: int, whole: int) -> str:
        return f"{100 * part / whole:6.2f}%" if whole else "   n/a"

    width = max([len("reason"), *map(len, rejected)]) + 2
    lines = [f"{'reason':<{width}}{'docs':>10} {'docs %':>8}{'chars':>14} {'chars %':>8}",
             f"{'input':<{width}}{total_docs:>10} {pct(total_docs, total_docs):>8}"
             f"{total_chars:>14} {pct(total_chars, total_chars):>8}"]
    for reason, row in sorted(rejected.items(), key=lambda kv: (-kv[1]["docs"], kv[0])):
        lines.append(f"{reason:<{width}}{-row['docs']:>10} {pct(row['docs'], total_docs):>8}"
                     f"{-row['chars']:>14} {pct(row['chars'], total_chars):>8}")
    lines.append(f"{'kept':<{width}}{kept['docs']:>10} {pct(kept['docs'], total_docs):>8}"
                 f"{kept['chars']:>14} {pct(kept['chars'], total_chars):>8}")
    return "\n".join(lines)

