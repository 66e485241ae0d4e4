"""Deterministic shard writers and the one reader of committed stage outputs.

Writers produce shards whose bytes depend only on the rows, never on partitioning or input
file order. Every shard (Parquet or JSONL) is written by the Spark task itself through
:mod:`curate.io.fs`, so the output may be a local path or an object-store URI and no
executor needs the driver's disk. Readers read exactly the shards a committed manifest lists.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from curate.core import ID, REJECT_REASON, TEXT, CurateError
from curate.io import fs
from curate.io.layout import FINAL_DIR, MANIFEST

FORMATS = ("parquet", "jsonl")
ROW_GROUP_ROWS = 10_000
_SHARD_INFO_SCHEMA = ("shard long, name string, rows long, bytes long, sha256 string, chars long,"
                      " reasons map<string, long>")


@dataclass
class Shard:
    """A written shard. ``chars`` (characters of ``text``) and ``reasons`` (rows per
    ``reject_reason``) are counted by the writer as it writes, so stage stats need no extra
    Spark job; the manifest lists only file, rows, bytes and sha256."""

    file: str
    rows: int
    bytes: int
    sha256: str
    chars: int = 0
    reasons: dict = field(default_factory=dict)


def shard_dicts(shards: list[Shard]) -> list[dict]:
    return [{"file": s.file, "rows": s.rows, "bytes": s.bytes, "sha256": s.sha256} for s in shards]


def total_chars(shards: list[Shard]) -> int:
    return sum(s.chars for s in shards)


def reason_counts(shards: list[Shard]) -> dict[str, int]:
    """Rows per ``reject_reason`` over ``shards``, sorted by reason."""
    counts: dict[str, int] = {}
    for s in shards:
        for reason, n in s.reasons.items():
            counts[reason] = counts.get(reason, 0) + n
    return dict(sorted(counts.items()))


def write_shards(df, out_dir: str | Path, *, order_by: str | list[str] = ID, rows_per_shard: int = 100_000,
                 fmt: str = "parquet", total_rows: int | None = None) -> list[Shard]:
    """Write ``df`` as deterministic shards ``part-NNNNN.<fmt>`` under ``out_dir`` (a path or URI).

    Rows go to shard ``hash(key) mod n`` when ordered by ``id`` (or by a list of key
    columns), or to ``order // rows_per_shard`` for a numeric order column; they are sorted
    within the shard, and the shard count depends only on the row count. Shards are written
    by pyarrow (Parquet) or by Python (JSONL) inside the tasks — Spark's own writers record
    column encodings in a JVM-dependent order and cannot reach an object store without the
    Hadoop connectors — so the bytes depend on nothing but the rows.
    """
    from pyspark.sql import functions as F

    if fmt not in FORMATS:
        raise CurateError(f"output format must be parquet or jsonl, got '{fmt}'")
    rows = df.count() if total_rows is None else total_rows
    fs.makedirs(out_dir)
    if rows == 0:
        return []
    n = max(1, -(-rows // rows_per_shard))
    keys = [order_by] if isinstance(order_by, str) else list(order_by)
    if keys == [ID] or len(keys) > 1:
        shard = F.pmod(F.xxhash64(*keys), F.lit(n))
    else:
        # Meant for a position column (0 .. rows-1); clamped so any other numeric column (a hash)
        # still gives at most n shards instead of one file per distinct value.
        position = F.floor(F.col(keys[0]) / F.lit(rows_per_shard)).cast("long")
        shard = F.least(F.greatest(position, F.lit(0)), F.lit(n - 1))
        keys = keys + ([ID] if ID in df.columns else [])
    arranged = df.withColumn("_shard", shard).repartition(n, "_shard").sortWithinPartitions("_shard", *keys)
    described = arranged.mapInArrow(_shard_writer(str(out_dir), fmt), _SHARD_INFO_SCHEMA)
    found = sorted(described.collect(), key=lambda r: r["shard"])  # one small row per shard
    return [Shard(f"{fs.name(out_dir)}/{r['name']}", r["rows"], r["bytes"], r["sha256"], r["chars"],
                  dict(r["reasons"] or {})) for r in found]


class _HashingSink:
    """A binary file wrapper that hashes and counts every byte written through it."""

    def __init__(self, raw):
        self.raw, self.sha, self.size, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.raw.close()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class _ShardFile:
    """One shard being written: a temp name locally (renamed when complete), one object remotely
    (an object-store upload becomes visible only when it completes)."""

    def __init__(self, out_dir: str, name: str):
        self.final = fs.join(out_dir, name)
        self.tmp = None if fs.is_remote(out_dir) else fs.join(out_dir, f".{name}.{os.getpid()}.tmp")
        self.sink = _HashingSink(fs.open_file(self.tmp or self.final, "wb"))

    def commit(self) -> tuple[int, str]:
        self.sink.close()
        if self.tmp:
            os.replace(self.tmp, self.final)
        return self.sink.size, self.sink.sha.hexdigest()


def _encode_jsonl(table) -> bytes:
    """Rows as JSON lines (nulls kept, UTF-8 unescaped, compact separators)."""
    rows = table.to_pylist()
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                   for r in rows).encode("utf-8")


def _shard_writer(out_dir: str, fmt: str):
    """mapInArrow function: stream rows sorted by ``_shard`` into one file per shard.

    Parquet row groups hold exactly ``ROW_GROUP_ROWS`` rows (the last one fewer), whatever the
    incoming batch sizes; files appear under their final name only once complete.
    """

    def run(batches):
        import pyarrow as pa
        import pyarrow.parquet as pq

        state = {"shard": None, "file": None, "writer": None, "buffer": [], "buffered": 0, "rows": 0,
                 "chars": 0, "reasons": {}}
        infos = []

        def count(table):
            state["rows"] += table.num_rows
            state["chars"] += _chars(table)
            for reason, n in _reasons(table).items():
                state["reasons"][reason] = state["reasons"].get(reason, 0) + n

        def write(table):
            if fmt == "parquet":
                state["writer"].write_table(table, row_group_size=ROW_GROUP_ROWS)
            else:
                state["file"].sink.write(_encode_jsonl(table))
            count(table)

        def flush(force: bool):
            while state["buffered"] >= ROW_GROUP_ROWS or (force and state["buffered"]):
                table = pa.Table.from_batches(state["buffer"])
                head, rest = table.slice(0, ROW_GROUP_ROWS), table.slice(ROW_GROUP_ROWS)
                write(head)
                state["buffer"], state["buffered"] = rest.to_batches(), rest.num_rows

        def finish():
            if state["file"] is None:
                return
            flush(True)
            if state["writer"] is not None:
                state["writer"].close()
            size, sha = state["file"].commit()
            infos.append((state["shard"], fs.name(state["file"].final), state["rows"], size, sha, state["chars"],
                          state["reasons"]))
            state.update(file=None, writer=None, rows=0, chars=0, reasons={})

        def start(value: int, schema):
            state["shard"] = value
            state["file"] = _ShardFile(out_dir, f"part-{value:05d}.{fmt}")
            if fmt == "parquet":
                state["writer"] = pq.ParquetWriter(state["file"].sink, schema, compression="zstd")

        for batch in batches:
            shards = batch.column("_shard").to_numpy()
            data = batch.drop_columns(["_shard"])
            begin = 0
            while begin < len(shards):
                value = int(shards[begin])
                end = begin + int((shards[begin:] != value).argmax() or len(shards) - begin)
                if value != state["shard"] or state["file"] is None:
                    finish()
                    start(value, data.schema)
                piece = data.slice(begin, end - begin)
                state["buffer"].append(piece)
                state["buffered"] += piece.num_rows
                flush(False)
                begin = end
        finish()
        if infos:
            cols = list(zip(*infos))
            yield pa.RecordBatch.from_arrays(
                [pa.array(cols[0], pa.int64()), pa.array(cols[1]), pa.array(cols[2], pa.int64()),
                 pa.array(cols[3], pa.int64()), pa.array(cols[4]), pa.array(cols[5], pa.int64()),
                 pa.array([list(r.items()) for r in cols[6]], pa.map_(pa.string(), pa.int64()))],
                names=["shard", "name", "rows", "bytes", "sha256", "chars", "reasons"])

    return run


def _chars(table) -> int:
    """Characters (code points, as Spark's ``length``) of the ``text`` column, 0 without one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if TEXT not in table.column_names or not pa.types.is_string(table.schema.field(TEXT).type) and \
            not pa.types.is_large_string(table.schema.field(TEXT).type):
        return 0
    return int(pc.sum(pc.utf8_length(table.column(TEXT))).as_py() or 0)


def _reasons(table) -> dict[str, int]:
    """Rows per ``reject_reason`` value (a missing reason counts as ``"null"``)."""
    if REJECT_REASON not in table.column_names:
        return {}
    counts = table.column(REJECT_REASON).value_counts()
    return {str(v.as_py()) if v.as_py() is not None else "null": c.as_py()
            for v, c in zip(counts.field(0), counts.field(1))}


# ---------------------------------------------------------------- reading committed outputs

def load_manifest(stage_dir: str | Path) -> dict | None:
    """The committed manifest of a stage directory (path or URI), or None when there is none."""
    try:
        return json.loads(fs.read_bytes(fs.join(stage_dir, MANIFEST)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    except OSError:
        return None


def shard_uris(stage_dir: str | Path, entry: dict) -> list[str]:
    """Locations of the shards an output entry of a manifest lists (relative to the stage dir
    and the entry's ``root``, the attempt prefix on object stores)."""
    base = fs.join(stage_dir, entry["root"]) if entry.get("root") else str(stage_dir)
    return [fs.join(base, s["file"]) for s in entry["shards"]]


def read_shards(spark, stage_dir: str | Path, entry: dict):
    """The one reader of stage outputs: the shards listed in a manifest ``entry`` as a DataFrame."""
    from pyspark.sql.types import StructType

    return read_files(spark, shard_uris(stage_dir, entry), entry["format"], StructType.fromJson(entry["schema"]))


def read_files(spark, files: list[str], fmt: str, schema):
    """Parquet or JSONL ``files`` (paths or URIs) as a DataFrame of ``schema``.

    Local files go through Spark's native readers; object-store files are read inside the
    tasks with pyarrow through fsspec (one task per file), so no Hadoop connector is needed.
    """
    if not files:
        return spark.createDataFrame([], schema)
    if not any(fs.is_remote(f) for f in files):
        reader = spark.read.schema(schema)
        local = [fs.strip_file_scheme(f) for f in files]
        return reader.parquet(*local) if fmt == "parquet" else reader.json(*local)
    return (spark.range(0, len(files), 1, numPartitions=len(files))
            .mapInArrow(_shard_reader(files, fmt, schema), schema))


def _shard_reader(files: list[str], fmt: str, schema):
    """mapInArrow function: partition i reads shard i with pyarrow (Parquet or JSONL)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)

    def run(batches):
        import pyarrow.json as pj
        import pyarrow.parquet as pq

        for batch in batches:
            for index in batch.column(0).to_pylist():
                with fs.open_file(files[index], "rb") as fh:
                    if fmt == "parquet":
                        table = pq.read_table(fh).select(arrow_schema.names).cast(arrow_schema)
                    else:
                        table = pj.read_json(fh, parse_options=pj.ParseOptions(explicit_schema=arrow_schema))
                        table = table.select(arrow_schema.names)
                yield from table.to_batches(max_chunksize=2000)

    return run


def verify_shards(stage_dir: str | Path, entry: dict) -> None:
    """Check every shard a manifest entry lists against its recorded sha256 (one streaming read
    each); raise a one-line :class:`CurateError` naming the first that differs."""
    for shard, uri in zip(entry["shards"], shard_uris(stage_dir, entry)):
        sha = hashlib.sha256()
        with fs.open_file(uri, "rb") as fh:
            while block := fh.read(1 << 22):
                sha.update(block)
        if sha.hexdigest() != shard["sha256"]:
            raise CurateError(f"{uri}: sha256 {sha.hexdigest()[:16]}… differs from {shard['sha256'][:16]}… listed "
                              f"in {fs.join(stage_dir, MANIFEST)}; the shard changed after its stage was committed: "
                              "rebuild that stage (curate run --from STAGE)")


def artifact_entry(stage_dir: str | Path, name: str) -> dict | None:
    """The manifest entry of artifact table ``name`` of a committed stage; None when its manifest
    lists none by that name (no manifest, or one written before artifact tables were listed)."""
    return ((load_manifest(stage_dir) or {}).get("artifact_tables") or {}).get(name)


def read_artifact_table(spark, stage_dir: str | Path, name: str, *, verify: bool = True):
    """The rows of artifact table ``name`` of a committed stage: exactly the shards its manifest
    lists, each first checked against its sha256 (``verify``)."""
    entry = artifact_entry(stage_dir, name)
    if entry is None:
        raise CurateError(f"{stage_dir}: no artifact table '{name}' is listed in its {MANIFEST}")
    if verify:
        verify_shards(stage_dir, entry)
    return read_shards(spark, stage_dir, entry)


def read_stage(spark, stage_dir: str | Path, which: str = "data"):
    """The rows of a completed stage (``data`` or ``rejected``), as listed by its manifest."""
    manifest = load_manifest(stage_dir)
    if manifest is None:
        raise CurateError(f"{stage_dir} is not a complete stage (no {MANIFEST})")
    entry = manifest["outputs"].get(which)
    if entry is None:
        raise CurateError(f"stage {fs.name(stage_dir)} has no '{which}' output")
    return read_shards(spark, stage_dir, entry)


def last_complete_stage(output_dir: str | Path) -> str | None:
    """The final export if present, else the highest-numbered complete stage directory."""
    final = fs.join(output_dir, FINAL_DIR)
    if load_manifest(final):
        return final
    names = sorted(n for n in fs.listdir(output_dir) if n[:2].isdigit() and n[2:3] == "-")
    complete = [fs.join(output_dir, n) for n in names if load_manifest(fs.join(output_dir, n))]
    return complete[-1] if complete else None
