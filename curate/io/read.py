"""Reading raw input with quarantine accounting.

JSONL(.gz/.zst) or Parquet — a file, a directory or a glob, as a local path or a URI
(``s3://``, ``gs://``… through :mod:`curate.io.fs`) — becomes a DataFrame of documents
(``id``, ``text``, carried columns) plus a DataFrame of quarantine records
(``file``, ``line``, ``kind``, ``reason``, ``snippet``).

All bytes are read inside Spark tasks through fsspec, never by a Spark data source, so the
same URIs work on any cluster. The unit of work is a split: a line-aligned byte range of an
uncompressed JSONL file (``input.split_size``, default 128 MiB), a whole compressed JSONL file,
or a run of consecutive Parquet row groups.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core import ID, TEXT, CurateError
from curate.io import fs
from curate.io.jsonl import (
    ID_SEPARATOR,
    ParseOptions,
    ShapeSet,
    carried_json,
    fast_decoder,
    file_fields,
    generated_id,
    is_compressed,
    split_fields,
    split_ranges,
)
from curate.io.shards import last_complete_stage, load_manifest, read_files, read_stage

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".json", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
WEB_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".arc", ".arc.gz")  # read by curate.io.warc
INPUT_FORMATS = ("jsonl", "parquet", "warc", "wet")
QUARANTINE_COLUMNS = ["file", "line", "kind", "reason", "snippet"]
DEFAULT_SPLIT_SIZE = 128 << 20
MIN_SPLIT_SIZE = 1 << 10
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40, "tb": 10**12, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any, where: str) -> int:
    """Bytes from an int or a string such as ``64MiB``, ``1.5GB``, ``4096`` (at least 1 KiB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        m = _SIZE.match(value) if isinstance(value, str) else None
        if not m or m.group(2).lower() not in _UNITS:
            raise CurateError(f"{where}: expected a size in bytes or like '64MiB' / '1GB', got {value!r}")
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size < MIN_SPLIT_SIZE:
        raise CurateError(f"{where}: must be at least 1KiB, got {value!r}")
    return size


@dataclass(frozen=True)
class InputSpec:
    path: str
    format: str = "auto"  # auto | jsonl | parquet | warc | wet
    text_field: str = "text"
    id_field: str = "id"
    utf8: str = "replace"  # replace | strict
    split_size: int | str = DEFAULT_SPLIT_SIZE  # bytes per task for large uncompressed JSONL/Parquet

    def __post_init__(self):
        object.__setattr__(self, "split_size", parse_size(self.split_size, "input.split_size"))


@dataclass
class ReadResult:
    docs: Any  # DataFrame: id, text, carried columns
    quarantine: Any  # DataFrame: QUARANTINE_COLUMNS
    root: str  # local directory or URI prefix the relative file names are under
    files: list[str]
    cached: list = field(default_factory=list)  # persisted frames to release after writing
    spill: str | None = None  # parsed rows spilled by the JSONL reader, removed by release()

    def release(self) -> None:
        """Free what the documents are computed from; call once they are written."""
        for df in self.cached:
            df.unpersist()
        self.cached = []
        if self.spill and fs.exists(self.spill):
            fs.remove(self.spill, recursive=True)


# ---------------------------------------------------------------- listing

def list_input_files(path: str | Path) -> tuple[str, list[str]]:
    """Resolve a file, directory (recursive) or glob — local or a URI — to (root, sorted relative paths)."""
    text = str(path)
    if fs.is_remote(text):
        fs.check_reachable(text)
    else:
        text = fs.resolve(text, os.getcwd())
    root, files = fs.list_files(text, keep=_is_data_file)
    if any(ch in text for ch in "*?[") and not fs.name(text).startswith("."):
        files = [f for f in files if not posixpath.basename(f).startswith(".")]  # as glob.glob: no dotfiles
    if not files:
        raise CurateError(f"no input files (.jsonl, .jsonl.gz, .jsonl.zst, .parquet, .warc.gz, .wet.gz) under {path}")
    return root, files


def _is_data_file(rel: str) -> bool:
    name = posixpath.basename(rel)
    return not name.startswith((".", "_")) and name.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES + WEB_SUFFIXES)


