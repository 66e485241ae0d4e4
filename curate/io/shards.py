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
from curate.integrity import stable_hash
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


def read_shards(spark, stage_dir: str | Path, entry: dict, *, output_dir: str | None = None):
    """The one reader of stage outputs: the shards listed in a manifest ``entry`` as a DataFrame
    (for a layer, joined row by row with the stages it lies over: :func:`layer_sources`)."""
    from pyspark.sql.types import StructType

    if LAYER in entry:
        return _read_layer(spark, stage_dir, entry, output_dir)
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


# ---------------------------------------------------------------- layers

LAYER = "layer"
ROWS_WHERE = {"kept": True, "rejected": False}  # which rows of a verdict layer: reject_reason null or not


def entry_fingerprint(entry: dict) -> str:
    """What a downstream stage sees of an output: the name and sha256 of every shard (the schema
    when there are none) and, for a layer, what it lies over."""
    shards = [(s["file"], s["sha256"]) for s in entry["shards"]] or entry["schema"]
    return stable_hash([shards, entry[LAYER]] if LAYER in entry else shards)


def layer_info(over: str, over_entry: dict, columns: list[str], rows_where: str | None = None) -> dict:
    """The ``layer`` of a manifest output entry stored as a layer (Dolma's attribute files,
    Soldaini et al. 2024): its shards hold ``id`` and ``columns`` for every row of the data of
    stage ``over``, shard for shard and row for row, and the other columns of the entry's schema
    are read from ``over``. A verdict layer also holds ``reject_reason``, and ``rows_where``
    (``kept``/``rejected``) picks its rows."""
    layer = {"over": over, "over_fingerprint": entry_fingerprint(over_entry), "columns": list(columns)}
    return {**layer, "rows_where": rows_where} if rows_where is not None else layer


def can_layer_over(entry: dict) -> bool:
    """Whether a layer may lie over ``entry``: its rows are every row of its shards (a plain output,
    or a layer that picks no rows), so a new layer aligns with it row for row."""
    return entry.get("format") == "parquet" and (LAYER not in entry or "rows_where" not in entry[LAYER])


def layer_sources(stage_dir: str | Path, entry: dict,
                  output_dir: str | None = None) -> list[tuple[list[str], list, dict]]:
    """``[(shard locations, columns provided or None for all, entry)]`` of a layered output, the
    plain output it finally lies over first. Each ``over`` must still be the output the layer was
    built over (its fingerprint), else a one-line :class:`CurateError`."""
    output_dir = str(output_dir or fs.parent(stage_dir))
    sources = [(shard_uris(stage_dir, entry), _provided(entry), entry)]
    name = fs.name(stage_dir)
    while LAYER in entry:
        layer = entry[LAYER]
        over = fs.join(output_dir, layer["over"])
        manifest = load_manifest(over)
        if manifest is None:
            raise CurateError(f"{name} is stored as a layer over {layer['over']}, which is not a complete stage; "
                              f"rebuild it (curate run --from {layer['over']})")
        entry = manifest["outputs"]["data"]
        if entry_fingerprint(entry) != layer["over_fingerprint"]:
            raise CurateError(f"{layer['over']} changed after {name} was built over it; rebuild {name} "
                              f"(curate run --from STAGE)")
        sources.insert(0, (shard_uris(over, entry), _provided(entry), entry))
        name = layer["over"]
    return sources


def _provided(entry: dict) -> list[str] | None:
    """The columns an output's shards provide to a layered read: a layer's own, or None for all."""
    return list(entry[LAYER]["columns"]) if LAYER in entry else None


