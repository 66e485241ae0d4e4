"""Stage ``decontaminate``: remove (or cut) benchmark test-set n-grams from the corpus."""
from __future__ import annotations

import json

from curate.core import ID, REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage

NAME = "decontaminate"
REASON = "benchmark_contamination"
MODES = ("remove", "cut")
METHODS = ("auto", "broadcast", "join")
HASH, OWNER = "_ngram", "_owner"


@stage(NAME)
def decontaminate(df, ctx: StageContext, *, benchmarks: list, ngram: int = 13, min_words: int = 8,
                  min_matches: int = 1, mode: str = "remove", min_piece_chars: int = 200,
                  splits: list | None = None, method: str = "auto",
                  broadcast_max_ngrams: int = 5_000_000) -> StageOutput:
    """Flag documents sharing n-grams with benchmark test sets (GPT-3, Brown et al. 2020, app. C).

    ``benchmarks``: target files (see docs/benchmark_targeted.md); their ``splits`` (default
    test) are indexed as ``ngram``-grams of normalised words; examples shorter than ``ngram``
    but at least ``min_words`` words count as one whole-example gram. A document is flagged
    when it shares at least ``min_matches`` distinct n-grams with one benchmark. ``mode:
    remove`` rejects it; ``mode: cut`` cuts the matching spans and keeps pieces longer than
    ``min_piece_chars`` (rejected when none is). The index is broadcast when it holds at most
    ``broadcast_max_ngrams`` n-grams, else joined in Spark (``method`` forces one).
    Every row gets ``decontaminate`` {benchmarks, ngrams, flagged, chars_removed}.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from curate.targeted.benchmarks import TEST_SPLITS, load_benchmarks, parse_specs
    from curate.targeted.ngrams import build_index

    _check(mode, method, ngram, min_words, min_matches)
    examples = load_benchmarks(parse_specs(benchmarks, ctx.resolve), tuple(splits or TEST_SPLITS))
    index, skipped = build_index(((e.benchmark, e.text) for e in examples), ngram, min_words)
    use_join = method == "join" or (method == "auto" and len(index.hashes) > broadcast_max_ngrams)
    summary = {"ngram": ngram, "lengths": list(index.lengths), "method": "join" if use_join else "broadcast",
               "benchmarks": {name: {"examples": sum(e.benchmark == name for e in examples),
                                     "examples_too_short": skipped[name], "ngrams": count}
                              for name, count in index.ngrams_per_benchmark().items()}}
    ctx.artifact("ngram_index.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    options = {"min_matches": min_matches, "cut": mode == "cut", "min_piece_chars": min_piece_chars}
    marked = (_marked_by_join(df, ctx.spark, index, options) if use_join
              else _marked_by_broadcast(df, ctx.spark, index, options))
    flagged = F.col(f"{NAME}.flagged")
    if mode == "cut":
        emptied = flagged & (F.col("_cut_text") == "")
        marked = (marked.withColumn(TEXT, F.when(flagged & ~emptied, F.col("_cut_text")).otherwise(F.col(TEXT)))
                  .withColumn("_rejected", emptied))
    else:
        marked = marked.withColumn("_rejected", flagged)
    marked = marked.drop("_cut_text").persist(StorageLevel.MEMORY_AND_DISK)  # scanned once, read twice
    kept = marked.filter(~F.col("_rejected")).drop("_rejected")
    rejected = marked.filter(F.col("_rejected")).drop("_rejected").withColumn(REJECT_REASON, F.lit(REASON))
    return StageOutput(kept=kept, rejected=rejected, stats=lambda k, r: report(k, r, min_matches) | {"index": summary})


def _check(mode: str, method: str, ngram: int, min_words: int, min_matches: int) -> None:
    if mode not in MODES:
        raise CurateError(f"decontaminate: mode must be one of {', '.join(MODES)}, got '{mode}'")
    if method not in METHODS:
        raise CurateError(f"decontaminate: method must be one of {', '.join(METHODS)}, got '{method}'")
    if ngram < 1 or min_words < 1 or min_matches < 1:
        raise CurateError("decontaminate: ngram, min_words and min_matches must be >= 1")


def _result_schema(df):
    from pyspark.sql.types import ArrayType, BooleanType, IntegerType, StringType, StructField, StructType

    struct = StructType([StructField("benchmarks", ArrayType(StringType(), False), False),
                         StructField("ngrams", ArrayType(IntegerType(), False), False),
                         StructField("flagged", BooleanType(), False),
                         StructField("chars_removed", IntegerType(), False)])
    return StructType(df.schema.fields + [StructField(NAME, struct, False),
                                          StructField("_cut_text", StringType(), True)])


def _mark(text: str, overlap, options: dict) -> tuple[dict, str | None]:
    """The ``decontaminate`` struct of one document from its :class:`~curate.targeted.ngrams.Overlap`
    and, when cutting, its remaining text."""
    from curate.targeted.ngrams import cut_spans

    flagged = any(count >= options["min_matches"] for count in overlap.ngrams.values())
    remaining = None
    if flagged and options["cut"]:
        remaining = cut_spans(text, overlap.spans, options["min_piece_chars"])
    chars_removed = len(text) - len(remaining) if remaining is not None else 0
    return ({"benchmarks": list(overlap.ngrams), "ngrams": list(overlap.ngrams.values()),
             "flagged": flagged, "chars_removed": chars_removed}, remaining)


def _append_marks(batch, marks: list[tuple[dict, str | None]], drop: tuple[str, ...] = ()):
    import pyarrow as pa

    keep = [i for i, name in enumerate(batch.schema.names) if name not in drop]
    struct = pa.array([m for m, _ in marks], type=pa.struct([
        ("benchmarks", pa.list_(pa.string())), ("ngrams", pa.list_(pa.int32())),
        ("flagged", pa.bool_()), ("chars_removed", pa.int32())]))
    cut = pa.array([c for _, c in marks], type=pa.string())
    return pa.RecordBatch.from_arrays([batch.column(i) for i in keep] + [struct, cut],
                                      names=[batch.schema.names[i] for i in keep] + [NAME, "_cut_text"])


def _marked_by_broadcast(df, spark, index, options: dict):
    """Small index: ship it to every worker and scan each batch of documents against it."""
    from curate.targeted.ngrams import scan_many

    shared = spark.sparkContext.broadcast(index)

    def run(batches):
        for batch in batches:
            texts = [t or "" for t in batch.column(TEXT).to_pylist()]
            overlaps = scan_many(texts, shared.value)
            yield _append_marks(batch, [_mark(t, o, options) for t, o in zip(texts, overlaps)])

    return df.mapInArrow(run, _result_schema(df))


def _marked_by_join(df, spark, index, options: dict):
    """Large index: join the documents' n-gram hashes with the index in Spark, then scan each
    document against only the index entries it matched."""
    import numpy as np
    import pyarrow as pa
    from pyspark.sql import functions as F

    from curate.targeted.ngrams import document_grams, scan

    lengths = index.lengths
    entries = spark.createDataFrame(
        pa.table({HASH: index.hashes.view(np.int64), OWNER: index.owners}).to_pandas())

    def doc_grams(batches):
        for batch in batches:
            ids, grams = [], []
            for doc_id, text in zip(batch.column(ID).to_pylist(), batch.column(TEXT).to_pylist()):
                by_length = document_grams(text or "", lengths)
                unique = np.unique(np.concatenate([g for _, g in by_length]))
                ids.extend([doc_id] * len(unique))
                grams.append(unique.view(np.int64))
            yield pa.RecordBatch.from_arrays(
                [pa.array(ids, pa.string()), pa.array(np.concatenate(grams) if grams else [], pa.int64())],
                names=[ID, HASH])

    hits = (df.select(ID, TEXT).mapInArrow(doc_grams, f"{ID} string, {HASH} long")
            .join(entries, HASH).groupBy(ID)
            .agg(F.collect_list(F.struct(HASH, OWNER)).alias("_hits")))
    joined = df.join(hits, ID, "left").select(*df.columns, "_hits")
    meta = spark.sparkContext.broadcast(index.restricted(np.zeros(0, np.uint64), np.zeros(0, np.int32)))

    def run(batches):
        for batch in batches:
            marks = []
            for text, found in zip(batch.column(TEXT).to_pylist(), batch.column("_hits").to_pylist()):
                found = found or []
                local = meta.value.restricted(np.array([h[HASH] for h in found], np.int64).view(np.uint64),
                                              np.array([h[OWNER] for h in found], np.int32))
                marks.append(_mark(text or "", scan(text or "", local), options))
            yield _append_marks(batch, marks, drop=("_hits",))

    return joined.mapInArrow(run, _result_schema(df))


def report(kept, rejected, min_matches: int = 1) -> dict:
    """Per benchmark: documents flagged by it and the distinct n-grams they matched."""
    from pyspark.sql import functions as F

    rows = kept.select(NAME) if rejected is None else kept.select(NAME).unionByName(rejected.select(NAME))
    per = (rows.filter(F.col(f"{NAME}.flagged"))
           .select(F.explode(F.arrays_zip(f"{NAME}.benchmarks", f"{NAME}.ngrams")).alias("m"))
           .filter(F.col("m.ngrams") >= min_matches)
           .groupBy(F.col("m.benchmarks").alias("benchmark"))
           .agg(F.count("*").alias("docs_flagged"), F.sum("m.ngrams").alias("ngrams_matched"))
           .orderBy("benchmark").collect())
    return {"per_benchmark": {r["benchmark"]: {"docs_flagged": int(r["docs_flagged"]),
                                               "ngrams_matched": int(r["ngrams_matched"])} for r in per}}