def detect_format(files: list[str], fmt: str) -> str:
    if fmt != "auto":
        if fmt not in INPUT_FORMATS:
            raise CurateError(f"input format must be one of {', '.join(INPUT_FORMATS)} or auto, got '{fmt}'")
        return fmt
    kinds = {_format_of(f) for f in files}
    if len(kinds) > 1:
        raise CurateError(f"input mixes {' and '.join(sorted(kinds))} files; point it at one kind"
                          " (or set input.format)")
    return kinds.pop()


def _format_of(rel: str) -> str:
    if rel.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if rel.endswith(WEB_SUFFIXES):
        return "wet" if ".wet" in posixpath.basename(rel) else "warc"
    return "jsonl"


def _reader(fmt: str):
    """The task-side reader of Parquet or web archives: ``(spark, root, files, infos, spec) -> (docs,
    quarantine, cached)`` (JSONL has its own, which also needs a spill location)."""
    if fmt in ("warc", "wet"):
        from curate.io.warc import read_web_archives  # needs curate[web]

        return read_web_archives
    return _read_parquet


def file_infos(root: str | Path, files: list[str]) -> list[dict]:
    """``{"size", "token"}`` of each input file (token: mtime locally, ETag/mtime remotely)."""
    infos = []
    for rel in files:
        uri = fs.join(root, rel)
        try:
            infos.append(fs.info(uri))
        except FileNotFoundError:
            raise CurateError(f"input file disappeared since it was listed: {uri}") from None
    return infos


def fingerprint_files(root: str | Path, files: list[str], infos: list[dict] | None = None) -> str:
    """Order-independent fingerprint of input files: relative path, size and change token."""
    infos = infos if infos is not None else file_infos(root, files)
    h = hashlib.sha256()
    for rel, st in sorted(zip(files, infos)):
        h.update(f"{rel}\0{st['size']}\0{st['token']}\n".encode())
    return h.hexdigest()


BUILTIN_PREFIX = "builtin:"


def materialize_builtin(spec: InputSpec, output_dir: str | Path) -> InputSpec:
    """Resolve ``builtin:local-docs`` to a JSONL harvested once into ``<output>/_builtin/``."""
    if not spec.path.startswith(BUILTIN_PREFIX):
        return spec
    name = spec.path[len(BUILTIN_PREFIX):]
    if name != "local-docs":
        raise CurateError(f"unknown builtin corpus '{name}'; available: local-docs")
    from curate.io.localdocs import write_local_docs

    target = fs.join(output_dir, "_builtin", f"{name}.jsonl")
    if not fs.isfile(target):
        write_local_docs(target)
    return InputSpec(**{**spec.__dict__, "path": target})


# ---------------------------------------------------------------- reading

def read_documents(spark, spec: InputSpec, listing: tuple[str, list[str]] | None = None,
                   scratch: str | None = None) -> ReadResult:
    """Read raw input with full accounting: every line is a document or a quarantine record.

    ``listing`` — ``(root, relative files)`` fixed earlier (the read manifest's) — is read as
    given, so files added to the input meanwhile do not change what a run reads. ``scratch`` — a
    path or URI every executor can write and read, e.g. under the read step's attempt — is where
    the JSONL reader spills its parsed rows; by default a local temporary directory, which is
    enough for a local master. :meth:`ReadResult.release` removes it.
    """
    root, files = listing if listing is not None else list_input_files(spec.path)
    root = str(root)
    fmt = detect_format(files, spec.format)
    infos = file_infos(root, files)
    spill = None
    ids_unique = False
    if fmt == "jsonl":
        spill = fs.join(scratch, "_parsed") if scratch else tempfile.mkdtemp(prefix="curate-read-")
        docs, quarantine, cached, ids_unique = _read_jsonl(spark, root, files, infos, spec, spill)
    else:
        docs, quarantine, cached = _reader(fmt)(spark, root, files, infos, spec)
    if not ids_unique:
        docs, dup_quarantine, dup_cached = _quarantine_duplicate_ids(spark, docs)
        quarantine, cached = quarantine.unionByName(dup_quarantine), cached + dup_cached
    return ReadResult(docs, quarantine, root, list(files), cached, spill)


