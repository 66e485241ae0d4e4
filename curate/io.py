"""Corpus I/O: readers with quarantine accounting, deterministic shard writers.

Readers turn JSONL(.gz/.zst) or Parquet — a file, a directory or a glob — into a
DataFrame of documents (``id``, ``text``, carried columns) plus a DataFrame of quarantine
records (``file``, ``line``, ``kind``, ``reason``, ``snippet``). Writers produce shards whose
bytes depend only on the rows, never on partitioning or input file order.
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, asdict, field
from pathlib import Path
from typing import Any

from curate.core import ID, TEXT, CurateError
from curate.jsonl import ParseOptions, parse_file

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".json", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
QUARANTINE_COLUMNS = ["file", "line", "kind", "reason", "snippet"]
MANIFEST = "_manifest.json"


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
    from curate.localdocs import write_local_docs

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


# ---------------------------------------------------------------- writing

@dataclass
class Shard:
    file: str
    rows: int
    bytes: int
    sha256: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_shards(df, out_dir: Path, *, order_by: str | list[str] = ID, rows_per_shard: int = 100_000,
                 fmt: str = "parquet", total_rows: int | None = None) -> list[Shard]:
    """Write ``df`` as deterministic shards ``part-NNNNN.<fmt>`` under ``out_dir``.

    Rows go to shard ``hash(key) mod n`` when ordered by ``id`` (or by a list of key
    columns), or to ``order // rows_per_shard`` for a numeric order column; they are sorted
    within the shard, and the shard count depends only on the row count. Parquet shards are
    written by pyarrow inside the tasks (Spark's own writer records column encodings in a
    JVM-hash-dependent order), so the bytes depend on nothing but the rows.
    """
    from pyspark.sql import functions as F

    if fmt not in ("parquet", "jsonl"):
        raise CurateError(f"output format must be parquet or jsonl, got '{fmt}'")
    rows = df.count() if total_rows is None else total_rows
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rows == 0:
        return []
    n = max(1, -(-rows // rows_per_shard))
    keys = [order_by] if isinstance(order_by, str) else list(order_by)
    if keys == [ID] or len(keys) > 1:
        shard = F.pmod(F.xxhash64(*keys), F.lit(n))
    else:
        shard = F.floor(F.col(keys[0]) / F.lit(rows_per_shard)).cast("long")
        keys = keys + ([ID] if ID in df.columns else [])
    arranged = df.withColumn("_shard", shard).repartition(n, "_shard").sortWithinPartitions("_shard", *keys)
    if fmt == "parquet":
        described = arranged.mapInArrow(_parquet_shard_writer(str(out_dir)), _SHARD_INFO_SCHEMA)
        found = sorted(tuple(r) for r in described.collect())  # one small row per shard
        return [Shard(f"{out_dir.name}/{name}", rows_, bytes_, sha) for _, name, rows_, bytes_, sha in found]
    staging = out_dir.parent / f".{out_dir.name}-spark"
    (arranged.write.mode("overwrite").partitionBy("_shard").option("compression", "none")
     .option("ignoreNullFields", "false").json(str(staging)))
    return _collect_json_shards(staging, out_dir)


_SHARD_INFO_SCHEMA = "shard long, name string, rows long, bytes long, sha256 string"
ROW_GROUP_ROWS = 10_000


def _parquet_shard_writer(out_dir: str):
    """mapInArrow function: stream rows sorted by ``_shard`` into one zstd Parquet file per shard.

    Row groups hold exactly ``ROW_GROUP_ROWS`` rows (the last one fewer), whatever the
    incoming batch sizes; files appear under their final name only once complete.
    """

    def run(batches):
        import pyarrow as pa
        import pyarrow.parquet as pq

        state = {"shard": None, "writer": None, "buffer": [], "buffered": 0, "rows": 0, "tmp": None}
        infos = []

        def flush(force: bool):
            while state["buffered"] >= ROW_GROUP_ROWS or (force and state["buffered"]):
                table = pa.Table.from_batches(state["buffer"])
                head, rest = table.slice(0, ROW_GROUP_ROWS), table.slice(ROW_GROUP_ROWS)
                state["writer"].write_table(head, row_group_size=ROW_GROUP_ROWS)
                state["rows"] += head.num_rows
                state["buffer"], state["buffered"] = rest.to_batches(), rest.num_rows

        def finish():
            if state["writer"] is None:
                return
            flush(True)
            state["writer"].close()
            name = f"part-{state['shard']:05d}.parquet"
            final = os.path.join(out_dir, name)
            os.replace(state["tmp"], final)
            infos.append((state["shard"], name, state["rows"], os.path.getsize(final), sha256_file(Path(final))))
            state.update(writer=None, rows=0)

        for batch in batches:
            shards = batch.column("_shard").to_numpy()
            data = batch.drop_columns(["_shard"])
            start = 0
            while start < len(shards):
                value = int(shards[start])
                end = start + int((shards[start:] != value).argmax() or len(shards) - start)
                if value != state["shard"] or state["writer"] is None:
                    finish()
                    state["shard"] = value
                    state["tmp"] = os.path.join(out_dir, f".part-{value:05d}.parquet.{os.getpid()}.tmp")
                    state["writer"] = pq.ParquetWriter(state["tmp"], data.schema, compression="zstd")
                piece = data.slice(start, end - start)
                state["buffer"].append(piece)
                state["buffered"] += piece.num_rows
                flush(False)
                start = end
        finish()
        if infos:
            cols = list(zip(*infos))
            yield pa.RecordBatch.from_arrays(
                [pa.array(cols[0], pa.int64()), pa.array(cols[1]), pa.array(cols[2], pa.int64()),
                 pa.array(cols[3], pa.int64()), pa.array(cols[4])],
                names=["shard", "name", "rows", "bytes", "sha256"])

    return run


def _collect_json_shards(staging: Path, out_dir: Path) -> list[Shard]:
    """Move Spark's ``_shard=k/part-*`` JSON files to ``part-0000k.jsonl`` and describe them."""
    shards = []
    for sub in sorted(staging.glob("_shard=*"), key=lambda p: int(p.name.split("=")[1])):
        parts = sorted(p for p in sub.iterdir() if p.name.startswith("part-") and not p.name.endswith(".crc"))
        if len(parts) != 1:
            raise RuntimeError(f"expected one file per shard in {sub}, found {len(parts)}")
        target = out_dir / f"part-{int(sub.name.split('=')[1]):05d}.jsonl"
        shutil.move(str(parts[0]), target)
        shards.append(Shard(f"{out_dir.name}/{target.name}", _count_rows(target, "jsonl"),
                            target.stat().st_size, sha256_file(target)))
    shutil.rmtree(staging)
    return shards


