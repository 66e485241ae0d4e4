"""Reading raw input with quarantine accounting.

JSONL(.gz/.zst) or Parquet — a file, a directory or a glob — becomes a DataFrame of
documents (``id``, ``text``, carried columns) plus a DataFrame of quarantine records
(``file``, ``line``, ``kind``, ``reason``, ``snippet``).
"""
from __future__ import annotations

import glob as globlib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core import ID, TEXT, CurateError
from curate.io.jsonl import ParseOptions, parse_file
from curate.io.shards import last_complete_stage, load_manifest, read_stage

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".json", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
QUARANTINE_COLUMNS = ["file", "line", "kind", "reason", "snippet"]

@dataclass(frozen=True)
class InputSpec:
    path: str
    format: str = "auto"  # auto | jsonl | parquet
    text_field: str = "text"
    id_field: str = "id"
    utf8: str = "replace"  # replace | strict


@dataclass
class ReadResult:
    docs: Any  # DataFrame: id, text, carried columns
    quarantine: Any  # DataFrame: QUARANTINE_COLUMNS
    root: Path
    files: list[str]
    cached: list = field(default_factory=list)  # persisted frames to release after writing

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


# ---------------------------------------------------------------- listing

def list_input_files(path: str | Path) -> tuple[Path, list[str]]:
    """Resolve a file, directory (recursive) or glob to (root, sorted relative paths)."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        matches = sorted(Path(p).resolve() for p in globlib.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path(".")
    else:
        p = Path(text).expanduser().resolve()
        if p.is_file():
            root, files = p.parent, [p]
        elif p.is_dir():
            root = p
            files = sorted(f for f in p.rglob("*") if f.is_file() and _is_data_file(f))
        else:
            raise CurateError(f"input not found: {path}")
    if not files:
        raise CurateError(f"no input files (.jsonl, .jsonl.gz, .jsonl.zst, .parquet) under {path}")
    return root, sorted(str(f.relative_to(root)) for f in files)


def _is_data_file(path: Path) -> bool:
    name = path.name
    return not name.startswith((".", "_")) and name.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)


def detect_format(files: list[str], fmt: str) -> str:
    if fmt != "auto":
        if fmt not in ("jsonl", "parquet"):
            raise CurateError(f"input format must be jsonl, parquet or auto, got '{fmt}'")
        return fmt
    kinds = {"parquet" if f.endswith(PARQUET_SUFFIXES) else "jsonl" for f in files}
    if len(kinds) > 1:
        raise CurateError("input mixes JSONL and Parquet files; point it at one kind (or set input.format)")
    return kinds.pop()


def fingerprint_files(root: Path, files: list[str]) -> str:
    """Order-independent fingerprint of input files: relative path, size and mtime."""
    h = hashlib.sha256()
    for rel in sorted(files):
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


BUILTIN_PREFIX = "builtin:"


def materialize_builtin(spec: InputSpec, output_dir: Path) -> InputSpec:
    """Resolve ``builtin:local-docs`` to a JSONL harvested once into ``<output>/_builtin/``."""
    if not spec.path.startswith(BUILTIN_PREFIX):
        return spec
    name = spec.path[len(BUILTIN_PREFIX):]
    if name != "local-docs":
        raise CurateError(f"unknown builtin corpus '{name}'; available: local-docs")
    from curate.io.localdocs import write_local_docs

    target = Path(output_dir) / "_builtin" / f"{name}.jsonl"
    if not target.is_file():
        write_local_docs(target)
    return InputSpec(**{**spec.__dict__, "path": str(target)})


# ---------------------------------------------------------------- reading

def read_documents(spark, spec: InputSpec) -> ReadResult:
    """Read raw input with full accounting: every line is a document or a quarantine record."""
    root, files = list_input_files(spec.path)
    fmt = detect_format(files, spec.format)
    reader = _read_parquet if fmt == "parquet" else _read_jsonl
    docs, quarantine, cached = reader(spark, root, files, spec)
    docs, dup_quarantine = _quarantine_duplicate_ids(docs)
    quarantine = quarantine.unionByName(dup_quarantine)
    return ReadResult(docs, quarantine, root, files, cached)


_PARSED_SCHEMA = (
    "file string, line long, kind string, id string, text string, extra string, "
    "reason string, snippet string, repairs string"
)


def _parse_partitions(root: str, files: list[str], opts: ParseOptions, fingerprint: str,
                      batch_bytes: int = 32 << 20):
    """mapInArrow function: partition i parses file i into Arrow batches of Parsed rows.

    ``fingerprint`` is unused by the function itself: it makes the plan of a changed input
    differ from a cached one, so Spark never serves stale cached rows.
    """
    import pyarrow as pa

    fields = ["file", "line", "kind", "id", "text", "extra", "reason", "snippet", "repairs"]

    def to_batch(rows):
        cols = {f: [getattr(r, f) for r in rows] for f in fields}
        return pa.RecordBatch.from_pydict(
            cols, schema=pa.schema([(f, pa.int64() if f == "line" else pa.large_string()) for f in fields]))

    def run(batches, _fingerprint=fingerprint):
        for batch in batches:
            for index in batch.column(0).to_pylist():
                rel = files[index]
                rows, size = [], 0
                for rec in parse_file(Path(root) / rel, rel, opts):
                    rows.append(rec)
                    size += len(rec.text or "") + len(rec.extra or "")
                    if len(rows) >= 2000 or size >= batch_bytes:
                        yield to_batch(rows)
                        rows, size = [], 0
                if rows:
                    yield to_batch(rows)

    return run


def _read_jsonl(spark, root: Path, files: list[str], spec: InputSpec):
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    opts = ParseOptions(spec.text_field, spec.id_field, spec.utf8)
    parsed = (
        spark.range(0, len(files), 1, numPartitions=len(files))
        .mapInArrow(_parse_partitions(str(root), files, opts, fingerprint_files(root, files)), _PARSED_SCHEMA)
        .persist(StorageLevel.DISK_ONLY)
    )
    good = parsed.filter(F.col("kind") == "doc")
    quarantine = parsed.filter(F.col("kind") != "doc").select(*QUARANTINE_COLUMNS)
    docs = good.select(ID, TEXT, "extra", "repairs", F.col("file").alias("_file"), F.col("line").alias("_line"))
    extras = good.select("extra").filter(F.col("extra").isNotNull())
    if extras.limit(1).count():
        schema = spark.read.json(extras).schema
        docs = docs.withColumn("_x", F.from_json("extra", schema)).select(
            ID, TEXT, "_x.*", "repairs", "_file", "_line")
    else:
        docs = docs.drop("extra")
    return docs, quarantine, [parsed]


def _read_parquet(spark, root: Path, files: list[str], spec: InputSpec):
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    readable, bad = [], []
    for rel in files:
        path = root / rel
        if path.stat().st_size == 0:
            bad.append((rel, 0, "file", "empty_file", None))
            continue
        try:
            pq.read_metadata(path)
            readable.append(rel)
        except Exception as exc:  # pyarrow raises several types for corrupt footers
            bad.append((rel, 0, "file", f"corrupt_file: {exc}"[:300], None))
    quarantine_files = spark.createDataFrame(bad, "file string, line long, kind string, reason string, snippet string")
    if not readable:
        empty = spark.createDataFrame([], f"{ID} string, {TEXT} string, repairs string, _file string, _line long")
        return empty, quarantine_files, []
    raw = spark.read.parquet(*[str(root / r) for r in readable])
    if spec.text_field not in raw.columns:
        raise CurateError(f"parquet input has no '{spec.text_field}' column (columns: {', '.join(raw.columns)});"
                          " set input.text_field")
    if not isinstance(raw.schema[spec.text_field].dataType, StringType):
        raise CurateError(f"parquet column '{spec.text_field}' is {raw.schema[spec.text_field].dataType.simpleString()}, not string")
    prefix = "^(file:)?(//)?" + re.escape(str(root.resolve())) + "/?"
    rel_file = F.regexp_replace(F.col("_metadata.file_path"), prefix, "")
    df = raw.select("*", rel_file.alias("_file"), (F.col("_metadata.row_index") + 1).alias("_line"))
    text = F.col(spec.text_field)
    reason = (F.when(text.isNull(), "null_text")
               .when(F.trim(F.regexp_replace(text, "\u0000", "")) == "", "empty_text"))
    df = df.withColumn("_reason", reason)
    quarantine = df.filter(F.col("_reason").isNotNull()).select(
        F.col("_file").alias("file"), F.col("_line").alias("line"), F.lit("record").alias("kind"),
        F.col("_reason").alias("reason"), F.substring(F.coalesce(text, F.lit("")), 1, 200).alias("snippet"))
    ok = df.filter(F.col("_reason").isNull()).drop("_reason")
    generated = F.concat_ws(":", F.col("_file"), F.col("_line").cast("string"))
    doc_id = (F.coalesce(F.nullif(F.col(spec.id_field).cast("string"), F.lit("")), generated)
              if spec.id_field in raw.columns else generated)
    has_nul = F.instr(text, "\u0000") > 0
    carried = [c for c in raw.columns if c not in (spec.text_field, spec.id_field)]
    renamed = [F.col(c).alias(f"{c}_original") if c in (ID, TEXT) else F.col(c) for c in carried]
    docs = ok.select(
        doc_id.alias(ID), F.regexp_replace(text, "\u0000", "").alias(TEXT), *renamed,
        F.when(has_nul, F.lit("nul_removed")).alias("repairs"), "_file", "_line")
    return docs, quarantine_files.unionByName(quarantine), []


def _quarantine_duplicate_ids(docs):
    """Keep the first occurrence of each id by (file, line); quarantine the rest."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(ID).orderBy("_file", "_line")
    ranked = docs.withColumn("_rank", F.row_number().over(w)).withColumn(
        "_first", F.first(F.concat_ws(":", "_file", F.col("_line").cast("string"))).over(w))
    dups = ranked.filter(F.col("_rank") > 1).select(
        F.col("_file").alias("file"), F.col("_line").alias("line"), F.lit("record").alias("kind"),
        F.concat(F.lit("duplicate_id: first at "), F.col("_first")).alias("reason"),
        F.substring(F.col(ID), 1, 200).alias("snippet"))
    kept = ranked.filter(F.col("_rank") == 1).drop("_rank", "_first")
    return kept, dups


def read_source(spark, path: str | Path, *, text_field: str = "text", id_field: str = "id"):
    """Documents from a stage directory, a pipeline output directory, or raw files.

    Raw files go through the quarantining reader; quarantined lines are skipped here
    (callers that must account for them use :func:`read_documents`).
    """
    p = Path(path)
    if p.is_dir() and load_manifest(p):
        return read_stage(spark, p)
    if p.is_dir() and (stage := last_complete_stage(p)) is not None:
        return read_stage(spark, stage)
    result = read_documents(spark, InputSpec(str(path), text_field=text_field, id_field=id_field))
    return result.docs.drop("repairs", "_file", "_line")