_PARSED_FIELDS = ["unit", "file", "line", "kind", "id", "text", "extra", "reason", "snippet", "repairs"]
_LONG_FIELDS = ("unit", "line")
_UNIT_REPORT_SCHEMA = "unit long, newlines long, shapes string, reason string, ids long, unsure boolean"
MAX_HASHED_IDS = 1 << 24  # ids the driver checks itself (8 bytes each); more go through Spark's groupBy
MAX_SHAPES = 256  # distinct carried-field shapes per unit before falling back to a full inference pass


def _parsed_schema():
    """Arrow schema of the parsed rows a unit spills (and Spark reads back)."""
    import pyarrow as pa

    return pa.schema([(f, pa.int64() if f in _LONG_FIELDS else pa.string()) for f in _PARSED_FIELDS])


def spill_name(index: int, suffix: str = "parquet") -> str:
    return f"unit-{index:05d}.{suffix}"


def id_hash(doc_id: str) -> int:
    """A stable 64-bit hash of a document id (the same in every process)."""
    return int(id_hashes([doc_id])[0])


def id_hashes(ids: list[str]):
    """:func:`id_hash` of each id, as a numpy ``<u8`` array (one C loop over the ids)."""
    import numpy as np

    digest = hashlib.blake2b
    return np.frombuffer(b"".join([digest(i.encode("utf-8", "surrogatepass"), digest_size=8).digest() for i in ids]),
                         "<u8")


class IdTally:
    """A unit's document ids, taken as its parsed rows stream past, saved as 64-bit hashes.

    ``unsure``: an input id has the form ``<split file>:<line>``. The reader generates such ids for
    a split's id-less lines only on the driver, so the hashes cannot rule a clash out.
    """

    def __init__(self, split_files: frozenset[str]):
        self.split_files, self.ids = split_files, []

    def watch(self, rows):
        keep = self.ids.append
        for row in rows:
            if row[2] is not None:  # (line, kind, id, ...): see _row
                keep(row[2])
            yield row

    @property
    def unsure(self) -> bool:
        files = self.split_files
        return bool(files) and any(looks_generated(i, files) for i in self.ids if ID_SEPARATOR in i)

    def save(self, path: str) -> None:
        fs.write_bytes(path, id_hashes(self.ids).tobytes())


def looks_generated(doc_id: str, files: frozenset[str]) -> bool:
    name, sep, line = doc_id.rpartition(ID_SEPARATOR)
    return bool(sep) and line.isdigit() and name in files


def ids_are_unique(reports, spill: str, limit: int = MAX_HASHED_IDS) -> bool:
    """True when no two documents of a JSONL read can share an id: their hashes (saved by each
    unit's :class:`IdTally`) are all distinct. False — the caller then checks exactly, with Spark —
    when some hashes repeat (a duplicate id, or a rare hash collision), a unit is unsure, or there
    are more than ``limit`` ids (the driver would hold 8 bytes per id)."""
    import numpy as np

    if any(r.unsure for r in reports) or sum(r.ids for r in reports) > limit:
        return False
    hashes = np.concatenate([np.frombuffer(fs.read_bytes(fs.join(spill, spill_name(r.unit, "ids"))), "<u8")
                             for r in reports] or [np.zeros(0, "<u8")])
    hashes.sort()
    return not bool(np.any(hashes[1:] == hashes[:-1]))


