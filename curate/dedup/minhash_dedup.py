"""Fuzzy dedup: MinHash-LSH candidates, exact-Jaccard verification, Spark connected components.

``minhash_dedup`` removes near-duplicates inside a corpus (Broder 1997; banding as in
*Mining of Massive Datasets*, ch. 3; components by large-star/small-star, Kiveris et al.
2014). ``dedup_against`` removes documents of a new drop that near-duplicate an already
kept corpus or a saved MinHash index. Both share the signature code in ``curate.dedup.minhash``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from curate.core import ID, REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage
from curate.dedup import minhash as mh
from curate.dedup.components import NODE, ROOT, connected_components
from curate.io import fs
from curate.io.shards import artifact_entry, load_manifest, read_artifact_table, read_shards, read_stage

REASON = "near_duplicate"
DUPLICATE_OF, CLUSTER = "duplicate_of", "dedup_cluster"
INDEX_META = "_minhash_index.json"
INDEX_NAME = "minhash_index"
INDEX_SCHEMA = "id string, signature binary, shingles array<bigint>"
SKETCH_SCHEMA = "id string, signature binary"
SET_SCHEMA = "id string, shingles array<bigint>"
BAND_SCHEMA = "id string, band int, key bigint"


@dataclass(frozen=True)
class SketchParams:
    """Everything that decides a signature: equal params => comparable signatures."""

    ngram: int = 5
    shingle: str = "word"
    num_perm: int = 128
    seed: int = 1

    def check(self) -> "SketchParams":
        if self.shingle not in mh.SHINGLE_UNITS:
            raise CurateError(f"shingle must be one of {', '.join(mh.SHINGLE_UNITS)}, got '{self.shingle}'")
        if self.ngram < 1 or self.num_perm < 1:
            raise CurateError(f"ngram and num_perm must be >= 1, got {self.ngram} and {self.num_perm}")
        return self


# --- per-partition Arrow functions (run on executors) -----------------------------------

def _sketch_batches(batches, p: SketchParams):
    """(id, text) batches -> (id, signature) with the signature as little-endian uint32 bytes."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        texts = batch.column(TEXT).to_pylist()
        sig = mh.batch_signatures(texts, p.ngram, p.shingle, p.num_perm, p.seed)
        offsets = pa.py_buffer(np.arange(0, sig.size * 4 + 1, p.num_perm * 4, dtype=np.int32))
        data = pa.py_buffer(sig.astype("<u4").tobytes())
        sigs = pa.Array.from_buffers(pa.binary(), len(texts), [None, offsets, data])
        yield pa.RecordBatch.from_arrays([batch.column(ID), sigs], names=[ID, "signature"])


def _band_batches(batches, num_perm: int, bands: int, rows: int):
    """(id, signature) batches -> one (id, band, key) row per band."""
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        col = batch.column("signature")
        start = int(np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset])
        sig = np.frombuffer(col.buffers()[2], dtype="<u4", count=n * num_perm, offset=start)
        sig = sig.reshape(n, num_perm)
        keys = mh.band_hashes(sig, bands, rows)
        ids = pa.array(np.repeat(np.arange(n), bands)).cast(pa.int64())
        yield pa.RecordBatch.from_arrays(
            [batch.column(ID).take(ids), pa.array(np.tile(np.arange(bands, dtype=np.int32), n)),
             pa.array(keys.reshape(-1))], names=[ID, "band", "key"])


