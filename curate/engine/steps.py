"""The three kinds of step a run is made of: ``00-read``, one per pipeline stage, and ``final``.

Each step knows its config hash, its input fingerprint, and how to write itself through one
:func:`~curate.engine.manifest.stage_attempt`, committing a manifest built by :func:`manifest_for`.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from curate.config import Pipeline, StageCall
from curate.core import ID, REJECT_REASON, TEXT, StageContext, StageOutput, get_stage
from curate.engine.manifest import config_hash, stage_attempt
from curate.io import fs
from curate.io.accounting import materialize_read, write_verified
from curate.io.layout import DATA_DIR, FINAL_DIR, QUARANTINE_DIR, READ_DIR, REJECTED_DIR
from curate.io.read import fingerprint_files, read_documents
from curate.io.shards import (
    LAYER,
    can_layer_over,
    layer_info,
    load_manifest,
    read_shards,
    read_stage,
    reason_counts,
    shard_uris,
    total_chars,
)

_CHARS = "_chars"  # characters of text per row, counted while a layer is written


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_for(stage: str, index: int, params: Any, cfg: str, fp: str, outputs: dict, stats: dict,
                 started: str, t0: float, **extra: Any) -> dict:
    """The one manifest layout every step commits."""
    return {"stage": stage, "index": index, "params": params, "config_hash": cfg, "input_fingerprint": fp,
            "outputs": outputs, "stats": stats, "artifacts": extra.pop("artifacts", {}), **extra,
            "timings": {"started": started, "finished": _now(), "seconds": round(time.time() - t0, 3)}}


class ReadStep:
    """``00-read``: the fixed input listing parsed with full accounting."""

    name, dirname = "read", READ_DIR

    def __init__(self, p: Pipeline, listing: tuple[str, list[str]]):
        self.p, self.listing = p, listing

    def config_hash(self, _upstream: str) -> str:
        """How the input is parsed; ``split_size`` only decides how the work is divided, not its result."""
        parsing = {k: v for k, v in self.p.input.__dict__.items() if k != "split_size"}
        return config_hash("read", parsing, "", {"rows_per_shard": self.p.output.rows_per_shard})

    def input_fingerprint(self, _upstream: str) -> str:
        return fingerprint_files(*self.listing)

    def run(self, spark, target: str, cfg: str, fp: str, upstream=None, guard=lambda: None) -> dict:
        started, t0 = _now(), time.time()
        quarantine_target = fs.join(fs.parent(target), QUARANTINE_DIR)
        with stage_attempt(target) as work, stage_attempt(quarantine_target) as qwork:
            # the parsed rows spill inside this attempt: every executor can reach it, and it is gone before the commit
            result = read_documents(spark, self.p.input, listing=self.listing, scratch=work.path())
            try:
                outputs, stats = materialize_read(spark, result, work, qwork, self.p.output.rows_per_shard)
            finally:
                result.release()
            guard()
            work.commit(manifest_for("read", 0, self.p.input.__dict__, cfg, fp, outputs, stats, started, t0,
                                     input_root=str(result.root), input_files=result.files))
        return load_manifest(target)


class StageStep:
    """``NN-<stage>``: one registered stage over the previous step's data."""

    def __init__(self, p: Pipeline, call: StageCall):
        self.p, self.call = p, call
        self.name, self.dirname = call.name, call.dirname

    def config_hash(self, upstream: str) -> str:
        return config_hash(self.name, self.call.params, upstream, {"seed": self.p.seed, "index": self.call.index})

    def input_fingerprint(self, upstream: str) -> str:
        return upstream

    def run(self, spark, target: str, cfg: str, fp: str, upstream: str, guard=lambda: None) -> dict:
        started, t0 = _now(), time.time()
        df = read_stage(spark, upstream)
        up = load_manifest(upstream)
        rows_in = up["outputs"]["data"]["rows"]
        per_shard = self.p.output.rows_per_shard
        with stage_attempt(target) as work:
            ctx = StageContext(spark, work.scratch, self.p.base_dir, self.p.seed, fs.parent(target),
                               table_writer=_table_writer(spark, work, per_shard))
            out = get_stage(self.name).fn(df, ctx, **self.call.params)
            if not isinstance(out, StageOutput):
                raise RuntimeError(f"stage '{self.name}' returned {type(out).__name__}, not StageOutput")
            if self._stores_layer(up, out):
                outputs, tally = self._write_layer(work, out, upstream, up["outputs"]["data"], per_shard)
            else:
                outputs, tally = self._write(spark, work, out, per_shard)
            kept, rejected = work.read(spark, outputs["data"]), None
            if "rejected" in outputs:
                rejected = work.read(spark, outputs["rejected"])
            reasons, chars_out, chars_rejected = tally
            rows_out = outputs["data"]["rows"]
            if rows_out + sum(reasons.values()) != rows_in:
                raise RuntimeError(f"stage '{self.name}' lost rows: {rows_in} in, {rows_out} kept, "
                                   f"{sum(reasons.values())} rejected")
            extra = out.stats(kept, rejected) if callable(out.stats) else dict(out.stats)
            stats = {"rows_in": rows_in, "rows_out": rows_out, "rejected": reasons,
                     "chars_out": chars_out, "chars_rejected": chars_rejected, **extra}
            guard()
            work.commit(manifest_for(self.name, self.call.index, self.call.params, cfg, fp, outputs, stats,
                                     started, t0, upstream=fs.name(upstream), order_by=out.order_by,
                                     artifacts=dict(sorted(ctx.artifacts.items()))))
        return load_manifest(target)

    def _write(self, spark, work, out: StageOutput, per_shard: int) -> tuple[dict, tuple]:
        """Write kept (and rejected) rows in full; the manifest entries and (reasons, chars kept, chars rejected)."""
        kept_shards = write_verified(out.kept, work.path(DATA_DIR), order_by=out.order_by, rows_per_shard=per_shard)
        outputs = {"data": work.entry(kept_shards, out.kept.schema, "parquet")}
        rejected_shards = []
        if out.rejected is not None:
            if REJECT_REASON not in out.rejected.columns:
                raise RuntimeError(f"stage '{self.name}': rejected rows need a '{REJECT_REASON}' column")
            rejected_shards = write_verified(out.rejected, work.path(REJECTED_DIR), order_by=ID,
                                             rows_per_shard=per_shard)
            outputs["rejected"] = work.entry(rejected_shards, out.rejected.schema, "parquet")
        return outputs, (reason_counts(rejected_shards), total_chars(kept_shards), total_chars(rejected_shards))

    def _stores_layer(self, up: dict, out: StageOutput) -> bool:
        """Whether this stage's output can be stored as a layer over its input (see :meth:`_write_layer`)."""
        row_wise = (out.adds is not None and out.rejected is None) or out.verdict is not None
        return (self.p.output.layers and row_wise and out.order_by == ID and up.get("order_by", ID) == ID
                and can_layer_over(up["outputs"]["data"]))

    def _write_layer(self, work, out: StageOutput, upstream: str, base: dict, per_shard: int) -> tuple[dict, tuple]:
        """Store only ``id``, the added columns and (for a verdict) ``reject_reason`` of every input row,
        in shards aligned with the input's, instead of rewriting every column (Dolma's attributes,
        Soldaini et al. 2024). Rows and characters per reason are counted in one pass."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        adds, verdict = list(out.adds or ()), out.verdict is not None
        extra = [c for c in (out.rejected.columns if verdict else [])
                 if c not in out.kept.columns and c != REJECT_REASON]
        source = out.verdict if verdict else out.kept.withColumn(REJECT_REASON, F.lit(None).cast("string"))
        chars = F.length(TEXT) if TEXT in source.columns else F.lit(0)
        frame = source.select(ID, *adds, REJECT_REASON, *extra, chars.alias(_CHARS)).persist(StorageLevel.DISK_ONLY)
        try:
            tallies = {r[0]: (r[1], int(r[2] or 0)) for r in frame.groupBy(REJECT_REASON).agg(
                F.count(F.lit(1)), F.sum(_CHARS)).collect()}
            stored = frame.drop(_CHARS) if verdict else frame.drop(_CHARS, REJECT_REASON)
            shards = write_verified(stored, work.path(DATA_DIR), order_by=ID, rows_per_shard=per_shard, cache=False,
                                    rows=sum(n for n, _ in tallies.values()))  # the tally counted every row
        finally:
            frame.unpersist()
        if [s.rows for s in shards] != [s["rows"] for s in base["shards"]]:
            raise RuntimeError(f"stage '{self.name}': its layer's shards do not align with {fs.name(upstream)}'s")
        over = fs.name(upstream)
        kept_rows, kept_chars = tallies.pop(None, (0, 0))
        outputs = {"data": {**work.entry(shards, out.kept.schema, "parquet"), "rows": kept_rows,
                            LAYER: layer_info(over, base, adds, "kept" if verdict else None)}}
        if verdict:
            outputs["rejected"] = {**work.entry(shards, out.rejected.schema, "parquet"),
                                   "rows": sum(n for n, _ in tallies.values()),
                                   LAYER: layer_info(over, base, [*adds, REJECT_REASON, *extra], "rejected")}
        reasons = {reason: n for reason, (n, _) in sorted(tallies.items())}
        return outputs, (reasons, kept_chars, sum(c for _, c in tallies.values()))


def _table_writer(spark, work, rows_per_shard: int):
    """``ctx.artifact_table(name, df)``: a Spark-sized artifact written as shards of this attempt
    (reachable by every executor, on any store) and read back."""

    def write(name: str, df, order_by=ID):
        shards = write_verified(df, work.path("artifacts", name), order_by=order_by, rows_per_shard=rows_per_shard)
        entry = work.artifact_table(name, shards, df.schema)
        return entry, work.read(spark, entry)

    return write


class ExportStep:
    """``final``: the last stage's data in the output format."""

    name = dirname = FINAL_DIR

    def __init__(self, p: Pipeline):
        self.p = p

    def config_hash(self, upstream: str) -> str:
        return config_hash("final", {"format": self.p.output.format}, upstream)

    def input_fingerprint(self, upstream: str) -> str:
        return upstream

    def run(self, spark, target: str, cfg: str, fp: str, upstream: str, guard=lambda: None) -> dict:
        started, t0 = _now(), time.time()
        source = load_manifest(upstream)
        data = source["outputs"]["data"]
        order_by = source.get("order_by", ID)
        with stage_attempt(target) as work:
            if self.p.output.format == "parquet" and LAYER not in data:
                entry = work.entry(_copy_shards(upstream, data, work.path(DATA_DIR)), _schema(data), "parquet")
            else:
                df, fmt = read_shards(spark, upstream, data), self.p.output.format
                shards = write_verified(df, work.path(DATA_DIR), order_by=order_by,
                                        rows_per_shard=self.p.output.rows_per_shard, fmt=fmt)
                entry = work.entry(shards, df.schema, fmt)
            stats = {"rows_in": data["rows"], "rows_out": entry["rows"], "source_stage": fs.name(upstream)}
            guard()
            work.commit(manifest_for("final", len(self.p.stages) + 1, {"format": self.p.output.format}, cfg, fp,
                                     {"data": entry}, stats, started, t0, upstream=fs.name(upstream),
                                     order_by=order_by))
        return load_manifest(target)


def _schema(entry: dict):
    from pyspark.sql.types import StructType

    return StructType.fromJson(entry["schema"])


def _copy_shards(stage_dir: str, entry: dict, out_dir: str):
    """Copy a stage's shards byte for byte (their sha256 carry over)."""
    import shutil

    from curate.io.shards import Shard

    fs.makedirs(out_dir)
    copied = []
    for shard, src in zip(entry["shards"], shard_uris(stage_dir, entry)):
        dst = fs.join(out_dir, fs.name(src))
        with fs.open_file(src, "rb") as fin, fs.open_file(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
        copied.append(Shard(f"{DATA_DIR}/{fs.name(src)}", shard["rows"], shard["bytes"], shard["sha256"]))
    return copied
