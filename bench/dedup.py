"""Fuzzy-dedup benchmark: curate vs datasketch, rensa and datatrove, side by side in one run.

    .venv/bin/python bench/dedup.py --sources 25000 --copies 2 --copy-fraction 0.6

Builds >= 50k documents (real text from ../shared/data + edited near-copies) into
bench/_data/dedup_corpus/ (4 JSONL shards), computes the ground truth (all pairs with exact
5-word-shingle Jaccard >= threshold, by prefix filtering, closed by union-find) and reports:
- signature throughput per core (one process, one thread, JVM and JIT compile excluded):
  curate's datasketch-compatible path (with and without its own shingling) vs
  ``datasketch.MinHash.update_batch`` (pre-shingled bytes) vs ``rensa.RMinHash``
  (bench/.venvs/rensa, pre-shingled strings);
- end-to-end docs/s, read -> kept written: ``minhash_dedup`` on Spark local[2] vs datatrove's
  4-stage MinHash pipeline with 2 workers (bench/.venvs/datatrove, bench/dedup_datatrove.py);
- precision / recall / F1 of duplicate pairs (clusterings compared pairwise) and of the
  removed-document set, for curate, datasketch ``MinHashLSH`` (its default banding,
  union-find over its candidates) and datatrove.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter, defaultdict
from math import comb
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


import dedup_corpus as corpus  # noqa: E402

from curate.dedup import minhash as mh  # noqa: E402

VENVS = HERE / ".venvs"
RENSA_SCRIPT = r"""
import json, sys, time
from rensa import RMinHash
shingles = json.load(open(sys.argv[1]))
t = time.perf_counter()
for doc in shingles:
    m = RMinHash(num_perm=128, seed=1); m.update(doc); m.digest()
print(time.perf_counter() - t)
"""


# --- scoring -------------------------------------------------------------------------------

def pair_scores(pred: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    """Pairwise precision/recall/F1 of two clusterings (node -> cluster) via contingency counts."""
    nodes = set(pred) | set(truth)
    p = {n: pred.get(n, "self:" + n) for n in nodes}
    t = {n: truth.get(n, "self:" + n) for n in nodes}
    both = sum(comb(c, 2) for c in Counter((p[n], t[n]) for n in nodes).values())
    pp = sum(comb(c, 2) for c in Counter(p.values()).values())
    tp = sum(comb(c, 2) for c in Counter(t.values()).values())
    return _prf(both, pp, tp)


def removed_scores(removed: set[str], truth: dict[str, str]) -> dict[str, float]:
    """Survivor-agnostic: a component of k true duplicates should lose exactly k - 1 documents.

    A removal is correct when its document has a true duplicate, up to k - 1 per component.
    """
    sizes = Counter(truth.values())
    per_component = Counter(truth[r] for r in removed if r in truth)
    hit = sum(min(n, sizes[c] - 1) for c, n in per_component.items())
    return _prf(hit, len(removed), sum(k - 1 for k in sizes.values()))


def _prf(hit: int, predicted: int, actual: int) -> dict[str, float]:
    precision = hit / predicted if predicted else 1.0
    recall = hit / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def smallest_id_removals(clusters: dict[str, str]) -> set[str]:
    members = defaultdict(list)
    for n, c in clusters.items():
        members[c].append(n)
    return {n for group in members.values() for n in sorted(group)[1:]}


# --- ground truth and the peers --------------------------------------------------------------

def ground_truth(docs, threshold):
    sh = mh.shingle([d["text"] for d in docs])
    hashes = mh.hash_shingles(sh).tolist()
    bounds = sh.doc_start.tolist() + [len(hashes)]
    sets = {d["id"]: set(hashes[bounds[i]:bounds[i + 1]]) for i, d in enumerate(docs)}
    uf = corpus.UnionFind()
    pairs = corpus.exact_pairs(sets, threshold)
    for a, b, _ in pairs:
        uf.union(a, b)
    return uf.components(), len(pairs), sh


def timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def python_shingles(text: str, ngram: int = 5) -> list[bytes]:
    """What a datasketch user writes: the same normalisation, word 5-grams as bytes."""
    words = mh.normalize(text).split()
    return [" ".join(words[i:i + ngram]).encode() for i in range(max(1, len(words) - ngram + 1))]


def bench_signatures(docs, sh, sample: int) -> dict[str, float]:
    """docs/s in this one process (one core); every contender sees the same documents."""
    from datasketch import MinHash

    texts = [d["text"] for d in docs[:sample]]
    mh.batch_signatures(texts[:50])  # JIT compile (cached on disk after the first run)
    shingles = [sh.as_bytes(i) for i in range(sample)]
    pre = mh.shingle(texts)
    out = {"curate (text -> signature)": sample / timed(mh.batch_signatures, texts)}
    out["curate (pre-shingled)"] = sample / timed(
        lambda: mh.signatures(mh.hash_shingles(pre), pre.doc, sample))
    out["datasketch update_batch (pre-shingled)"] = sample / timed(
        lambda: [MinHash(num_perm=128, seed=1).update_batch(s) for s in shingles])
    out["datasketch (text -> signature, Python shingling)"] = sample / timed(
        lambda: [MinHash(num_perm=128, seed=1).update_batch(python_shingles(t)) for t in texts])
    rensa = VENVS / "rensa" / "bin" / "python"
    if rensa.exists():
        path = HERE / "_data" / "rensa_shingles.json"
        path.write_text(json.dumps([[g.decode() for g in s] for s in shingles]))
        secs = float(subprocess.run([str(rensa), "-c", RENSA_SCRIPT, str(path)], check=True,
                                    capture_output=True, text=True).stdout.strip())
        out["rensa RMinHash (pre-shingled)"] = sample / secs
    return {k: round(v) for k, v in out.items()}


def datasketch_lsh(docs, threshold):
    """datasketch ``MinHashLSH`` at its default banding; union-find over query results."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    sigs = mh.batch_signatures([d["text"] for d in docs])  # == datasketch's own signatures
    uf = corpus.UnionFind()
    t = time.perf_counter()
    for i, d in enumerate(docs):
        m = MinHash(num_perm=128, seed=1, hashvalues=sigs[i], scheme="affine32")
        for other in lsh.query(m):
            uf.union(d["id"], other)
        lsh.insert(d["id"], m)
    clusters = {n: c for n, c in uf.components().items()}
    return clusters, time.perf_counter() - t, lsh.b, lsh.r