def _set_batches(batches, p: SketchParams):
    """(id, text) batches -> (id, sorted distinct 64-bit shingle hashes) for verification."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        sh = mh.shingle(batch.column(TEXT).to_pylist(), p.ngram, p.shingle)
        offsets, values = mh.shingle_sets(sh, mh.hash_shingles(sh))
        sets = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.view(np.int64)))
        yield pa.RecordBatch.from_arrays([batch.column(ID), sets], names=[ID, "shingles"])


# --- DataFrame building blocks ------------------------------------------------------------

def sketches(df: DataFrame, p: SketchParams) -> DataFrame:
    """``(id, signature)``: datasketch-compatible uint32 signatures as little-endian bytes."""
    return df.select(ID, TEXT).mapInArrow(partial(_sketch_batches, p=p), SKETCH_SCHEMA)


def band_rows(sk: DataFrame, num_perm: int, bands: int, rows: int) -> DataFrame:
    return sk.mapInArrow(partial(_band_batches, num_perm=num_perm, bands=bands, rows=rows), BAND_SCHEMA)


def shingle_sets(df: DataFrame, p: SketchParams) -> DataFrame:
    return df.select(ID, TEXT).mapInArrow(partial(_set_batches, p=p), SET_SCHEMA)


def lsh_params(threshold: float, num_perm: int, bands: int | None, rows: int | None,
               fp_weight: float = 0.05) -> tuple[int, int]:
    """Given ``bands``/``rows``, or the pair minimising ``fp_weight``·FP + (1 - fp_weight)·FN.

    datasketch weighs both 0.5 (recall ~0.4 at s = threshold for 128 perms); with exact
    verification false positives only cost compute, so the default weighs recall 19:1.
    """
    if not 0.0 <= fp_weight <= 1.0:
        raise CurateError(f"fp_weight must be in [0, 1], got {fp_weight}")
    if (bands is None) != (rows is None):
        raise CurateError("give both bands and rows, or neither (they are then chosen from threshold)")
    if bands is None:
        return mh.optimal_bands(threshold, num_perm, fp_weight, 1.0 - fp_weight)
    if bands < 1 or rows < 1 or bands * rows > num_perm:
        raise CurateError(f"need bands >= 1, rows >= 1 and bands x rows <= num_perm ({num_perm}), "
                          f"got {bands} x {rows}")
    return bands, rows


def candidate_pairs(bands_df: DataFrame, max_bucket: int) -> DataFrame:
    """Distinct ``(a, b)`` with a < b sharing a band bucket (one groupBy, one distinct).

    Buckets of up to ``max_bucket`` members give all their pairs; larger buckets connect
    each member to the bucket's smallest id only, so a giant bucket costs O(n), not O(n^2).
    """
    members = F.array_sort(F.collect_set(ID))
    buckets = bands_df.groupBy("band", "key").agg(members.alias("m")).where(F.size("m") > 1)
    pair = lambda a, b: F.struct(a.alias("a"), b.alias("b"))  # noqa: E731
    all_pairs = F.flatten(F.transform("m", lambda x, i: F.transform(
        F.slice("m", i + 2, F.size("m")), lambda y: pair(x, y))))
    star = F.transform(F.slice("m", 2, F.size("m")), lambda y: pair(F.element_at("m", 1), y))
    chosen = F.when(F.size("m") <= max_bucket, all_pairs).otherwise(star)
    return buckets.select(F.explode(chosen).alias("p")).select("p.a", "p.b").distinct()


def with_jaccard(pairs: DataFrame, left_sets: DataFrame, right_sets: DataFrame,
                 left: str = "a", right: str = "b") -> DataFrame:
    """Add the exact Jaccard similarity of each pair's shingle sets (arrays of distinct hashes, as
    :func:`shingle_sets` makes them, so the union's size follows from the intersection's)."""
    ls = left_sets.select(F.col(ID).alias(left), F.col("shingles").alias("ls"))
    rs = right_sets.select(F.col(ID).alias(right), F.col("shingles").alias("rs"))
    inter = F.size(F.array_intersect("ls", "rs"))
    union = F.size("ls") + F.size("rs") - inter
    return (pairs.join(ls, left).join(rs, right)
            .select(left, right, (inter / union).alias("jaccard")))


BROADCAST_IDS = 1_000_000  # id lists up to this many rows are broadcast to the joins that use them


def _by_id(ids: DataFrame) -> DataFrame:
    """``ids`` hinted for a broadcast join when it has at most :data:`BROADCAST_IDS` rows (it is
    checkpointed, so counting is cheap): the documents' text then never crosses a shuffle."""
    return F.broadcast(ids) if ids.count() <= BROADCAST_IDS else ids