def _row(line_no: int, fields: tuple, rel: str, known: bool) -> tuple:
    """``(line, kind, id, text, extra, reason, snippet, repairs)`` of one parsed line (see
    :func:`curate.io.jsonl.line_fields`); a generated id is left null unless ``known``."""
    kind = fields[0]
    if kind == "doc":
        _, doc_id, text, carried, repairs, fast = fields
        if doc_id is None and known:
            doc_id = generated_id(rel, line_no)
        return line_no, "doc", doc_id, text, carried_json(carried, fast), None, None, repairs
    if kind == "record":
        return line_no, "record", None, None, None, fields[1], fields[2], None
    return line_no, "file", None, None, None, fields[1], None, None


def unit_rows(root: str, unit: tuple, opts: ParseOptions, fast, tally: dict, shapes: ShapeSet | None):
    """The parsed rows ``(line, kind, id, …)`` of one unit ``(rel, start, end, newlines_before)``.

    ``end < 0`` reads the whole file. A split whose ``newlines_before`` is not known yet (``< 0``)
    numbers its lines as if it were 0 and leaves the ids it must generate null (:func:`_placed`
    moves them into place later). When done, ``tally["newlines"]`` holds the newlines of a split's
    byte range, and ``shapes`` (unless None) the distinct shapes of the carried fields that
    Spark's inference needs (:class:`curate.io.jsonl.ShapeSet`); ``tally["too_many_shapes"]`` is
    set when there are more than ``MAX_SHAPES``.
    """
    rel, start, end, before = unit
    uri = fs.join(root, rel)
    lines = file_fields(uri, opts, fast) if end < 0 else split_fields(uri, start, end, max(before, 0), opts, fast,
                                                                      tally)
    known = end < 0 or before >= 0
    for line_no, parsed in lines:
        if shapes is not None and parsed[0] == "doc" and parsed[3]:
            shapes.add(parsed[3])
            if len(shapes) > MAX_SHAPES:
                tally["too_many_shapes"] = True
                shapes = None
        yield _row(line_no, parsed, rel, known)


