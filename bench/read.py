"""Benchmark reading one large uncompressed JSONL file: split into byte ranges vs one task per file.

Generates (once) a JSONL file of --size-gib from the real text under ../shared/data/corpora
(documents repeated with fresh ids) into bench/_data/, then times, each in a fresh process:

  * ``split``: curate's reader (``read_documents``: one parse job over line-aligned byte ranges,
    the carried-field schema from their shapes, the duplicate-id check) with the default 128 MiB
    splits, on local[2] and on local[1];
  * ``whole``: the same with ``split_size`` larger than the file (one task, today's behaviour);
  * ``spark.read.json``: Spark's own JSON source (schema inference pass + ``count()``).

The measured work is ``read_documents`` plus counting the documents and the quarantine records
(every byte parsed, the duplicate-id check evaluated), not the shard write that follows in
``00-read``: writing sorted Parquet is the same code whatever the reader did and would hide it.
Reports wall seconds, CPU seconds of the whole process tree and MB/s.

    .venv/bin/python bench/read.py --size-gib 2
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from proctime import tree_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data")).resolve() / "corpora"
DATA = REPO / "bench" / "_data"
RUNS = [("split", "local[2]"), ("whole", "local[2]"), ("split", "local[1]"), ("spark.read.json", "local[2]"),
        ("spark.read.json", "local[1]")]


def corpus_lines() -> list[bytes]:
    """Every document of the shared corpora as one JSONL line (sorted by file)."""
    lines = []
    for path in sorted(CORPORA.glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            lines.extend(line.rstrip(b"\n") for line in fh if line.strip())
    if not lines:
        raise SystemExit(f"no corpora under {CORPORA}")
    return lines


def make_file(size: int) -> Path:
    """``bench/_data/read-<size>.jsonl``: corpus documents repeated with ids ``<copy>/<id>`` until ``size`` bytes."""
    path = DATA / f"read-{size}.jsonl"
    if path.is_file() and path.stat().st_size >= size:
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    lines, written, copy = corpus_lines(), 0, 0
    prefix = b'{"id":"'
    assert all(line.startswith(prefix) for line in lines), "shared corpora lines start with the id"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        while written < size:
            for line in lines:
                data = b"%s%d/%s\n" % (prefix, copy, line[len(prefix):])
                out.write(data)
                written += len(data)
                if written >= size:
                    break
            copy += 1
    tmp.replace(path)
    return path


def measure(mode: str, master: str, path: Path, split_size: str = "128MiB") -> dict:
    """Run one configuration in this process (a fresh SparkSession) and time it."""
    from curate.engine.spark import get_spark
    from curate.io.read import InputSpec, read_documents

    spark = get_spark(master, {"spark.sql.shuffle.partitions": "16"})
    cpu0, t0 = sum(tree_cpu_seconds().values()), time.perf_counter()
    if mode == "spark.read.json":
        docs, quarantined = spark.read.json(str(path)).count(), 0
    else:
        spec = InputSpec(str(path), split_size="1TiB" if mode == "whole" else split_size)
        result = read_documents(spark, spec)
        docs, quarantined = result.docs.count(), result.quarantine.count()
        result.release()
    wall = time.perf_counter() - t0
    cpu = sum(tree_cpu_seconds().values()) - cpu0
    spark.stop()
    size = path.stat().st_size
    return {"mode": mode, "master": master, "docs": docs, "quarantined": quarantined, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "mb_per_s": round(size / 1e6 / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--runs", default=",".join(f"{m}@{s}" for m, s in RUNS),
                    help="comma-separated mode@master (modes: split, whole, spark.read.json)")
    ap.add_argument("--split-size", default="128MiB", help="input.split_size of the split runs")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "MASTER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = make_file(int(args.size_gib * (1 << 30)))
    if args.one:
        print(json.dumps(measure(*args.one, path, args.split_size)))
        return
    print(f"file: {path} ({path.stat().st_size / (1 << 30):.2f} GiB), split size {args.split_size}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for run in args.runs.split(","):
        mode, master = run.split("@")
        out = subprocess.run([sys.executable, __file__, "--size-gib", str(args.size_gib),
                              "--split-size", args.split_size, "--one", mode, master],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    wall = {(r["mode"], r["master"]): r["wall_s"] for r in results}
    for name, a, b in [("split vs whole, local[2]", ("whole", "local[2]"), ("split", "local[2]")),
                       ("split local[1] -> local[2]", ("split", "local[1]"), ("split", "local[2]")),
                       ("spark.read.json vs split, local[2]", ("spark.read.json", "local[2]"), ("split", "local[2]"))]:
        if a in wall and b in wall:
            print(f"{name}: {wall[a] / wall[b]:.2f}x")


if __name__ == "__main__":
    main()