def _docs_in(df: DataFrame, ids: DataFrame) -> DataFrame:
    return df.join(_by_id(ids.select(F.col(ID)).distinct().localCheckpoint()), ID, "left_semi")


def _check_columns(df: DataFrame, quality: str | None = None) -> None:
    missing = [c for c in (ID, TEXT) if c not in df.columns]
    if missing:
        raise CurateError(f"minhash dedup needs columns {ID} and {TEXT}; missing: {', '.join(missing)}")
    if quality is not None:
        try:
            _ = df.select(F.col(quality)).schema  # resolving the plan checks the column exists
        except Exception as exc:  # AnalysisException: name the column, not the plan
            raise CurateError(f"quality column '{quality}' not found; columns: {', '.join(df.columns)}") from exc


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise CurateError(f"threshold must be in (0, 1), got {threshold}")


def _survivors(members: DataFrame, df: DataFrame, quality: str | None) -> DataFrame:
    """``(id, duplicate_of, dedup_cluster)`` for every member that is not its component's survivor."""
    if quality is None:
        survivor = F.col(ROOT)
    else:
        scored = members.join(df.select(F.col(ID).alias(NODE), F.col(quality).alias("_q")), NODE)
        order = Window.partitionBy(ROOT).orderBy(F.col("_q").desc_nulls_last(), F.col(NODE))
        members = scored.withColumn("_survivor", F.first(NODE).over(
            order.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)))
        survivor = F.col("_survivor")
    return (members.where(F.col(NODE) != survivor)
            .select(F.col(NODE).alias(ID), survivor.alias(DUPLICATE_OF), F.col(ROOT).alias(CLUSTER)))


def _split(df: DataFrame, removed: DataFrame) -> tuple[DataFrame, DataFrame]:
    removed = _by_id(removed)
    kept = df.join(removed.select(ID), ID, "left_anti")
    rejected = df.join(removed, ID).withColumn(REJECT_REASON, F.lit(REASON))
    return kept, rejected


def with_cluster_size(kept: DataFrame, removed: DataFrame, column: str) -> DataFrame:
    """``kept`` plus ``column``: 1 + the number of removed documents whose survivor it is."""
    sizes = removed.groupBy(F.col(DUPLICATE_OF).alias(ID)).agg((F.count(F.lit(1)) + 1).alias(column))
    return kept.join(sizes, ID, "left").withColumn(column, F.coalesce(F.col(column), F.lit(1)).cast("long"))


def size_histogram(components: DataFrame) -> tuple[dict[str, int], int, int]:
    """``(histogram, components, documents)``; the histogram counts components per size
    bucket ``2``, ``3-4``, ``5-8``, … (one Spark job; a handful of rows reach the driver)."""
    sizes = components.groupBy(ROOT).count()
    upper = F.pow(F.lit(2), F.ceil(F.log2("count"))).cast("long")
    label = F.when(F.col("count") == 2, F.lit("2")).otherwise(
        F.concat((upper / 2 + 1).cast("long").cast("string"), F.lit("-"), upper.cast("string")))
    rows = (sizes.groupBy(label.alias("bucket"), upper.alias("upper"))
            .agg(F.count("*").alias("components"), F.sum("count").alias("docs")).orderBy("upper").collect())
    histogram = {r["bucket"]: int(r["components"]) for r in rows}
    return histogram, sum(histogram.values()), sum(int(r["docs"]) for r in rows)


def _removed_stats(base: dict, kept: DataFrame, rejected: DataFrame) -> dict:
    agg = rejected.agg(F.count("*").alias("docs"), F.sum(F.length(TEXT)).alias("chars")).first()
    return {**base, "removed_docs": int(agg["docs"]), "removed_chars": int(agg["chars"] or 0)}


