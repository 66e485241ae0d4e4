"""Append score columns computed over Arrow batches of ``text`` (one vectorised pass)."""
from __future__ import annotations

from typing import Iterator

import pandas as pd

from curate.core import TEXT


def append_struct(df, name: str, fields: dict, batch_fn):
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


def chunked(fn, batch_size: int):
    """Apply ``fn`` to slices of at most ``batch_size`` texts and concatenate the fields."""
    import numpy as np

    def run(texts):
        parts = [fn(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)] or [fn([])]
        return {f: np.concatenate([p[f] for p in parts]) for f in parts[0]}

    return run