def _spill_unit(path: str, rows, head: tuple, batch_rows: int = 2000, batch_bytes: int = 16 << 20) -> None:
    """Write ``head + row`` for every row as one Parquet file (uncompressed, no statistics, no
    dictionary for the text columns: it is read once, soon, and whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parsed_schema()

    def table(buffered):
        return pa.Table.from_arrays([pa.array(col, f.type) for f, col in zip(schema, zip(*buffered))], schema=schema)

    options = {"compression": "none", "write_statistics": False,
               "use_dictionary": ["file", "kind", "reason", "repairs"]}
    with fs.open_file(path, "wb") as sink, pq.ParquetWriter(sink, schema, **options) as writer:
        buffered, size = [], 0
        for row in rows:
            buffered.append(head + row)
            size += len(row[3] or "") + len(row[4] or "")
            if len(buffered) >= batch_rows or size >= batch_bytes:
                writer.write_table(table(buffered))
                buffered, size = [], 0
        writer.write_table(table(buffered) if buffered else schema.empty_table())


def _parse_partitions(root: str, units: list[tuple], opts: ParseOptions, spill: str):
    """mapInArrow function: partition i parses unit i and spills its rows to ``<spill>/unit-<i>.parquet``.

    Lines go through the fast decoder with a per-line fallback (:func:`curate.io.jsonl.line_fields`),
    so the rows are those of the reference parse. Each unit yields one report row: the newlines of
    its byte range and the distinct shapes of its carried fields, one per line — or ``reason =
    "too_many_shapes"``, and the count of its ids, whose hashes it saves beside its rows
    (:class:`IdTally`). The rows themselves never pass through the JVM here: Spark reads the
    spilled files back column by column (a count reads no text at all).
    """
    split_files = frozenset(rel for rel, _, end, _ in units if end >= 0)

    def run(batches):
        import pyarrow as pa

        fast = fast_decoder()
        reports = []
        for batch in batches:
            for index in batch.column(0).to_pylist():
                tally, shapes, ids = {}, ShapeSet(), IdTally(split_files)
                rows = ids.watch(unit_rows(root, units[index], opts, fast, tally, shapes))
                _spill_unit(fs.join(spill, spill_name(index)), rows, (index, units[index][0]))
                ids.save(fs.join(spill, spill_name(index, "ids")))
                many = tally.get("too_many_shapes", False)
                found = None if many else "\n".join(sorted(shapes.shapes)) or None
                reports.append((index, tally.get("newlines", 0), found, "too_many_shapes" if many else None,
                                len(ids.ids), ids.unsure))
        if reports:
            cols = list(zip(*reports))
            types = [pa.int64(), pa.int64(), pa.string(), pa.string(), pa.int64(), pa.bool_()]
            yield pa.RecordBatch.from_arrays([pa.array(c, t) for c, t in zip(cols, types)],
                                             names=["unit", "newlines", "shapes", "reason", "ids", "unsure"])

    return run


def _map_units(spark, count: int, fn, schema: str):
    """One Spark task per unit index in ``range(count)``, each running ``fn`` (mapInArrow)."""
    return spark.range(0, count, 1, numPartitions=max(count, 1)).mapInArrow(fn, schema)


def jsonl_units(files: list[str], infos: list[dict], split_size: int) -> list[tuple[str, int, int, int]]:
    """Work units ``(rel, start, end, -1)`` before line numbering; ``end = -1`` reads the whole file.

    Uncompressed files larger than ``split_size`` become line-aligned byte ranges.
    """
    units = []
    for rel, st in zip(files, infos):
        if is_compressed(rel) or st["size"] <= split_size:
            units.append((rel, 0, -1, 0))
        else:
            units.extend((rel, start, end, -1) for start, end in split_ranges(st["size"], split_size))
    return units


def number_units(units: list[tuple[str, int, int, int]], counts: dict[int, int]) -> list[tuple[str, int, int, int]]:
    """Fill each split's ``newlines_before`` from the newline counts of the splits before it."""
    numbered, before, current = [], 0, None
    for i, (rel, start, end, nb) in enumerate(units):
        if nb >= 0:
            numbered.append((rel, start, end, nb))
            continue
        if rel != current:
            current, before = rel, 0
        numbered.append((rel, start, end, before))
        before += counts.get(i, 0)
    return numbered