def write_index(ctx: StageContext, docs: DataFrame, p: SketchParams, name: str = INDEX_NAME) -> Path:
    """Save ``(id, signature, shingles)`` of ``docs`` for a later ``dedup_against``."""
    ctx.artifact_table(name, sketches(docs, p).join(shingle_sets(docs, p), ID))
    path = ctx.artifact(f"{name}/{INDEX_META}")
    path.write_text(json.dumps(asdict(p), sort_keys=True))
    return path.parent


# --- stages ------------------------------------------------------------------------------

@stage("minhash_dedup")
def minhash_dedup(df: DataFrame, ctx: StageContext, *, ngram: int = 5, shingle: str = "word",
                  num_perm: int = 128, threshold: float = 0.8, bands: int | None = None,
                  rows: int | None = None, seed: int = 1, verify: bool = True,
                  quality: str | None = None, max_bucket: int = 64, fp_weight: float = 0.05,
                  save_index: bool = False, cluster_size_column: str | None = None) -> StageOutput:
    """Remove near-duplicates: MinHash-LSH (Broder 1997) + exact Jaccard + connected components.

    Signatures equal datasketch's ``MinHash(num_perm, seed)`` on the same shingles. With
    ``verify`` candidate pairs below ``threshold`` (exact Jaccard of shingle sets) are
    dropped; ``bands``/``rows`` default to the recall-weighted optimum (``fp_weight``).
    One survivor per component: the smallest id, or the highest ``quality``
    (ties by id). ``save_index`` writes the kept documents' signatures for ``dedup_against``.
    ``cluster_size_column`` adds to each survivor the size of its duplicate cluster (1 when it had
    none), so ``mix`` can rehydrate (up-weight by cluster size, as FineWeb2's ``minhash_cluster_size``).
    """
    _check_columns(df, quality)
    if cluster_size_column is not None and cluster_size_column in df.columns:
        raise CurateError(f"cluster_size_column '{cluster_size_column}' already exists; choose another name")
    _check_threshold(threshold)
    p = SketchParams(ngram, shingle, num_perm, seed).check()
    bands, rows = lsh_params(threshold, num_perm, bands, rows, fp_weight)
    keyed = band_rows(sketches(df, p), num_perm, bands, rows).localCheckpoint(eager=False)
    candidates = candidate_pairs(keyed, max_bucket).localCheckpoint(eager=False)
    edges = candidates
    if verify:
        sets = shingle_sets(_docs_in(df, candidates.select(F.col("a").alias(ID)).unionByName(
            candidates.select(F.col("b").alias(ID)))), p).localCheckpoint()  # both sides of each pair read it
        edges = (with_jaccard(candidates, sets, sets).where(F.col("jaccard") >= threshold)
                 .select("a", "b").localCheckpoint(eager=False))
    components = connected_components(edges, "a", "b").localCheckpoint(eager=False)
    removed = _survivors(components, df, quality).localCheckpoint(eager=False)
    kept, rejected = _split(df, removed)
    if save_index:
        write_index(ctx, kept, p)
    if cluster_size_column is not None:
        kept = with_cluster_size(kept, removed, cluster_size_column)
    base = {"bands": bands, "rows": rows}
    return StageOutput(kept=kept, rejected=rejected,
                       stats=partial(_dedup_stats, base, candidates, edges if verify else None, components))


def _pair_counts(candidates: DataFrame, verified: DataFrame | None) -> dict:
    """Candidate and verified pair counts in one Spark job."""
    flags = candidates.select(F.lit(1).alias("c"), F.lit(0).alias("v"))
    if verified is not None:
        flags = flags.unionByName(verified.select(F.lit(0).alias("c"), F.lit(1).alias("v")))
    row = flags.agg(F.count(F.when(F.col("c") == 1, 1)).alias("c"),
                    F.count(F.when(F.col("v") == 1, 1)).alias("v")).first()
    n_candidates, n_verified = int(row["c"]), int(row["v"]) if verified is not None else int(row["c"])
    return {"candidate_pairs": n_candidates, "verified_pairs": n_verified,
            "false_positives_removed": n_candidates - n_verified if verified is not None else None}


