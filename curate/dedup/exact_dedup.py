"""``exact_dedup``: remove documents whose normalised text is identical."""
from __future__ import annotations

from curate.core import ID, REJECT_REASON, TEXT, StageContext, StageOutput, stage


def normalized_text(col):
    """Text normalisation for exact dedup: NFKC-free Spark SQL fold of case and whitespace."""
    from pyspark.sql import functions as F

    return F.trim(F.regexp_replace(F.lower(col), r"\s+", " "))



@stage("exact_dedup")
def exact_dedup(df, ctx: StageContext, *, normalize: bool = True) -> StageOutput:
    """Remove documents whose (normalised) text is identical; the smallest id survives.

    Removed rows keep their columns plus ``duplicate_of`` (the survivor's id).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.sha2(normalized_text(F.col(TEXT)) if normalize else F.col(TEXT), 256)
    marked = df.withColumn("_key", key).withColumn(
        "_survivor", F.min(ID).over(Window.partitionBy("_key")))
    kept = marked.filter(F.col(ID) == F.col("_survivor")).drop("_key", "_survivor")
    rejected = (marked.filter(F.col(ID) != F.col("_survivor"))
                .withColumn(REJECT_REASON, F.lit("exact_duplicate"))
                .withColumnRenamed("_survivor", "duplicate_of").drop("_key"))

    def stats(kept_df, rejected_df):
        groups = rejected_df.select("duplicate_of").distinct().count() if rejected_df is not None else 0
        return {"duplicate_groups": groups}

    return StageOutput(kept, rejected, stats)