def layer_groups(entry: dict) -> list[tuple[int, int]]:
    """``(shard, row group)`` pairs of a layered output: the unit of reading (and of a Spark task)."""
    return [(i, g) for i, shard in enumerate(entry["shards"]) for g in range(-(-shard["rows"] // ROW_GROUP_ROWS))]


def layer_group(sources: list[tuple[list[str], list, dict]], shard: int, group: int, names: list[str],
                rows_where: str | None = None):
    """Row group ``group`` of shard ``shard`` of a layered output as a pyarrow Table of ``names``:
    each column from the last source that provides it, every source checked to hold the same ids
    in the same order as the base."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = [*names, *([REJECT_REASON] if rows_where and REJECT_REASON not in names else [])]
    owner = {}
    for i, (_uris, provided, _entry) in enumerate(sources):
        owner.update({c: i for c in (wanted if provided is None else provided) if c in wanted})
    if rows_where:
        owner[REJECT_REASON] = len(sources) - 1  # the verdict: always the top layer's
    columns, base_ids = {}, None
    for i, (uris, _provided, _entry) in enumerate(sources):
        mine = [c for c in wanted if owner.get(c) == i and c != ID]
        with fs.open_file(uris[shard], "rb") as fh:
            table = pq.ParquetFile(fh).read_row_group(group, columns=[ID, *mine])
        if base_ids is None:
            base_ids = table.column(ID)
        elif not table.column(ID).equals(base_ids):
            raise CurateError(f"{uris[shard]}: row group {group} does not hold the ids of {sources[0][0][shard]} "
                              "in the same order; rebuild the stage (curate run --from STAGE)")
        columns.update({c: table.column(c) for c in mine})
    columns[ID] = base_ids
    table = pa.table({c: columns[c] for c in wanted})
    if rows_where:
        null = pc.is_null(table.column(REJECT_REASON))
        table = table.filter(null if ROWS_WHERE[rows_where] else pc.invert(null))
    return table.select(names)


def layer_tables(stage_dir: str | Path, entry: dict, names: list[str], output_dir: str | None = None):
    """Every row group of a layered output as pyarrow Tables of ``names`` (no Spark: reports, tools)."""
    sources = layer_sources(stage_dir, entry, output_dir)
    for shard, group in layer_groups(entry):
        yield layer_group(sources, shard, group, names, entry[LAYER].get("rows_where"))


def _read_layer(spark, stage_dir: str | Path, entry: dict, output_dir: str | None):
    """A layered output as a DataFrame. Local layers of up to :data:`BROADCAST_LAYER_BYTES` join the
    base by ``id`` in Spark (:func:`_joined_layers`: native reads, so unused columns are never read,
    and no shuffle of the text); otherwise one Spark task per row group reads that row group of the
    base and of every layer (:func:`layer_group`)."""
    from pyspark.sql.types import StructField, StructType

    declared = StructType.fromJson(entry["schema"])
    schema = StructType([StructField(f.name, f.dataType, True, f.metadata) for f in declared.fields])
    sources, groups = layer_sources(stage_dir, entry, output_dir), layer_groups(entry)
    if not groups:
        return spark.createDataFrame([], schema)
    rows_where = entry[LAYER].get("rows_where")
    uris = [u for source in sources for u in source[0]]
    layer_bytes = sum(s["bytes"] for _, _, e in sources[1:] for s in e["shards"])
    if not any(fs.is_remote(u) for u in uris) and layer_bytes <= BROADCAST_LAYER_BYTES:
        return _joined_layers(spark, sources, schema, rows_where)

    def run(batches):
        for batch in batches:
            for index in batch.column(0).to_pylist():
                table = layer_group(sources, *groups[index], schema.fieldNames(), rows_where)
                yield from table.to_batches(max_chunksize=2000)

    return spark.range(0, len(groups), 1, numPartitions=len(groups)).mapInArrow(run, schema)


BROADCAST_LAYER_BYTES = 64 << 20  # stored layers up to this size join by broadcast (built on the driver:
# ids and scores decompress to a few times their Parquet size, e.g. 58 MB for 1M documents' four score structs)


def _joined_layers(spark, sources: list[tuple[list[str], list, dict]], schema, rows_where: str | None):
    """The base read natively, each layer's columns joined to it by ``id`` (a broadcast: the layer
    holds only ids and scores), in ``schema``'s column order and metadata."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    base_uris, _, base_entry = sources[0]
    frame = read_files(spark, base_uris, "parquet", StructType.fromJson(base_entry["schema"]))
    for level, (uris, provided, entry) in enumerate(sources[1:], start=1):
        fields = {f.name: f for f in StructType.fromJson(entry["schema"]).fields}
        verdict = rows_where is not None and level == len(sources) - 1
        names = [*provided, *([REJECT_REASON] if verdict and REJECT_REASON not in provided else [])]
        layer = read_files(spark, uris, "parquet", StructType(
            [fields[ID], *[fields.get(c, StructField(c, StringType())) for c in names]]))
        if verdict:
            null = F.col(REJECT_REASON).isNull()
            layer = layer.filter(null if ROWS_WHERE[rows_where] else ~null)
        frame = frame.drop(*[c for c in names if c in frame.columns]).join(F.broadcast(layer), ID)
    return frame.select(*[F.col(f.name).alias(f.name, metadata=f.metadata) for f in schema.fields])