def _dedup_stats(base: dict, candidates: DataFrame, verified: DataFrame | None, components: DataFrame,
                 kept: DataFrame, rejected: DataFrame) -> dict:
    """Stats computed after the outputs are written (from checkpointed frames: cheap)."""
    histogram, n_components, n_docs = size_histogram(components)
    return {**_removed_stats(base, kept, rejected), **_pair_counts(candidates, verified),
            "components": n_components, "docs_in_components": n_docs, "component_sizes": histogram}


def _reference_sketches(ctx: StageContext, reference: str, p: SketchParams) -> tuple[DataFrame, DataFrame | None]:
    """``(sketches, docs)`` of the reference (a path or a URI): a saved index (docs None) or a
    corpus to sketch. An index is its directory, or the committed stage that saved it."""
    path = str(ctx.resolve(reference))
    if not fs.exists(path):
        raise CurateError(f"dedup_against: reference '{path}' does not exist")
    index = _index_location(path)
    if index is not None:
        saved = SketchParams(**json.loads(fs.read_bytes(fs.join(index, INDEX_META))))
        if saved != p:
            raise CurateError(f"dedup_against: index {index} was built with {asdict(saved)}, "
                              f"this stage uses {asdict(p)}; use the same ngram/shingle/num_perm/seed")
        if artifact_entry(path, INDEX_NAME) is not None:  # a committed stage: its listed, verified shards
            return read_artifact_table(ctx.spark, path, INDEX_NAME).select(ID, "signature", "shingles"), None
        files = [f for f in fs.list_files(index)[1] if f.startswith("part-") and f.endswith(".parquet")]
        if not files:
            raise CurateError(f"dedup_against: index {index} has no part-*.parquet shards")
        return _read_files(ctx.spark, index, files, "parquet", INDEX_SCHEMA), None
    if load_manifest(path) is not None:  # a committed stage: its kept documents
        docs = read_stage(ctx.spark, path).select(ID, TEXT)
    else:
        docs = _read_corpus(ctx.spark, path).select(ID, TEXT)
    return sketches(docs, p), docs


def _index_location(path: str) -> str | None:
    """The index directory ``path`` names: itself, or the ``minhash_index`` artifact of a committed
    ``minhash_dedup`` stage (under its attempt prefix on object stores); None for a corpus."""
    if fs.isfile(fs.join(path, INDEX_META)):
        return path
    manifest = load_manifest(path)
    if not manifest or INDEX_NAME not in manifest.get("artifacts", {}):
        return None
    root = manifest["outputs"]["data"].get("root", "")
    index = fs.join(path, root, "artifacts", INDEX_NAME) if root else fs.join(path, "artifacts", INDEX_NAME)
    return index if fs.isfile(fs.join(index, INDEX_META)) else None


def _read_corpus(spark, path: str) -> DataFrame:
    """A Parquet or JSONL corpus (file, directory or glob): Spark's readers for local paths, task-side
    pyarrow reads for URIs (Spark here has no object-store connector)."""
    if not fs.is_remote(path):
        local = Path(fs.strip_file_scheme(path))
        return spark.read.json(str(local)) if _looks_jsonl(local) else spark.read.parquet(str(local))
    root, rels = fs.list_files(path, keep=lambda r: not fs.name(r).startswith(("_", ".")))
    parquet = [r for r in rels if r.endswith(".parquet")]
    jsonl = [r for r in rels if r.endswith((".jsonl", ".json"))]
    if rels and len(parquet) == len(rels):
        return _read_files(spark, root, parquet, "parquet", f"{ID} string, {TEXT} string")
    if rels and len(jsonl) == len(rels):
        return _read_files(spark, root, jsonl, "jsonl", f"{ID} string, {TEXT} string")
    raise CurateError(f"dedup_against: remote reference {path} must hold only .parquet or only uncompressed "
                      f".jsonl files (found {', '.join(rels[:5]) or 'none'})")


