"""Benchmark: fastText scoring inside the Spark ``fasttext_score`` stage vs a plain
single-process ``model.predict(list_of_texts)`` loop — same model, same documents, one run.

    .venv/bin/python bench/score.py [--corpus reuters21578.jsonl.gz] [--docs 20000] [--repeat 5]
                                    [--passes 5] [--slots 1 2]
    .venv/bin/python bench/score.py --heuristics [--docs 2000] [--passes 3] [--batch 1000]

(``--heuristics``: the Gopher / C4 / FineWeb filter families instead, see :func:`heuristics`.)

Reports wall-clock docs/s and docs per CPU-second ("per core": CPU time of every process
involved — driver, Spark JVM, Python workers — read from /proc, so it is fair on a shared,
loaded machine where wall-clock per slot is not). The single-process baseline
times the same work the stage does per document (fold to one line + predict), and also
``predict`` alone on pre-folded lines. Spark reads the documents from a Parquet file and
writes to the ``noop`` sink. Both sides are timed over ``--passes`` passes and the median
pass is reported (the spread in brackets): the Spark side after one cold pass, which
includes JVM start-up and each Python worker hashing and loading the model once (reported
too). A stage over a real corpus runs long past the JVM's JIT warm-up, so the warm
median is the figure that matters; the first warm pass is shown as well.
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

from proctime import tree_cpu_seconds

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
    from curate.quality.classifier import train_classifier

    corpora = DATA / "corpora"
    pos = [d["text"] for d in read_docs(corpora / "python_docs.jsonl", 400)]
    neg = [d["text"] for d in read_docs(corpora / "nltk_movie_reviews.jsonl", 400)]
    report = train_classifier(pos, neg, out, bucket=bucket)
    print(f"model: {out.stat().st_size / 1e6:.0f} MB, held-out ROC-AUC {report['metrics']['roc_auc']:.3f}")
    return out


def median_pass(passes: list[tuple[float, float]]) -> tuple[float, float]:
    """The (wall, cpu, ...) pass with the median CPU time."""
    return sorted(passes, key=lambda p: p[1])[len(passes) // 2]


def time_single_process(model_path: Path, texts: list[str], batch: int, passes: int) -> dict:
    from curate.quality.classifier import load_classifier

    clf = load_classifier(model_path)
    lines = [clf.normalize_line(t) for t in texts]

    def fold_and_predict():
        for i in range(0, len(texts), batch):
            clf.predict_proba(texts[i:i + batch], "hq")

    def predict_only():
        for i in range(0, len(lines), batch):
            clf.model.predict(lines[i:i + batch], k=-1)

    def timed(fn) -> tuple[float, float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - start, time.process_time() - cpu, 0.0

    return {"fold+predict": [timed(fold_and_predict) for _ in range(passes)],
            "predict only": [timed(predict_only) for _ in range(passes)]}


def time_spark(model_path: Path, parquet: Path, slots: int, batch: int, passes: int):
    from pyspark.sql import SparkSession

    from curate.core import StageContext
    from curate.engine.spark import get_spark
    from curate.quality.fasttext_score import fasttext_score

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    spark = get_spark(f"local[{slots}]", {"spark.sql.shuffle.partitions": str(slots)})
    df = spark.read.parquet(str(parquet)).repartition(slots * 4, "id").cache()
    df.count()
    ctx = StageContext(spark, Path(tempfile.mkdtemp()))
    n = df.count()

    def one_pass() -> tuple[float, float, float]:
        start, before = time.perf_counter(), tree_cpu_seconds()
        fasttext_score(df, ctx, model=str(model_path), batch_size=batch).kept.write.format("noop") \
            .mode("overwrite").save()
        wall, after = time.perf_counter() - start, tree_cpu_seconds()
        return wall, sum(after.values()) - sum(before.values()), after["jvm"] - before["jvm"]

    cold = one_pass()  # includes each Python worker hashing and loading the model once
    warm = [one_pass() for _ in range(passes)]  # workers reused, model cached in each
    spark.stop()
    return n, cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="reuters21578.jsonl.gz")
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="repeat the documents (new ids) K times")
    parser.add_argument("--passes", type=int, default=5, help="timed passes per side (median reported)")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bucket", type=int, default=2_000_000, help="fastText n-gram buckets (DCLM default 2M)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--heuristics", action="store_true",
                        help="instead: the heuristic filter families, filters/ (reference) vs the score pass's")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    if args.heuristics:
        heuristics(args.docs, args.passes, args.batch)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the model alone is ~0.8 GB


HEURISTICS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")


def heuristics(docs: int, passes: int, batch: int) -> None:
    """MB of text per CPU second of the four filter families (issue 19 item 3), in this one
    process on the same ~4 KB documents: the readable reference filters of ``filters/``
    vs the filters the ``score`` stage runs (:func:`curate.quality.fast_filters.fast_filter`),
    each family alone (each paying for its own split) and the four together, as one
    score pass runs them on each batch. Scores are checked equal."""
    from decontam import web_like_documents

    import filters as registry
    from curate.quality.fast_filters import fast_filter

    texts = web_like_documents(docs, 0.0, [])
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    reference = [registry.build(name, {}) for name in HEURISTICS]
    fast = [fast_filter(f) for f in reference]
    for f in reference + fast:
        f.setup()

    def rate(filters) -> tuple[float, list[float]]:
        rates = []
        for _ in range(passes):
            start = time.process_time()
            for texts_of_batch in batches:
                for f in filters:
                    f.score_batch(list(texts_of_batch))  # a new list per call: no sharing across filters
            rates.append(megabytes / (time.process_time() - start))
        return sorted(rates)[len(rates) // 2], rates

    def pass_rate(filters) -> tuple[float, list[float]]:
        rates = []
        for _ in range(passes):
            start = time.process_time()
            for texts_of_batch in batches:
                for f in filters:
                    f.score_batch(texts_of_batch)  # one list per batch, as the score pass does
            rates.append(megabytes / (time.process_time() - start))
        return sorted(rates)[len(rates) // 2], rates

    same = all(r.score_batch(b) == f.score_batch(b) for r, f in zip(reference, fast) for b in batches)
    print(f"{len(texts)} documents, {megabytes:.1f} MB, batches of {batch}; scores equal to filters/: {same}")
    print(f"{'':<20}{'filters/ MB/s':>15}{'score pass MB/s':>17}{'ratio':>8}")
    for r, f in zip(reference, fast):
        (old, _), (new, _) = rate([r]), rate([f])
        print(f"{r.name:<20}{old:>15.1f}{new:>17.1f}{new / old:>7.1f}x")
    (old, old_rates), (new, new_rates) = pass_rate(reference), pass_rate(fast)
    print(f"{'all four, one pass':<20}{old:>15.2f}{new:>17.2f}{new / old:>7.1f}x   passes: "
          f"{' '.join(f'{x:.2f}' for x in old_rates)} | {' '.join(f'{x:.2f}' for x in new_rates)}")


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

    raw = time_single_process(model_path, texts, args.batch, args.passes)
    n = len(texts)
    rows = [(f"single process, {kind}", 1, n, passes) for kind, passes in raw.items()]
    for slots in args.slots:
        n_spark, cold, warm = time_spark(model_path, parquet, slots, args.batch, args.passes)
        rows.append((f"Spark fasttext_score local[{slots}] (cold pass {cold[0]:.1f} s; first warm pass "
                     f"{n_spark / warm[0][1]:,.0f} docs per CPU-s)", slots, n_spark, warm))

    base = n / median_pass(raw["fold+predict"])[1]
    print(f"\n{args.passes} passes each, median pass shown; [min–max] of docs per CPU-second over the passes")
    print("\n| run | slots | wall s | docs/s (wall) | CPU s (all processes) | of which JVM | docs per CPU-second "
          "| vs single process |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, slots, count, passes in rows:
        wall, cpu, jvm = median_pass(passes)
        rates = sorted(count / p[1] for p in passes)
        print(f"| {name} | {slots} | {wall:.1f} | {count / wall:,.0f} | {cpu:.1f} | {jvm:.1f} | "
              f"{count / cpu:,.0f} [{rates[0]:,.0f}–{rates[-1]:,.0f}] | {count / cpu / base:.2f} |")
    for _name, slots, _count, passes in rows[2:]:
        print(f"local[{slots}] JVM CPU s per warm pass, in order: {', '.join(f'{p[2]:.2f}' for p in passes)}")


if __name__ == "__main__":
    main()