def curate_end_to_end(path: Path, out: Path, threshold: float):
    from curate.core import StageContext
    from curate.dedup.minhash_dedup import minhash_dedup
    from curate.engine.spark import get_spark

    spark = get_spark("local[2]", {"spark.sql.shuffle.partitions": "8"})
    spark.range(1).count()  # JVM start-up excluded
    t = time.perf_counter()
    df = spark.read.json(str(path), schema="id string, text string")
    result = minhash_dedup(df, StageContext(spark, out), threshold=threshold)
    result.kept.write.mode("overwrite").parquet(str(out / "kept"))
    result.rejected.select("id", "dedup_cluster").write.mode("overwrite").parquet(str(out / "rejected"))
    seconds = time.perf_counter() - t
    rejected = spark.read.parquet(str(out / "rejected")).collect()  # benchmark scoring only
    clusters = {r["id"]: r["dedup_cluster"] for r in rejected}
    clusters.update({c: c for c in clusters.values()})
    return clusters, {r["id"] for r in rejected}, seconds, result.stats(result.kept, result.rejected)


def datatrove_end_to_end(path: Path, work: Path):
    python = VENVS / "datatrove" / "bin" / "python"
    if not python.exists():
        return None
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    proc = subprocess.run([str(python), str(HERE / "dedup_datatrove.py"), str(path), str(work), "--workers", "2"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_shards(docs, path: Path, shards: int = 4) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.jsonl"):
        f.unlink()
    for k in range(shards):
        (path / f"part-{k}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[k::shards]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--sources", type=int, default=25000)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--copy-fraction", type=float, default=0.6)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--signature-sample", type=int, default=5000)
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--signatures-only", action="store_true", help="only the per-core signature comparison")
    args = ap.parse_args()
    work = HERE / "_data"
    docs = corpus.build(Path(args.data), args.sources, args.copies, args.copy_fraction)
    path = work / "dedup_corpus"
    write_shards(docs, path)
    t = time.perf_counter()
    if args.signatures_only:
        docs = docs[:args.signature_sample]
    truth, n_pairs, sh = ground_truth(docs, args.threshold)
    report = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                       cwd=HERE).stdout.strip(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"load {os.getloadavg()[0]:.1f}",
              "docs": len(docs), "mean_chars": round(sum(len(d["text"]) for d in docs) / len(docs)),
              "truth_pairs": n_pairs, "truth_components": len(set(truth.values())),
              "truth_removable": sum(k - 1 for k in Counter(truth.values()).values()),
              "truth_seconds": round(time.perf_counter() - t)}
    print(json.dumps(report), flush=True)
    report["signatures_docs_per_s_per_core"] = sig = bench_signatures(
        docs, sh, min(args.signature_sample, len(docs)))
    base = sig["datasketch update_batch (pre-shingled)"]
    report["signature_speedup_vs_datasketch_pre_shingled"] = {k: round(v / base, 1) for k, v in sig.items()}
    print(json.dumps(sig), flush=True)
    if args.signatures_only:
        print(json.dumps(report, indent=2))
        return
    clusters, removed, seconds, stats = curate_end_to_end(path, work / "curate_out", args.threshold)
    report["curate"] = {"seconds": round(seconds, 1), "docs_per_s_per_core": round(len(docs) / seconds / 2),
                        "pairs": pair_scores(clusters, truth), "removed": removed_scores(removed, truth),
                        "stats": stats}
    print(json.dumps(report["curate"]), flush=True)
    ds, ds_seconds, b, r = datasketch_lsh(docs, args.threshold)
    report["datasketch MinHashLSH"] = {"bands x rows": f"{b}x{r}", "lsh_seconds": round(ds_seconds, 1),
                                       "pairs": pair_scores(ds, truth),
                                       "removed": removed_scores(smallest_id_removals(ds), truth)}
    if not args.skip_datatrove:
        dt = datatrove_end_to_end(path, work / "datatrove_out")
        if dt is not None:
            report["datatrove"] = {"seconds": round(dt["seconds"], 1),
                                   "docs_per_s_per_core": round(len(docs) / dt["seconds"] / 2),
                                   "pairs": pair_scores(dt["clusters"], truth),
                                   "removed": removed_scores(set(dt["removed"]), truth)}
            report["end_to_end_speedup_vs_datatrove"] = round(dt["seconds"] / seconds, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
