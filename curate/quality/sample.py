"""``sample`` and ``head``: deterministic subsets by a seeded id hash or by id order."""
from __future__ import annotations

from curate.core import ID, REJECT_REASON, CurateError, StageContext, StageOutput, stage

UNIT_SCALE = float(1 << 53)


def unit_hash(seed: int, *cols):
    """A uniform number in [0, 1) from a seeded 64-bit hash of ``cols`` (deterministic)."""
    from pyspark.sql import functions as F

    h = F.xxhash64(F.lit(seed), *cols)
    return F.pmod(h, F.lit(1 << 53)).cast("double") / F.lit(UNIT_SCALE)



@stage("sample")
def sample(df, ctx: StageContext, *, fraction: float, seed: int | None = None) -> StageOutput:
    """Keep a deterministic ``fraction`` of documents, chosen by a seeded hash of the id."""
    from pyspark.sql import functions as F

    if not 0.0 <= fraction <= 1.0:
        raise CurateError(f"sample: fraction must be in [0, 1], got {fraction}")
    u = unit_hash(ctx.seed if seed is None else seed, F.col(ID))
    marked = df.withColumn("_u", u)
    kept = marked.filter(F.col("_u") < fraction).drop("_u")
    rejected = marked.filter(F.col("_u") >= fraction).drop("_u").withColumn(REJECT_REASON, F.lit("sample"))
    return StageOutput(kept, rejected)


@stage("head")
def head(df, ctx: StageContext, *, n: int = 1000) -> StageOutput:
    """Keep the first ``n`` documents by id (for quick looks)."""
    from pyspark.sql import functions as F

    if n < 0:
        raise CurateError(f"head: n must be >= 0, got {n}")
    cutoff = df.select(ID).orderBy(ID).limit(n).agg(F.max(ID)).first()[0] if n else None
    if cutoff is None:
        return StageOutput(df.limit(0), df.withColumn(REJECT_REASON, F.lit("head")))
    kept = df.filter(F.col(ID) <= cutoff)
    rejected = df.filter(F.col(ID) > cutoff).withColumn(REJECT_REASON, F.lit("head"))
    return StageOutput(kept, rejected)
