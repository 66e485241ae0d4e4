"""datatrove's 4-stage MinHash pipeline on one JSONL file (run by bench/dedup.py in bench/.venvs/datatrove).

    bench/.venvs/datatrove/bin/python bench/dedup_datatrove.py CORPUS_DIR WORKDIR --workers 2

Signatures -> buckets -> clusters -> filter, as in datatrove's own example, with
``MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8)``.
Prints one JSON line: wall seconds, and ``clusters`` ({id: cluster}) of every document
that datatrove put in a cluster (kept and removed) and the ``removed`` ids, for scoring.
CORPUS_DIR holds ``*.jsonl`` shards (datatrove splits work by file).
"""
from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path


def main() -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("work")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    corpus, work = Path(args.corpus), Path(args.work)
    config = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8)
    tasks = args.workers

    def reader():
        return JsonlReader(str(corpus), glob_pattern="*.jsonl", id_key="id", text_key="text")

    stages = [
        ([reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)], tasks),
        ([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                              config=config)], config.num_buckets),
        ([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"),
                              config=config, save_cluster_id=True)], 1),
        ([reader(), MinhashDedupFilter(input_folder=str(work / "remove"), load_cluster_ids=True,
                                       exclusion_writer=JsonlWriter(str(work / "removed"))),
          JsonlWriter(str(work / "kept"))], tasks),
    ]
    start = time.perf_counter()
    previous = None
    for i, (pipeline, n_tasks) in enumerate(stages):
        previous = LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=min(args.workers, n_tasks),
                                         logging_dir=str(work / f"logs{i}"), depends=previous)
    previous.run()
    seconds = time.perf_counter() - start
    clusters, removed = {}, []
    for part in ("kept", "removed"):
        for path in sorted((work / part).glob("*.jsonl*")):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as fh:
                for line in fh:
                    doc = json.loads(line)
                    if part == "removed":
                        removed.append(doc["id"])
                    cluster = doc.get("metadata", {}).get("minhash_cluster_id", -1)
                    if cluster != -1:
                        clusters[doc["id"]] = str(cluster)
    print(json.dumps({"seconds": seconds, "clusters": clusters, "removed": removed}))


if __name__ == "__main__":
    main()
