"""The deterministic shard writer: how rows are cut into shards, and what it counts while writing."""
from __future__ import annotations

import pyarrow.parquet as pq

from curate.io.shards import reason_counts, total_chars, write_shards


def test_a_numeric_order_column_that_is_not_a_position_still_gives_at_most_rows_per_shard_shards(spark, tmp_path):
    """Ordering by a hash-like column must not write one file per distinct value."""
    rows = [(f"d{i}", (i * 2654435761) % 2**61 - 2**60, "x" * i) for i in range(50)]
    df = spark.createDataFrame(rows, "id string, h long, text string").repartition(3)
    shards = write_shards(df, tmp_path / "out", order_by="h", rows_per_shard=10)
    assert len(shards) <= 5 and sum(s.rows for s in shards) == 50
    for s in shards:  # each shard sorted by the column
        values = pq.read_table(tmp_path / s.file).column("h").to_pylist()
        assert values == sorted(values)


def test_the_writer_counts_characters_and_reject_reasons(spark, tmp_path):
    rows = [("a", "héllo", "short"), ("b", "wörld!", "short"), ("c", "", "empty")]
    df = spark.createDataFrame(rows, "id string, text string, reject_reason string")
    shards = write_shards(df, tmp_path / "out", rows_per_shard=2)
    assert total_chars(shards) == 11  # code points, as Spark's length()
    assert reason_counts(shards) == {"empty": 1, "short": 2}
