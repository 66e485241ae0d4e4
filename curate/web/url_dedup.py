"""``url_dedup``: one document per canonical URL (a crawl revisits pages; mirrors copy them).

Each document's ``url`` is put in canonical form (:func:`curate.web.urls.canonical_url`),
written to the column ``url_canonical`` (on kept and rejected rows: downstream stages and
people reading ``rejected/`` see what matched), and among documents with the same canonical
URL one survives, ranked by

1. the latest crawl date (``date_column``: a timestamp, or ISO-8601 / ``yyyyMMddHHmmss``
   strings; ``null`` or unparsable dates rank last),
2. then the longest text (characters),
3. then the smallest ``id`` (ids are unique, so the order is total and the result does
   not depend on partitioning).

The others are rejected with ``reject_reason = duplicate_url`` and ``duplicate_of`` (the
survivor's id). Documents without a URL (null or blank) or with a string that is not an
absolute URL are kept untouched and counted (``no_url``, ``invalid_url``).
"""
from __future__ import annotations

from curate.core import ID, REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage
from curate.web.urls import canonical_url

CANONICAL = "url_canonical"
REASON = "duplicate_url"


def canonical_url_column(col, *, sort_query: bool = True):
    """``col`` (a string column of URLs) in canonical form, computed in one Arrow UDF per batch."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    def canonical(urls):
        return pa.array([canonical_url(u, sort_query=sort_query) for u in urls.to_pylist()], pa.string())

    canonical.__annotations__ = {"urls": pa.Array, "return": pa.Array}
    return F.arrow_udf(canonical, "string")(col)


def crawl_date(df, column: str | None):
    """The ranking date: the column itself (timestamp, date, number); strings parsed as ISO-8601
    (WARC-Date) or 14-digit ``yyyyMMddHHmmss`` (ARC, CDX; UTC whatever the session time zone)
    timestamps, ``null`` if neither parses;
    a constant ``null`` without a date column."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    if column is None:
        return F.lit(None)
    if column not in df.columns:
        raise CurateError(f"url_dedup: no date column '{column}' in the input (columns: "
                          f"{', '.join(df.columns)}); set date_column: null to rank by length, then id")
    if isinstance(df.schema[column].dataType, StringType):
        return F.coalesce(F.try_to_timestamp(F.col(column)),
                          F.try_to_timestamp(F.concat(F.col(column), F.lit("Z")), F.lit("yyyyMMddHHmmssX")))
    return F.col(column)


@stage("url_dedup")
def url_dedup(df, ctx: StageContext, *, url_column: str = "url", date_column: str | None = "warc_date",
              sort_query: bool = True) -> StageOutput:
    """Keep one document per canonical URL: the latest crawl date, then the longest text, then the smallest id.

    Adds ``url_canonical``; removed rows carry ``reject_reason = duplicate_url`` and ``duplicate_of``.
    Documents without a (valid) URL are kept and counted.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if url_column not in df.columns:
        raise CurateError(f"url_dedup: no URL column '{url_column}' in the input (columns: {', '.join(df.columns)})")
    marked = df.withColumn(CANONICAL, canonical_url_column(F.col(url_column), sort_query=sort_query))
    # documents without a canonical URL are each their own group (a key no URL can equal)
    key = F.coalesce(F.col(CANONICAL), F.concat(F.lit("\u0000"), F.col(ID)))
    rank = Window.partitionBy(key).orderBy(
        crawl_date(df, date_column).desc_nulls_last(),
        F.coalesce(F.length(TEXT), F.lit(0)).desc(),
        F.col(ID).asc())
    ranked = marked.withColumn("_survivor", F.first(ID).over(rank))
    kept = ranked.filter(F.col(ID) == F.col("_survivor")).drop("_survivor")
    rejected = (ranked.filter(F.col(ID) != F.col("_survivor"))
                .withColumn(REJECT_REASON, F.lit(REASON))
                .withColumnRenamed("_survivor", "duplicate_of"))

    def stats(kept_df, rejected_df) -> dict:
        return url_stats(kept_df, rejected_df, url_column)

    return StageOutput(kept, rejected, stats)


def url_stats(kept, rejected, url_column: str) -> dict:
    """Counts over the written outputs: URLs kept, documents without a URL or with an invalid one,
    and the number of canonical URLs that had duplicates."""
    from pyspark.sql import functions as F

    blank = F.col(url_column).isNull() | (F.trim(F.col(url_column)) == "")
    row = kept.agg(
        F.count(F.col(CANONICAL)).alias("urls"),
        F.sum(F.when(blank, 1).otherwise(0)).alias("no_url"),
        F.sum(F.when(~blank & F.col(CANONICAL).isNull(), 1).otherwise(0)).alias("invalid_url"),
    ).first()
    groups = rejected.select("duplicate_of").distinct().count() if rejected is not None else 0
    return {"urls": int(row["urls"] or 0), "no_url": int(row["no_url"] or 0),
            "invalid_url": int(row["invalid_url"] or 0), "duplicate_groups": groups}