def _read_jsonl(spark, root: str, files: list[str], infos: list[dict], spec: InputSpec, spill: str):
    """One Spark job parses every unit (split or whole file) and spills its rows under ``spill``;
    the driver then places the splits' lines from their newline counts, infers the carried
    columns' schema from their shapes and rules duplicate ids out from their hashes — no second
    pass over the input or the parsed rows. Returns ``(docs, quarantine, cached, ids_unique)``."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    opts = ParseOptions(spec.text_field, spec.id_field, spec.utf8)
    units = jsonl_units(files, infos, spec.split_size)
    fs.makedirs(spill)
    reports = _map_units(spark, len(units), _parse_partitions(root, units, opts, spill), _UNIT_REPORT_SCHEMA).collect()
    units = number_units(units, {r.unit: r.newlines for r in reports})
    parsed = read_files(spark, [fs.join(spill, spill_name(i)) for i in range(len(units))], "parquet",
                        from_arrow_schema(_parsed_schema()))
    rows = _placed(parsed, units)
    good = rows.filter(F.col("kind") == "doc")
    quarantine = rows.filter(F.col("kind") != "doc").select(*QUARANTINE_COLUMNS)
    docs = good.select(ID, TEXT, "extra", "repairs", F.col("file").alias("_file"), F.col("line").alias("_line"))
    schema = _carried_schema(spark, reports, good)
    if schema is not None:
        docs = docs.withColumn("_x", F.from_json("extra", schema)).select(
            ID, TEXT, "_x.*", "repairs", "_file", "_line")
    else:
        docs = docs.drop("extra")
    return docs, quarantine, [], ids_are_unique(reports, spill)


def _placed(rows, units: list[tuple]):
    """``rows`` with every split's line numbers moved to their place in the file (its
    ``newlines_before`` added) and the ids left to generate set to ``<file>:<line>``. The shifts
    are one array literal indexed by unit (an expression: no join, no job to broadcast a table)."""
    from pyspark.sql import functions as F

    shifts = [before if end >= 0 else 0 for _, _, end, before in units]
    if any(shifts):
        shift = F.expr(f"element_at(array({', '.join(map(str, shifts))}), CAST(unit AS INT) + 1)")
        rows = rows.withColumn("line", F.col("line") + shift)
    generated = F.concat(F.col("file"), F.lit(ID_SEPARATOR), F.col("line").cast("string"))  # generated_id
    return rows.withColumn(ID, F.when((F.col("kind") == "doc") & F.col(ID).isNull(), generated).otherwise(F.col(ID)))


def _carried_schema(spark, reports, good):
    """Spark's schema of the carried fields (None when there are none): ``spark.read.json`` over
    their distinct shapes, which infers what it would over every value (see
    :func:`curate.io.jsonl.shape`); over every value when a unit had too many shapes."""
    from pyspark.sql import functions as F

    if any(r.reason == "too_many_shapes" for r in reports):
        extras = good.select("extra").filter(F.col("extra").isNotNull())
        return spark.read.json(extras).schema if extras.limit(1).count() else None
    shapes = sorted({s for r in reports if r.shapes for s in r.shapes.split("\n")})
    if not shapes:
        return None
    return spark.read.json(spark.createDataFrame([(s,) for s in shapes], "value string")).schema


# ---------------------------------------------------------------- parquet

_QUARANTINE_DDL = "file string, line long, kind string, reason string, snippet string"


def _parquet_footers(root: str, files: list[str], infos: list[dict]):
    """``(readable, problems)``: readable is ``[(rel, FileMetaData)]``, problems are quarantine rows."""
    import pyarrow.parquet as pq

    readable, bad = [], []
    for rel, st in zip(files, infos):
        if st["size"] == 0:
            bad.append((rel, 0, "file", "empty_file", None))
            continue
        try:
            with fs.open_file(fs.join(root, rel), "rb") as fh:
                readable.append((rel, pq.read_metadata(fh)))
        except Exception as exc:  # pyarrow raises several types for corrupt footers
            bad.append((rel, 0, "file", f"corrupt_file: {exc}"[:300], None))
    return readable, bad


def parquet_units(readable, split_size: int) -> list[tuple[str, int, int, int]]:
    """Units ``(rel, first row group, end row group, rows before)``: consecutive row groups of
    one file, about ``split_size`` uncompressed bytes each (at least one group)."""
    units = []
    for rel, meta in readable:
        first, rows_before, size, rows = 0, 0, 0, 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            size, rows = size + group.total_byte_size, rows + group.num_rows
            if size >= split_size or g == meta.num_row_groups - 1:
                units.append((rel, first, g + 1, rows_before))
                first, rows_before, size, rows = g + 1, rows_before + rows, 0, 0
    return units


def _parquet_schema(readable, spec: InputSpec):
    """The unified Arrow schema of the readable files, checked for a string text column."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_type

    schema = pa.unify_schemas([meta.schema.to_arrow_schema() for _, meta in readable], promote_options="permissive")
    if spec.text_field not in schema.names:
        raise CurateError(f"parquet input has no '{spec.text_field}' column (columns: {', '.join(schema.names)});"
                          " set input.text_field")
    text_type = schema.field(spec.text_field).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        try:
            shown = from_arrow_type(text_type).simpleString()
        except Exception:
            shown = str(text_type)
        raise CurateError(f"parquet column '{spec.text_field}' is {shown}, not string")
    return schema


