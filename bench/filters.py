"""Heuristic filter benchmark: curate's score+select (Spark local[1]) vs datatrove, same documents.

    .venv/bin/python bench/filters.py [--docs 4000] [--out bench/_data/filters]

Prepares a corpus from ../shared/data (never copied into the repo; written under bench/_data/),
then, in one run:
  1. curate: ``score`` (gopher_quality, gopher_repetition, c4, fineweb) written to Parquet, then
     ``select`` writing kept and rejected rows, on SparkSession local[1] (one task slot);
  2. curate filters in a plain Python loop (no Spark), per filter;
  3. datatrove 0.x GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter,
     FineWebQualityFilter, each called directly on every document (no pipeline I/O), in its own
     virtualenv bench/.venvs/datatrove (``pip install "datatrove[processing,io]" spacy``).
Reports docs/s per core and the keep/drop agreement per filter. Re-run this file with
``--worker datatrove`` under the datatrove interpreter to get only step 3 (the script does that).
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

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
DATATROVE_PY = REPO / "bench" / ".venvs" / "datatrove" / "bin" / "python"
FILTERS = ["gopher_quality", "gopher_repetition", "c4", "fineweb"]
# corpus file -> share of the documents taken from it (first N by file order: deterministic)
MIX = {"corpora/reuters21578.jsonl.gz": 0.5, "corpora/nltk_abc.jsonl": 0.2,
       "corpora/nltk_movie_reviews.jsonl": 0.15, "corpora/nltk_webtext.jsonl": 0.1,
       "corpora/wikitext2.jsonl": 0.025, "corpora/nltk_state_union.jsonl": 0.025}


def read_jsonl(path: Path, limit: int) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if len(rows) >= limit:
                break
            record = json.loads(line)
            rows.append({"id": record["id"], "text": record["text"], "source": record["source"]})
    return rows


def prepare(n_docs: int, out: Path) -> Path:
    docs = []
    for name, share in MIX.items():
        docs += read_jsonl(SHARED / name, max(1, int(n_docs * share)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "docs.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- curate

def run_curate_spark(docs_path: Path, out: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from curate.core import StageContext
    from curate.engine.spark import get_spark
    from curate.quality.score import score, select

    spark = get_spark("local[1]", {"spark.sql.shuffle.partitions": "1", "spark.default.parallelism": "1"})
    raw = spark.read.json(str(docs_path)).select("id", "text", "source")
    raw.write.mode("overwrite").parquet(str(out / "input.parquet"))
    df = spark.read.parquet(str(out / "input.parquet"))
    n = df.count()
    ctx = StageContext(spark, out / "stage")

    start = time.perf_counter()
    df.write.mode("overwrite").format("noop").save()
    read_only = time.perf_counter() - start

    start = time.perf_counter()
    score(df, ctx, filters=FILTERS).kept.write.mode("overwrite").parquet(str(out / "scored"))
    score_s = time.perf_counter() - start
    start = time.perf_counter()
    chosen = select(spark.read.parquet(str(out / "scored")), ctx, filters={})
    chosen.kept.write.mode("overwrite").parquet(str(out / "kept"))
    chosen.rejected.write.mode("overwrite").parquet(str(out / "rejected"))
    select_s = time.perf_counter() - start

    import filters as registry

    built = {name: registry.build(name) for name in FILTERS}
    scored = spark.read.parquet(str(out / "scored")).select("id", *FILTERS)
    decisions = {}
    for row in scored.toLocalIterator():  # a benchmark, not a stage: the decisions come to the driver
        decisions[row["id"]] = {name: built[name].reject(row[name].asDict()) for name in FILTERS}
    kept = spark.read.parquet(str(out / "kept")).count()
    spark.stop()
    return {"docs": n, "read_s": read_only, "score_s": score_s, "select_s": select_s, "kept": kept,
            "decisions": decisions}


def run_curate_python(docs: list[dict]) -> dict:
    sys.path.insert(0, str(REPO))
    import filters as registry

    seconds, cpu = {}, {}
    for name in FILTERS:
        flt = registry.build(name)
        flt.setup()
        start, start_cpu = time.perf_counter(), time.process_time()
        for doc in docs:
            flt.reject(flt.score(doc))
        seconds[name], cpu[name] = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu


# ----------------------------------------------------------------------------- datatrove (worker)

def offline_nltk() -> None:
    """nltk's punkt model cannot be downloaded here: use an untrained Punkt sentence splitter (same
    algorithm, no learned abbreviations) and nltk's Treebank word tokenizer, which is what
    ``word_tokenize`` runs after sentence splitting."""
    import nltk
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer

    splitter, words = PunktSentenceTokenizer(), NLTKWordTokenizer()

    def sent_tokenize(text, language="english"):
        return splitter.tokenize(text)

    def word_tokenize(text, language="english", preserve_line=False):
        return [tok for sent in ([text] if preserve_line else sent_tokenize(text)) for tok in words.tokenize(sent)]

    nltk.sent_tokenize = nltk.tokenize.sent_tokenize = sent_tokenize
    nltk.word_tokenize = nltk.tokenize.word_tokenize = word_tokenize


def datatrove_worker(docs_path: Path, result_path: Path) -> None:
    offline_nltk()
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    docs = [json.loads(line) for line in docs_path.read_text(encoding="utf-8").splitlines()]
    made = {"gopher_quality": GopherQualityFilter(), "gopher_repetition": GopherRepetitionFilter(),
            "c4": C4QualityFilter(), "fineweb": FineWebQualityFilter(char_duplicates_ratio=0.1)}
    seconds, cpu, decisions = {}, {}, {d["id"]: {} for d in docs}
    for name, flt in made.items():
        fresh = [Document(text=d["text"], id=d["id"]) for d in docs]
        flt.filter(Document(text="warm up the tokenizer. " * 20, id="warm"))
        start, start_cpu = time.perf_counter(), time.process_time()
        verdicts = [flt.filter(doc) for doc in fresh]
        seconds[name], cpu[name] = time.perf_counter() - start, time.process_time() - start_cpu
        for doc, verdict in zip(fresh, verdicts):
            keep = verdict if isinstance(verdict, bool) else verdict[0]
            decisions[doc.id][name] = None if keep else (verdict[1] if isinstance(verdict, tuple) else "drop")
    import datatrove

    version = getattr(datatrove, "__version__", None)
    if version is None:
        from importlib.metadata import version as package_version
        version = package_version("datatrove")
    result_path.write_text(json.dumps({"seconds": seconds, "cpu": cpu, "decisions": decisions,
                                       "version": version}))


# ----------------------------------------------------------------------------- report

def agreement(curate: dict, other: dict) -> dict[str, dict]:
    out = {}
    for name in FILTERS:
        both = [(curate[i][name] is None, other[i][name] is None) for i in curate if i in other]
        same = sum(a == b for a, b in both)
        out[name] = {"agree": same / len(both), "curate_keeps": sum(a for a, _ in both),
                     "datatrove_keeps": sum(b for _, b in both),
                     "only_curate_drops": sum(not a and b for a, b in both),
                     "only_datatrove_drops": sum(a and not b for a, b in both)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "_data" / "filters")
    parser.add_argument("--worker", choices=["datatrove"])
    parser.add_argument("--input", type=Path)
    parser.add_argument("--result", type=Path)
    args = parser.parse_args()
    if args.worker == "datatrove":
        datatrove_worker(args.input, args.result)
        return

    docs_path = prepare(args.docs, args.out)
    docs = [json.loads(line) for line in docs_path.read_text(encoding="utf-8").splitlines()]
    chars = sum(len(d["text"]) for d in docs)
    print(f"corpus: {len(docs):,} docs, {chars / len(docs):,.0f} chars/doc on average ({docs_path})")

    dt_result = args.out / "datatrove.json"
    subprocess.run([str(DATATROVE_PY), __file__, "--worker", "datatrove", "--input", str(docs_path),
                    "--result", str(dt_result)], check=True)
    dt = json.loads(dt_result.read_text())
    py_seconds, py_cpu = run_curate_python(docs)
    spark = run_curate_spark(docs_path, args.out)

    n = len(docs)
    dt_total = sum(dt["seconds"].values())
    spark_total = spark["score_s"] + spark["select_s"]
    print(f"\ndatatrove {dt['version']} (single process, filters called directly, no I/O); "
          f"docs/s on wall clock and [on process CPU time]")
    print(f"{'filter':<20}{'datatrove':>20}{'curate (python loop)':>24}{'ratio':>16}")
    for name in FILTERS:
        a, b = n / dt["seconds"][name], n / py_seconds[name]
        a_cpu, b_cpu = n / dt["cpu"][name], n / py_cpu[name]
        print(f"{name:<20}{a:>9,.0f} [{a_cpu:>7,.0f}]{b:>13,.0f} [{b_cpu:>7,.0f}]"
              f"{b / a:>7.1f}x [{b_cpu / a_cpu:>5.1f}x]")
    py_total, py_cpu_total, dt_cpu_total = sum(py_seconds.values()), sum(py_cpu.values()), sum(dt["cpu"].values())
    print(f"{'all four':<20}{n / dt_total:>9,.0f} [{n / dt_cpu_total:>7,.0f}]{n / py_total:>13,.0f} "
          f"[{n / py_cpu_total:>7,.0f}]{dt_total / py_total:>7.1f}x [{dt_cpu_total / py_cpu_total:>5.1f}x]")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"\ncurate score+select, Spark local[1]: score {spark['score_s']:.1f}s + select {spark['select_s']:.1f}s"
          f" (plain read pass {spark['read_s']:.1f}s) = {n / spark_total:,.0f} docs/s per core; "
          f"{dt_total / spark_total:.1f}x datatrove's four filters; kept {spark['kept']:,} of {n:,}")
    print("\nkeep/drop agreement with datatrove")
    for name, row in agreement(spark["decisions"], dt["decisions"]).items():
        print(f"{name:<20} {100 * row['agree']:6.2f}%  keeps curate {row['curate_keeps']:,} / datatrove "
              f"{row['datatrove_keeps']:,}; only curate drops {row['only_curate_drops']:,}, "
              f"only datatrove drops {row['only_datatrove_drops']:,}")
    (args.out / "summary.json").write_text(json.dumps({
        "docs": n, "datatrove_seconds": dt["seconds"], "datatrove_cpu": dt["cpu"],
        "curate_python_seconds": py_seconds, "curate_python_cpu": py_cpu,
        "curate_spark": {k: v for k, v in spark.items() if k != "decisions"},
        "agreement": agreement(spark["decisions"], dt["decisions"])}, indent=2))


if __name__ == "__main__":
    main()
