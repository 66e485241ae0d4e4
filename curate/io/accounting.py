"""Read accounting: write the documents and the quarantine of ``00-read`` and count everything.

Every input line is a document or a quarantine record (``rows_in = rows_out + quarantined``);
repairs (BOM, invalid UTF-8, NUL) are counted per kind; file-level problems are listed.
"""
from __future__ import annotations

from curate.core import ID
from curate.io.layout import DATA_DIR, QUARANTINE_DIR
from curate.io.read import QUARANTINE_COLUMNS
from curate.io.shards import total_chars, write_shards

QUARANTINE_ORDER = ["file", "line", "kind", "reason"]


def write_verified(df, out_dir: str, *, order_by, rows_per_shard: int, fmt: str = "parquet", cache: bool = True,
                   rows: int | None = None):
    """Count, write shards, and check the shards hold exactly the counted rows.

    With ``cache`` the rows are persisted first, so an expensive ``df`` is computed once for the
    count and the write; without it ``df`` is computed twice, which is cheaper when it is a scan
    of files (the count then reads almost no columns). ``rows``: the count, when the caller
    already has it (the written shards are still checked against it)."""
    from pyspark import StorageLevel

    if cache:
        df = df.persist(StorageLevel.DISK_ONLY)
    try:
        rows = df.count() if rows is None else rows
        shards = write_shards(df, out_dir, order_by=order_by, rows_per_shard=rows_per_shard, fmt=fmt,
                              total_rows=rows)
    finally:
        if cache:
            df.unpersist()
    written = sum(s.rows for s in shards)
    if written != rows:
        raise RuntimeError(f"{out_dir}: wrote {written} rows, expected {rows}")
    return shards


def repair_counts(docs) -> dict[str, int]:
    from pyspark.sql import functions as F

    return {r["repair"]: r["count"] for r in docs.filter(F.col("repairs").isNotNull())
            .select(F.explode(F.split("repairs", ",")).alias("repair"))
            .groupBy("repair").count().orderBy("repair").collect()}


def materialize_read(spark, result, work, quarantine_work, rows_per_shard: int) -> tuple[dict, dict]:
    """Write ``result`` (a ReadResult) into the read attempt and the quarantine attempt.

    Returns the read manifest's ``outputs`` and its stats; commits the quarantine directory.
    """
    repairs = repair_counts(result.docs)
    docs = result.docs.drop("repairs", "_file", "_line")
    scan = result.spill is not None  # spilled JSONL rows: recomputing is a file scan, cheaper than a cache
    shards = write_verified(docs, work.path(DATA_DIR), order_by=ID, rows_per_shard=rows_per_shard, cache=not scan)
    data = work.entry(shards, docs.schema, "parquet")
    quarantine = write_quarantine(spark, result.quarantine, quarantine_work, rows_per_shard, cache=not scan)
    rows_out = data["rows"]
    stats = {"files": len(result.files), "rows_in": rows_out + quarantine["records"], "rows_out": rows_out,
             "quarantined": quarantine["records"], "quarantine_reasons": quarantine["reasons"],
             "file_problems": quarantine["file_problems"], "repairs": repairs,
             "chars_out": total_chars(shards)}
    if quarantine["skipped"]:  # web archives: records that are not documents by design (requests, metadata …)
        stats["skipped_records"] = quarantine["skipped"]
    return {"data": data, "quarantine": quarantine["entry"]}, stats


def summarize_quarantine(written) -> tuple[dict[str, int], dict[str, int], list[dict], dict[str, int]]:
    """``(records by kind, record reasons by their leading word, file problems, skipped records by
    type)`` in one Spark job. Skipped counts come from the per-file ``skipped`` rows of web archives."""
    from pyspark.sql import functions as F

    is_record, is_file = F.col("kind") == "record", F.col("kind") == "file"
    rows = written.select(
        "kind", F.when(is_record, F.regexp_extract("reason", r"^([a-z_0-9]+)", 1)).alias("word"),
        F.when(is_file, F.col("file")).alias("problem_file"),
        F.when(is_file | (F.col("kind") == "skipped"), F.col("reason")).alias("problem"),
    ).groupBy("kind", "word", "problem_file", "problem").count().collect()
    by_kind: dict[str, int] = {}
    reasons: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["count"]
        if r["kind"] == "record":
            reasons[r["word"]] = reasons.get(r["word"], 0) + r["count"]
        elif r["kind"] == "skipped":
            for record_type, n in skipped_types(r["problem"]).items():
                skipped[record_type] = skipped.get(record_type, 0) + n * r["count"]
    problems = sorted(({"file": r["problem_file"], "reason": r["problem"]} for r in rows if r["kind"] == "file"
                       for _ in range(r["count"])), key=lambda p: (p["file"], p["reason"]))
    return dict(sorted(by_kind.items())), dict(sorted(reasons.items())), problems, dict(sorted(skipped.items()))


def skipped_types(reason: str) -> dict[str, int]:
    """``"record_types: request=14, warcinfo=1"`` (a web archive's skipped summary) as a dict."""
    _, _, detail = reason.partition(":")
    pairs = (item.strip().rpartition("=") for item in detail.split(",") if "=" in item)
    return {name: int(n) for name, _, n in pairs}


def write_quarantine(spark, quarantine_df, work, rows_per_shard: int, cache: bool = True) -> dict:
    """Write quarantine records as JSONL into ``work`` (``<output>/_quarantine/``), commit, count them."""
    df = quarantine_df.select(*QUARANTINE_COLUMNS)
    shards = write_verified(df, work.path(DATA_DIR), order_by=QUARANTINE_ORDER, rows_per_shard=rows_per_shard,
                            fmt="jsonl", cache=cache)
    entry = work.entry(shards, df.schema, "jsonl")
    by_kind, reasons, problems, skipped = summarize_quarantine(work.read(spark, entry)) if shards else ({}, {}, [], {})
    work.commit({"stage": "quarantine", "outputs": {"data": entry}, "stats": {"records": by_kind}})
    root = "/".join(p for p in ("..", QUARANTINE_DIR, entry.get("root", "")) if p)
    return {"records": by_kind.get("record", 0), "reasons": reasons, "file_problems": problems,
            "skipped": skipped, "entry": {**entry, "root": root}}