def _parquet_output_schema(schema, spec: InputSpec):
    """Spark schema of the mixed docs/quarantine rows the row-group tasks emit."""
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    fields = [StructField(ID, StringType()), StructField(TEXT, StringType())]
    for f in schema:
        if f.name in (spec.text_field, spec.id_field):
            continue
        try:
            spark_type = from_arrow_type(f.type)
        except Exception as exc:
            raise CurateError(f"parquet column '{f.name}' has type {f.type}, which Spark cannot carry"
                              f" ({exc})") from None
        fields.append(StructField(_carried_name(f.name), spark_type))
    fields += [StructField(n, StringType()) for n in ("repairs", "_file")] + [StructField("_line", LongType())]
    fields += [StructField(n, StringType()) for n in ("_kind", "_reason", "_snippet")]
    return StructType(fields)


def _carried_name(column: str) -> str:
    return f"{column}_original" if column in (ID, TEXT) else column


def _row_group_batches(root: str, units: list[tuple], schema, spec: InputSpec, out_schema, fingerprint: str):
    """mapInArrow function: partition i reads the row groups of unit i and emits docs and quarantine rows.

    Same accounting as a Spark read: null or blank (spaces only) text is quarantined with the
    1-based row number, NULs are removed and counted, ids missing or empty become ``<rel>:<row>``.
    """
    def run(batches, _fingerprint=fingerprint):
        import pyarrow.parquet as pq
        from pyspark.sql.pandas.types import to_arrow_schema

        arrow_out = to_arrow_schema(out_schema)
        for batch in batches:
            for index in batch.column(0).to_pylist():
                rel, first, end, rows_before = units[index]
                with fs.open_file(fs.join(root, rel), "rb") as fh:
                    pf = pq.ParquetFile(fh)
                    present = [n for n in schema.names if n in pf.schema_arrow.names]
                    line = rows_before
                    for record_batch in pf.iter_batches(batch_size=2000, row_groups=range(first, end),
                                                        columns=present):
                        yield from _account_rows(record_batch, rel, line, schema, spec, arrow_out)
                        line += record_batch.num_rows

    return run


def _account_rows(batch, rel: str, rows_before: int, schema, spec: InputSpec, arrow_out):
    """Split one Arrow batch into output docs and quarantine rows (see :func:`_row_group_batches`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    column = lambda name: (batch.column(name) if name in batch.schema.names  # noqa: E731
                           else pa.nulls(n, schema.field(name).type))
    text = column(spec.text_field)
    lines = pa.array(range(rows_before + 1, rows_before + n + 1), pa.int64())
    clean = pc.replace_substring(text, "\x00", "")
    blank = pc.equal(pc.utf8_trim(clean, " "), "")  # Spark's trim(): spaces only
    bad = pc.or_kleene(pc.is_null(text), blank).fill_null(True)
    good = pc.invert(bad)
    rel_col = pa.array([rel] * n, pa.string())
    if good.true_count:
        generated = pc.binary_join_element_wise(rel_col, pc.cast(lines, pa.string()), ID_SEPARATOR)  # generated_id
        ids = generated
        if spec.id_field in schema.names:
            given = _as_string(column(spec.id_field))
            ids = pc.if_else(pc.fill_null(pc.not_equal(given, ""), False), given, generated)
        repairs = pc.if_else(pc.fill_null(pc.match_substring(text, "\x00"), False), "nul_removed",
                             pa.scalar(None, pa.string()))
        cols = {ID: ids, TEXT: clean}
        for f in schema:
            if f.name not in (spec.text_field, spec.id_field):
                cols[_carried_name(f.name)] = column(f.name)
        cols.update({"repairs": repairs, "_file": rel_col, "_line": lines})
        yield from _conform(pa.table(cols).filter(good), arrow_out)
    if bad.true_count:
        rows = pa.table({"text": text, "_line": lines}).filter(bad).to_pylist()
        yield from _conform(pa.table({
            "_file": [rel] * len(rows), "_line": [r["_line"] for r in rows], "_kind": ["record"] * len(rows),
            "_reason": ["null_text" if r["text"] is None else "empty_text" for r in rows],
            "_snippet": [(r["text"] or "")[:200] for r in rows]}), arrow_out)


def _as_string(col):
    """Spark's ``cast(… as string)`` for the id column's common types."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())