def _read_files(spark, root: str, rels: list[str], fmt: str, schema: str) -> DataFrame:
    """Files under ``root`` (a path or a URI) through curate's shard reader, as a DataFrame of ``schema``."""
    struct = spark.createDataFrame([], schema).schema
    entry = {"format": fmt, "schema": struct.jsonValue(), "shards": [{"file": r} for r in rels]}
    return read_shards(spark, root, entry)


def _looks_jsonl(path: Path) -> bool:
    names = [path.name] if path.is_file() else [f.name for f in path.iterdir()]
    return any(n.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")) for n in names)


@stage("dedup_against")
def dedup_against(df: DataFrame, ctx: StageContext, *, reference: str, ngram: int = 5,
                  shingle: str = "word", num_perm: int = 128, threshold: float = 0.8,
                  bands: int | None = None, rows: int | None = None, seed: int = 1,
                  verify: bool = True, max_bucket: int = 64, fp_weight: float = 0.05) -> StageOutput:
    """Remove documents that near-duplicate an already kept corpus or a saved MinHash index.

    ``reference`` (a path or a URI) is a ``minhash_dedup`` index (``save_index: true``: its
    ``artifacts/minhash_index`` directory or the committed stage directory itself), a committed
    stage (its kept documents) or a corpus of ``id``/``text`` (Parquet or JSONL). Incremental
    dedup of a new crawl drop; chain ``minhash_dedup`` for duplicates inside the drop.
    ``duplicate_of`` is the smallest matching reference id. Per bucket at most ``max_bucket``
    reference ids are compared.
    """
    _check_columns(df)
    _check_threshold(threshold)
    p = SketchParams(ngram, shingle, num_perm, seed).check()
    bands, rows = lsh_params(threshold, num_perm, bands, rows, fp_weight)
    ref_sk, ref_docs = _reference_sketches(ctx, reference, p)
    ref_keys = band_rows(ref_sk.select(ID, "signature"), num_perm, bands, rows)
    rank = Window.partitionBy("band", "key").orderBy(ID)
    ref_keys = ref_keys.withColumn("_r", F.row_number().over(rank)).where(F.col("_r") <= max_bucket)
    new_keys = band_rows(sketches(df, p), num_perm, bands, rows)
    pairs = (new_keys.join(ref_keys.select("band", "key", F.col(ID).alias("ref")), ["band", "key"])
             .select(F.col(ID).alias("new"), "ref").distinct().localCheckpoint(eager=False))
    matches = pairs
    if verify:
        new_sets = shingle_sets(_docs_in(df, pairs.select(F.col("new").alias(ID))), p)
        ref_ids = pairs.select(F.col("ref").alias(ID))
        ref_sets = (shingle_sets(_docs_in(ref_docs, ref_ids), p) if ref_docs is not None
                    else ref_sk.join(ref_ids.distinct(), ID, "left_semi").select(ID, "shingles"))
        scored = with_jaccard(pairs, new_sets, ref_sets, "new", "ref")
        matches = scored.where(F.col("jaccard") >= threshold).select("new", "ref").localCheckpoint(eager=False)
    removed = (matches.groupBy("new").agg(F.min("ref").alias(DUPLICATE_OF))
               .select(F.col("new").alias(ID), DUPLICATE_OF, F.col(DUPLICATE_OF).alias(CLUSTER))
               .localCheckpoint(eager=False))
    kept, rejected = _split(df, removed)
    return StageOutput(kept=kept, rejected=rejected, stats=partial(
        _against_stats, {"bands": bands, "rows": rows}, pairs, matches if verify else None))


def _against_stats(base: dict, pairs: DataFrame, matches: DataFrame | None,
                   kept: DataFrame, rejected: DataFrame) -> dict:
    return {**_removed_stats(base, kept, rejected), **_pair_counts(pairs, matches)}