def _count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def shard_dicts(shards: list[Shard]) -> list[dict]:
    return [asdict(s) for s in shards]


# ---------------------------------------------------------------- reading stage outputs

def load_manifest(stage_dir: Path) -> dict | None:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_stage(spark, stage_dir: Path, which: str = "data"):
    """The rows of a completed stage (``data`` or ``rejected``), as listed by its manifest."""
    from pyspark.sql.types import StructType

    stage_dir = Path(stage_dir)
    manifest = load_manifest(stage_dir)
    if manifest is None:
        raise CurateError(f"{stage_dir} is not a complete stage (no {MANIFEST})")
    outputs = manifest["outputs"].get(which)
    if outputs is None:
        raise CurateError(f"stage {stage_dir.name} has no '{which}' output")
    schema = StructType.fromJson(outputs["schema"])
    files = [str(stage_dir / s["file"]) for s in outputs["shards"]]
    if not files:
        return spark.createDataFrame([], schema)
    reader = spark.read.schema(schema)
    return reader.parquet(*files) if outputs["format"] == "parquet" else reader.json(*files)


def last_complete_stage(output_dir: Path) -> Path | None:
    """The final export if present, else the highest-numbered complete stage directory."""
    output_dir = Path(output_dir)
    final = output_dir / "final"
    if load_manifest(final):
        return final
    stages = sorted(p for p in output_dir.glob("[0-9][0-9]-*") if load_manifest(p))
    return stages[-1] if stages else None


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
