"""Run a pipeline stage by stage: skip what is complete, refuse what changed, resume after kills.

Steps are ``00-read`` (implicit), the pipeline's stages ``01-…``, and ``final`` (the
export of the last stage in the output format). Each step is materialised atomically with
a manifest; a rerun skips steps whose config hash and input fingerprint match.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from curate.config import Pipeline, StageCall, load_pipeline
from curate.core import ID, REJECT_REASON, CurateError, StageContext, StageOutput, get_stage
from curate.io.read import (QUARANTINE_COLUMNS, fingerprint_files, list_input_files, materialize_builtin,
                            read_documents)
from curate.io.shards import load_manifest, read_stage, shard_dicts, write_shards
from curate.engine.manifest import (atomic_stage_dir, clean_leftovers, config_hash, output_fingerprint,
                             write_manifest)

READ_DIR = "00-read"
FINAL_DIR = "final"
QUARANTINE_DIR = "_quarantine"
PROGRESS_SECONDS = 15.0


@dataclass
class StepResult:
    name: str
    dirname: str
    status: str  # "ran" | "skipped"
    stats: dict[str, Any]
    seconds: float


@dataclass
class RunResult:
    pipeline: Pipeline
    output_dir: Path
    steps: list[StepResult] = field(default_factory=list)

    @property
    def stage_dirs(self) -> dict[str, Path]:
        return {s.dirname: self.output_dir / s.dirname for s in self.steps}

    @property
    def stats(self) -> dict[str, dict]:
        return {s.dirname: s.stats for s in self.steps}

    @property
    def final_dir(self) -> Path:
        return self.output_dir / FINAL_DIR


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_pipeline(pipeline: str | Path | Mapping[str, Any] | Pipeline, *, input: str | None = None,
                 output: str | None = None, master: str | None = None,
                 conf: Mapping[str, str] | None = None, force: bool = False,
                 from_stage: str | None = None, only: str | None = None, spark=None,
                 log: Callable[[str], None] = _stderr) -> RunResult:
    """Run (or resume) a pipeline. See the module docstring for the skip/refuse rules."""
    p = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline, input=input, output=output)
    if spark is None:
        from curate.engine.spark import get_spark

        spark = get_spark(master or p.spark.get("master"), {**p.spark.get("conf", {}), **dict(conf or {})})
    out = Path(p.output.path)
    out.mkdir(parents=True, exist_ok=True)
    p = replace(p, input=materialize_builtin(p.input, out))
    for name in clean_leftovers(out):
        log(f"removed leftover {name} from an interrupted run")
    steps = [_ReadStep(p)] + [_StageStep(p, call) for call in p.stages] + [_ExportStep(p)]
    redo_from = _step_index(steps, from_stage) if from_stage else None
    only_index = _step_index(steps, only) if only else None
    result = RunResult(p, out)
    upstream_hash, upstream_fp = "", ""
    for i, step in enumerate(steps):
        cfg, fp = step.config_hash(upstream_hash), step.input_fingerprint(upstream_fp)
        target = out / step.dirname
        existing = load_manifest(target)
        redo = force or (redo_from is not None and i >= redo_from)
        selected = only_index is None or i == only_index
        if existing and not redo:
            _check_unchanged(step, existing, cfg, fp)
            if selected:
                log(f"[{i}/{len(steps) - 1}] {step.dirname}: complete, skipped")
                result.steps.append(StepResult(step.name, step.dirname, "skipped", existing["stats"], 0.0))
        elif not selected:
            if only_index is not None and i < only_index:
                raise CurateError(f"cannot run only '{only}': its input {step.dirname} is not complete; "
                                  f"run the earlier stages first")
            break
        else:
            log(f"[{i}/{len(steps) - 1}] {step.dirname}: running")
            t0 = time.time()
            with _progress(spark, f"[{i}/{len(steps) - 1}] {step.dirname}", log):
                existing = step.run(spark, target, cfg, fp, upstream=out / steps[i - 1].dirname if i else None)
            secs = time.time() - t0
            log(f"[{i}/{len(steps) - 1}] {step.dirname}: {_summary(existing['stats'])} in {secs:.1f}s")
            result.steps.append(StepResult(step.name, step.dirname, "ran", existing["stats"], secs))
        upstream_hash, upstream_fp = cfg, output_fingerprint(existing)
        if only_index is not None and i == only_index:
            break
    return result


@contextmanager
def _progress(spark, label: str, log: Callable[[str], None], every: float = PROGRESS_SECONDS):
    """While a step runs, report finished/total tasks of active Spark stages every ``every`` s."""
    done = threading.Event()
    t0 = time.time()

    def report():
        tracker = spark.sparkContext.statusTracker()
        while not done.wait(every):
            infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            tasks = [(i.numCompletedTasks, i.numTasks) for i in infos if i is not None]
            finished, total = sum(t[0] for t in tasks), sum(t[1] for t in tasks)
            log(f"{label}: {time.time() - t0:.0f}s elapsed, {finished}/{total} tasks of active Spark stages")

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def _step_index(steps: list, ref: str) -> int:
    for i, step in enumerate(steps):
        if ref in (step.name, step.dirname, str(i)):
            return i
    raise CurateError(f"no stage '{ref}'; stages: {', '.join(s.dirname for s in steps)}")


def _check_unchanged(step, manifest: dict, cfg: str, fp: str) -> None:
    if manifest.get("config_hash") != cfg:
        raise CurateError(f"{step.dirname} was built with a different configuration; rerun with "
                          f"--from {step.name} to rebuild it and what follows (or --force)")
    if manifest.get("input_fingerprint") != fp:
        raise CurateError(f"the input of {step.dirname} changed since it was built; rerun with "
                          f"--from {step.name} (or --force)")


def _summary(stats: dict) -> str:
    parts = [f"{stats.get('rows_in', 0):,} in", f"{stats.get('rows_out', 0):,} out"]
    if stats.get("quarantined"):
        parts.append(f"{stats['quarantined']:,} quarantined")
    if stats.get("rejected"):
        parts.append(f"{sum(stats['rejected'].values()):,} rejected")
    return ", ".join(parts)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _output_entry(shards, schema, fmt: str) -> dict:
    return {"format": fmt, "schema": schema.jsonValue(), "shards": shard_dicts(shards),
            "rows": sum(s.rows for s in shards)}


def _write_verified(df, out_dir: Path, *, order_by, rows_per_shard: int, fmt: str = "parquet"):
    """Persist, count, write shards, and check the shards hold exactly the counted rows."""
    from pyspark import StorageLevel

    df = df.persist(StorageLevel.DISK_ONLY)
    try:
        rows = df.count()
        shards = write_shards(df, out_dir, order_by=order_by, rows_per_shard=rows_per_shard,
                              fmt=fmt, total_rows=rows)
    finally:
        df.unpersist()
    written = sum(s.rows for s in shards)
    if written != rows:
        raise RuntimeError(f"{out_dir}: wrote {written} rows, expected {rows}")
    return shards


def _reason_counts(df, column: str = REJECT_REASON) -> dict[str, int]:
    return {r[column]: r["count"] for r in df.groupBy(column).count().orderBy(column).collect()}


def _chars(df) -> int:
    from pyspark.sql import functions as F

    return int(df.agg(F.coalesce(F.sum(F.length("text")), F.lit(0))).first()[0]) if "text" in df.columns else 0


class _ReadStep:
    name, dirname = "read", READ_DIR

    def __init__(self, p: Pipeline):
        self.p = p

    def config_hash(self, _upstream: str) -> str:
        return config_hash("read", self.p.input.__dict__, "", {"rows_per_shard": self.p.output.rows_per_shard})

    def input_fingerprint(self, _upstream: str) -> str:
        root, files = list_input_files(self.p.input.path)
        return fingerprint_files(root, files)

    def run(self, spark, target: Path, cfg: str, fp: str, upstream=None) -> dict:
        started, t0 = _now(), time.time()
        result = read_documents(spark, self.p.input)
        try:
            with atomic_stage_dir(target) as tmp:
                outputs, stats = self._materialize(spark, result, tmp, target.parent)
                write_manifest(tmp, {
                    "stage": "read", "index": 0, "params": self.p.input.__dict__, "config_hash": cfg,
                    "input_fingerprint": fp, "input_root": str(result.root), "input_files": result.files,
                    "outputs": outputs, "stats": stats, "artifacts": {},
                    "timings": {"started": started, "finished": _now(), "seconds": round(time.time() - t0, 3)},
                })
        finally:
            result.release()
        return load_manifest(target)

    def _materialize(self, spark, result, tmp: Path, out: Path) -> tuple[dict, dict]:
        """Write documents and quarantine; return the manifest outputs and the accounting."""
        from pyspark.sql import functions as F

        repairs = {r["repair"]: r["count"] for r in result.docs.filter(F.col("repairs").isNotNull())
                   .select(F.explode(F.split("repairs", ",")).alias("repair"))
                   .groupBy("repair").count().orderBy("repair").collect()}
        docs = result.docs.drop("repairs", "_file", "_line")
        shards = _write_verified(docs, tmp / "data", order_by=ID, rows_per_shard=self.p.output.rows_per_shard)
        quarantine = _write_quarantine(result.quarantine, out, self.p.output.rows_per_shard)
        rows_out = sum(s.rows for s in shards)
        stats = {"files": len(result.files), "rows_in": rows_out + quarantine["records"], "rows_out": rows_out,
                 "quarantined": quarantine["records"], "quarantine_reasons": quarantine["reasons"],
                 "file_problems": quarantine["file_problems"], "repairs": repairs,
                 "chars_out": _chars(read_stage_like(spark, tmp / "data", shards, docs.schema))}
        outputs = {"data": _output_entry(shards, docs.schema, "parquet"), "quarantine": quarantine["entry"]}
        return outputs, stats


def read_stage_like(spark, data_dir: Path, shards, schema):
    """Read freshly written shards (before the stage directory is renamed into place)."""
    files = [str(data_dir.parent / s.file) for s in shards]
    return spark.read.schema(schema).parquet(*files) if files else spark.createDataFrame([], schema)


def _write_quarantine(quarantine_df, out: Path, rows_per_shard: int) -> dict:
    """Write quarantine records to ``<output>/_quarantine/`` (JSONL) and count them."""
    from pyspark.sql import functions as F

    target = out / QUARANTINE_DIR
    with atomic_stage_dir(target) as tmp:
        df = quarantine_df.select(*QUARANTINE_COLUMNS)
        shards = _write_verified(df, tmp / "data", order_by=["file", "line", "kind", "reason"],
                                 rows_per_shard=rows_per_shard, fmt="jsonl")
        written = spark_read_jsonl(quarantine_df.sparkSession, tmp, shards, df.schema)
        by_kind = {r["kind"]: r["count"] for r in written.groupBy("kind").count().collect()}
        reasons = {r["r"]: r["count"] for r in written.filter(F.col("kind") == "record")
                   .select(F.regexp_extract("reason", r"^([a-z_0-9]+)", 1).alias("r"))
                   .groupBy("r").count().orderBy("r").collect()}
        problems = [{"file": r["file"], "reason": r["reason"]} for r in
                    written.filter(F.col("kind") == "file").orderBy("file").collect()]
        entry = _output_entry(shards, df.schema, "jsonl")
        write_manifest(tmp, {"stage": "quarantine", "outputs": {"data": entry}, "stats": {"records": by_kind}})
    return {"records": by_kind.get("record", 0), "reasons": reasons, "file_problems": problems, "entry": {
        **entry, "shards": [{**s, "file": f"../{QUARANTINE_DIR}/{s['file']}"} for s in entry["shards"]]}}


def spark_read_jsonl(spark, base: Path, shards, schema):
    files = [str(base / s.file) for s in shards]
    return spark.read.schema(schema).json(*files) if files else spark.createDataFrame([], schema)


class _StageStep:
    def __init__(self, p: Pipeline, call: StageCall):
        self.p, self.call = p, call
        self.name, self.dirname = call.name, call.dirname

    def config_hash(self, upstream: str) -> str:
        return config_hash(self.name, self.call.params, upstream, {"seed": self.p.seed, "index": self.call.index})

    def input_fingerprint(self, upstream: str) -> str:
        return upstream

    def run(self, spark, target: Path, cfg: str, fp: str, upstream: Path) -> dict:
        started, t0 = _now(), time.time()
        df = read_stage(spark, upstream)
        rows_in = load_manifest(upstream)["outputs"]["data"]["rows"]
        spec = get_stage(self.name)
        per_shard = self.p.output.rows_per_shard
        with atomic_stage_dir(target) as tmp:
            ctx = StageContext(spark, tmp, self.p.base_dir, self.p.seed, target.parent)
            out: StageOutput = spec.fn(df, ctx, **self.call.params)
            if not isinstance(out, StageOutput):
                raise RuntimeError(f"stage '{self.name}' returned {type(out).__name__}, not StageOutput")
            kept_shards = _write_verified(out.kept, tmp / "data", order_by=out.order_by, rows_per_shard=per_shard)
            kept = read_stage_like(spark, tmp / "data", kept_shards, out.kept.schema)
            outputs = {"data": _output_entry(kept_shards, out.kept.schema, "parquet")}
            rejected = None
            if out.rejected is not None:
                if REJECT_REASON not in out.rejected.columns:
                    raise RuntimeError(f"stage '{self.name}': rejected rows need a '{REJECT_REASON}' column")
                rej_shards = _write_verified(out.rejected, tmp / "rejected", order_by=ID, rows_per_shard=per_shard)
                rejected = read_stage_like(spark, tmp / "rejected", rej_shards, out.rejected.schema)
                outputs["rejected"] = _output_entry(rej_shards, out.rejected.schema, "parquet")
            rows_out = sum(s.rows for s in kept_shards)
            reasons = _reason_counts(rejected) if rejected is not None else {}
            if rows_out + sum(reasons.values()) != rows_in:
                raise RuntimeError(f"stage '{self.name}' lost rows: {rows_in} in, {rows_out} kept, "
                                   f"{sum(reasons.values())} rejected")
            extra = out.stats(kept, rejected) if callable(out.stats) else dict(out.stats)
            stats = {"rows_in": rows_in, "rows_out": rows_out, "rejected": reasons,
                     "chars_out": _chars(kept),
                     "chars_rejected": _chars(rejected) if rejected is not None else 0, **extra}
            write_manifest(tmp, {
                "stage": self.name, "index": self.call.index, "params": self.call.params, "config_hash": cfg,
                "input_fingerprint": fp, "upstream": upstream.name, "order_by": out.order_by,
                "outputs": outputs, "stats": stats, "artifacts": dict(sorted(ctx.artifacts.items())),
                "timings": {"started": started, "finished": _now(), "seconds": round(time.time() - t0, 3)},
            })
        return load_manifest(target)


class _ExportStep:
    name = dirname = FINAL_DIR

    def __init__(self, p: Pipeline):
        self.p = p

    def config_hash(self, upstream: str) -> str:
        return config_hash("final", {"format": self.p.output.format}, upstream)

    def input_fingerprint(self, upstream: str) -> str:
        return upstream

    def run(self, spark, target: Path, cfg: str, fp: str, upstream: Path) -> dict:
        started, t0 = _now(), time.time()
        source = load_manifest(upstream)
        data = source["outputs"]["data"]
        with atomic_stage_dir(target) as tmp:
            if self.p.output.format == "parquet":
                (tmp / "data").mkdir()
                for shard in data["shards"]:
                    shutil.copyfile(upstream / shard["file"], tmp / shard["file"])
                entry = dict(data)
            else:
                df = read_stage(spark, upstream)
                shards = _write_verified(df, tmp / "data", order_by=source.get("order_by", ID),
                                         rows_per_shard=self.p.output.rows_per_shard, fmt="jsonl")
                entry = _output_entry(shards, df.schema, "jsonl")
            stats = {"rows_in": data["rows"], "rows_out": entry["rows"], "source_stage": upstream.name}
            write_manifest(tmp, {
                "stage": "final", "index": len(self.p.stages) + 1, "params": {"format": self.p.output.format},
                "config_hash": cfg, "input_fingerprint": fp, "upstream": upstream.name,
                "order_by": source.get("order_by", ID), "outputs": {"data": entry}, "stats": stats,
                "artifacts": {}, "timings": {"started": started, "finished": _now(),
                                             "seconds": round(time.time() - t0, 3)}})
        return load_manifest(target)
