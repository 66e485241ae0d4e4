"""Benchmark: fastText scoring inside the Spark ``fasttext_score`` stage vs a plain
single-process ``model.predict(list_of_texts)`` loop — same model, same documents, one run.

    .venv/bin/python bench/score.py [--corpus reuters21578.jsonl.gz] [--docs 20000] [--repeat 1] [--slots 1 2]

Reports wall-clock docs/s and docs per CPU-second ("per core": CPU time of every process
involved — driver, Spark JVM, Python workers — read from /proc, so it is fair on a shared,
loaded machine where wall-clock per slot is not). The single-process baseline
times the same work the stage does per document (fold to one line + predict), and also
``predict`` alone on pre-folded lines. Spark reads the documents from a Parquet file and
writes to the ``noop`` sink; the second of two passes is timed, so JVM start-up and the
per-worker model hash check + load are not counted (the cold first pass is reported too).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def read_docs(path: Path, limit: int) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            docs.append({"id": str(record["id"]), "text": record["text"]})
            if len(docs) >= limit:
                break
    return docs


def train_model(out: Path, bucket: int) -> Path:
    from curate.classifier import train_classifier

    corpora = DATA / "corpora"
    pos = [d["text"] for d in read_docs(corpora / "python_docs.jsonl", 400)]
    neg = [d["text"] for d in read_docs(corpora / "nltk_movie_reviews.jsonl", 400)]
    report = train_classifier(pos, neg, out, bucket=bucket)
    print(f"model: {out.stat().st_size / 1e6:.0f} MB, held-out ROC-AUC {report['metrics']['roc_auc']:.3f}")
    return out


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system, reaped children included) of process ``root`` and all its
    descendants — the driver, the Spark JVM and its Python workers (Linux /proc)."""
    root = os.getpid() if root is None else root
    stats, children = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        stats[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def time_single_process(model_path: Path, texts: list[str], batch: int) -> dict:
    from curate.classifier import load_model

    clf = load_model(model_path)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        clf.predict_proba(texts[i:i + batch], "hq")
    fold_and_predict = (time.perf_counter() - start, time.process_time() - cpu)
    lines = [clf.normalize(t) for t in texts]
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(lines), batch):
        clf.model.predict(lines[i:i + batch], k=-1)
    predict_only = (time.perf_counter() - start, time.process_time() - cpu)
    return {"fold+predict": fold_and_predict, "predict only": predict_only}


def time_spark(model_path: Path, parquet: Path, slots: int, batch: int):
    from pyspark.sql import SparkSession

    from curate.core import StageContext
    from curate.spark import get_spark
    from curate.stages.model_score import fasttext_score

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    spark = get_spark(f"local[{slots}]", {"spark.sql.shuffle.partitions": str(slots)})
    df = spark.read.parquet(str(parquet)).repartition(slots * 4, "id").cache()
    df.count()
    ctx = StageContext(spark, Path(tempfile.mkdtemp()))
    n = df.count()

    def one_pass() -> tuple[float, float]:
        start, cpu = time.perf_counter(), tree_cpu_seconds()
        fasttext_score(df, ctx, model=str(model_path), batch_size=batch).kept.write.format("noop") \
            .mode("overwrite").save()
        return time.perf_counter() - start, tree_cpu_seconds() - cpu

    cold, _ = one_pass()  # includes each Python worker hashing and loading the model once
    timed = one_pass()  # steady state: workers reused, model cached in each
    spark.stop()
    return n, timed, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="reuters21578.jsonl.gz")
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="repeat the documents (new ids) K times")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bucket", type=int, default=2_000_000, help="fastText n-gram buckets (DCLM default 2M)")
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the model alone is ~0.8 GB


def run(args, work: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    model_path = train_model(work / "quality.bin", args.bucket)
    docs = [{"id": f"{d['id']}#{k}", "text": d["text"]}
            for k in range(args.repeat) for d in read_docs(DATA / "corpora" / args.corpus, args.docs)]
    texts = [d["text"] for d in docs]
    parquet = work / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(docs), parquet)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"corpus: {args.corpus}, {len(docs)} docs, mean {mean_chars:.0f} chars; cores: {os.cpu_count()}; "
          f"load average at start: {os.getloadavg()[0]:.1f}")

    raw = time_single_process(model_path, texts, args.batch)
    n = len(texts)
    rows = [("single process, fold+predict", 1, n, *raw["fold+predict"]),
            ("single process, predict only", 1, n, *raw["predict only"])]
    for slots in args.slots:
        n_spark, (wall, cpu), cold = time_spark(model_path, parquet, slots, args.batch)
        rows.append((f"Spark fasttext_score local[{slots}] (cold first pass {cold:.1f}s)", slots, n_spark, wall, cpu))

    base = n / raw["fold+predict"][1]
    print("\n| run | slots | wall s | docs/s (wall) | CPU s (all processes) | docs per CPU-second | vs single process |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, slots, count, wall, cpu in rows:
        per_cpu = count / cpu
        print(f"| {name} | {slots} | {wall:.1f} | {count / wall:,.0f} | {cpu:.1f} | {per_cpu:,.0f} | {per_cpu / base:.2f} |")


if __name__ == "__main__":
    main()