def _conform(table, arrow_schema):
    """Record batches of ``table`` with every column of ``arrow_schema`` (nulls where absent), cast to its types."""
    import pyarrow as pa

    n = table.num_rows
    arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
              for f in arrow_schema]
    return pa.Table.from_arrays(arrays, schema=arrow_schema).combine_chunks().to_batches()


def _read_parquet(spark, root: str, files: list[str], infos: list[dict], spec: InputSpec):
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    readable, bad = _parquet_footers(root, files, infos)
    quarantine_files = spark.createDataFrame(bad, _QUARANTINE_DDL)
    if not readable:
        empty = spark.createDataFrame([], f"{ID} string, {TEXT} string, repairs string, _file string, _line long")
        return empty, quarantine_files, []
    schema = _parquet_schema(readable, spec)
    out_schema = _parquet_output_schema(schema, spec)
    units = parquet_units(readable, spec.split_size)
    fingerprint = fingerprint_files(root, files, infos)
    rows = (_map_units(spark, len(units), _row_group_batches(root, units, schema, spec, out_schema, fingerprint),
                       out_schema).persist(StorageLevel.DISK_ONLY))
    docs = rows.filter(F.col("_kind").isNull()).drop("_kind", "_reason", "_snippet")
    quarantine = rows.filter(F.col("_kind").isNotNull()).select(
        F.col("_file").alias("file"), F.col("_line").alias("line"), F.col("_kind").alias("kind"),
        F.col("_reason").alias("reason"), F.col("_snippet").alias("snippet"))
    return docs, quarantine_files.unionByName(quarantine), [rows]


def _quarantine_duplicate_ids(spark, docs):
    """Keep the first occurrence of each id by (file, line); quarantine the rest.

    Returns ``(kept, quarantined, cached)``. The ids seen more than once are found first by
    counting ids alone (a shuffle of ids, not of documents); without any, the documents pass
    untouched, and otherwise only the rows of those ids are ranked.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    repeated = (docs.groupBy(ID).agg(F.count(F.lit(1)).alias("_n")).filter(F.col("_n") > 1).select(ID)
                .persist(StorageLevel.DISK_ONLY))
    if repeated.count() == 0:
        repeated.unpersist()
        return docs, spark.createDataFrame([], _QUARANTINE_DDL), []
    w = Window.partitionBy(ID).orderBy("_file", "_line")
    ranked = docs.join(repeated, ID, "left_semi").withColumn("_rank", F.row_number().over(w)).withColumn(
        "_first", F.first(F.concat_ws(":", "_file", F.col("_line").cast("string"))).over(w))
    dups = ranked.filter(F.col("_rank") > 1).select(
        F.col("_file").alias("file"), F.col("_line").alias("line"), F.lit("record").alias("kind"),
        F.concat(F.lit("duplicate_id: first at "), F.col("_first")).alias("reason"),
        F.substring(F.col(ID), 1, 200).alias("snippet"))
    first = ranked.filter(F.col("_rank") == 1).drop("_rank", "_first")
    return docs.join(repeated, ID, "left_anti").unionByName(first), dups, [repeated]


def read_source(spark, path: str | Path, *, text_field: str = "text", id_field: str = "id"):
    """Documents from a stage directory, a pipeline output directory, or raw files.

    Raw files go through the quarantining reader; quarantined lines are skipped here
    (callers that must account for them use :func:`read_documents`).
    """
    p = str(path) if fs.is_remote(path) else Path(path)
    if fs.isdir(path) and load_manifest(p):
        return read_stage(spark, p)
    if fs.isdir(path) and (stage := last_complete_stage(p)) is not None:
        return read_stage(spark, stage)
    result = read_documents(spark, InputSpec(str(path), text_field=text_field, id_field=id_field))
    return result.docs.drop("repairs", "_file", "_line")
