"""Deterministic shard writers and readers of completed stage outputs.

Writers produce shards whose bytes depend only on the rows, never on partitioning or
input file order; readers read exactly the shards a stage manifest lists.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from curate.core import ID, CurateError
from curate.engine.layout import FINAL_DIR, MANIFEST
from curate.integrity import sha256_file


@dataclass
class Shard:
    file: str
    rows: int
    bytes: int
    sha256: str


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
    final = output_dir / FINAL_DIR
    if load_manifest(final):
        return final
    stages = sorted(p for p in output_dir.glob("[0-9][0-9]-*") if load_manifest(p))
    return stages[-1] if stages else None
