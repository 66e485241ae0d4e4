"""Benchmark: BETR (``benchmark_similarity``) scores from the static model vs all-MiniLM-L6-v2.

    .venv/bin/python bench/betr_static.py --static /tmp/minilm-static [--per-corpus 300] [--examples 150] \
        [--mmlu-examples 1000]

``--static``: a directory written by ``curate embed distill`` (built there, from the bundled MiniLM,
when it does not exist yet). Skips (exit 0) when ../shared/data is absent.

Pool: up to ``--per-corpus`` documents (>= 200 characters, chosen by a seeded hash of the id) from
each corpus of ../shared/data/corpora (ABC: that many of each of its two programmes, rural and
science). Targets, each balanced as the stage does (seeded hash of the example ids):

- ``mmlu``: ``--mmlu-examples`` MMLU dev + val questions with their choices, all subjects (real
  dev/val splits);
- ``qa mix``: ``--examples`` of each of ARC-Easy, ARC-Challenge, OpenBookQA, CommonsenseQA, PIQA, SIQA, BoolQ. These
  files carry no split; the bench declares them ``dev`` because it only compares two
  embedders' rankings of the same pool; nothing selected here trains anything;
- ``mmlu science`` (labelled): MMLU dev + val biology, physics, chemistry, astronomy and
  medicine subjects (at most ``--mmlu-examples``); the relevant documents are ABC's science programme.

For each target set the pool and the examples are embedded by both models (``long_docs: first``:
MiniLM's first 256 word pieces, the static model's first 512 tokens) and scored with the stage's
own :func:`rank_scores` (``rank_value: reciprocal``; ``aggregate: max`` is the default, ``mean``
shown too). Reported: Spearman rank correlation of the two models' document scores; the overlap of
their top ``f`` (the positives of ``positive_fraction = f``, ties by id, as :func:`split_labels`);
on the labelled set, ROC-AUC of science vs the rest and precision of the top ``n_science``
documents (R-precision). CPU seconds of each model's embedding are printed. One core: one torch
thread, ``RAYON_NUM_THREADS=1``, ``NUMBA_NUM_THREADS=1``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from one_core import DATA  # pins the thread pools before tokenizers or numba starts one

FRACTIONS = (0.01, 0.05, 0.1, 0.25)
SCIENCE = ["college_biology", "high_school_biology", "college_physics", "high_school_physics", "conceptual_physics",
           "college_chemistry", "high_school_chemistry", "astronomy", "anatomy", "medical_genetics", "virology",
           "nutrition", "college_medicine", "clinical_knowledge"]
QA_MIX = ["arc_easy", "arc_challenge", "openbook_qa", "commonsense_qa", "piqa", "siqa", "boolq"]


def seeded_key(doc_id: str, seed: int = 0) -> str:
    return hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()


def read_corpus(path: Path):
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            yield record["id"], record["text"]


def document_pool(per_corpus: int) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, group) sorted by id; group = the corpus, ABC split into its two programmes."""
    rows = []
    for path in sorted((DATA / "corpora").glob("*.jsonl*")):
        groups: dict[str, list[tuple[str, str]]] = {}
        for doc_id, text in read_corpus(path):
            if len(text) >= 200:
                group = "abc-" + doc_id.split("-")[1] if doc_id.startswith("abc-") else path.name.split(".")[0]
                groups.setdefault(group, []).append((doc_id, text))
        for group, docs in groups.items():
            docs.sort(key=lambda d: (seeded_key(d[0]), d[0]))
            rows += [(doc_id, text, group) for doc_id, text in docs[:per_corpus]]
    rows.sort()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def target_sets(examples: int, mmlu_examples: int) -> dict[str, list]:
    from curate.targeted.benchmarks import TRAINING_SPLITS, balance, load_benchmarks, parse_specs

    bench = DATA / "benchmarks"
    mmlu = [{"path": bench / f"mmlu_{s}.jsonl", "template": "{question} {choices}"} for s in ("dev", "val")]
    science = [dict(spec, name="mmlu_science", where={"subject": SCIENCE}) for spec in mmlu]
    mix = [{"path": bench / f"{name}.jsonl", "split": "dev"} for name in QA_MIX]

    def load(specs, per_benchmark):
        return balance(load_benchmarks(parse_specs(specs), TRAINING_SPLITS), per_benchmark, 0)

    return {"mmlu": load(mmlu, mmlu_examples), "qa mix": load(mix, examples),
            "mmlu science": load(science, mmlu_examples)}


def embed(texts: list[str], model) -> tuple[np.ndarray, float]:
    from curate.targeted.embedding import embed_texts

    started = time.process_time()
    vectors = embed_texts(texts, model=model, batch_size=64, device="cpu")
    return vectors, time.process_time() - started


def top(ids: list[str], scores: np.ndarray, fraction: float) -> set[int]:
    from curate.targeted.benchmark_similarity import split_labels

    return set(np.flatnonzero(split_labels(ids, scores, fraction)))


def roc_auc(scores: np.ndarray, relevant: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = int(relevant.sum()), int((~relevant).sum())
    return float((ranks[relevant].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compare(ids, groups, docs: dict, examples: dict, name: str) -> list[str]:
    """Both models' BETR scores of the pool for one target set, and how far they agree: table rows."""
    from scipy.stats import spearmanr

    from curate.targeted.benchmark_similarity import rank_scores

    lines = []
    relevant = np.asarray([g == "abc-science" for g in groups])
    for aggregate in ("max", "mean"):
        scores = {m: rank_scores(docs[m], examples[m], aggregate=aggregate)[0] for m in docs}
        cells = [name, aggregate, str(len(examples["minilm"])),
                 f"{spearmanr(scores['minilm'], scores['static']).statistic:.3f}"]
        for fraction in FRACTIONS:
            a, b = top(ids, scores["minilm"], fraction), top(ids, scores["static"], fraction)
            cells.append(f"{len(a & b) / len(a):.3f}")
        if name == "mmlu science":
            for m in docs:
                best = top(ids, scores[m], relevant.sum() / len(ids))
                cells.append(f"{roc_auc(scores[m], relevant):.3f} / {relevant[list(best)].mean():.3f}")
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
        if aggregate == "max":
            for m in docs:
                picked = Counter(groups[i] for i in top(ids, scores[m], 0.1))
                print(f"  {name}, {m}, top 10% by corpus: "
                      + ", ".join(f"{g} {c}" for g, c in picked.most_common()), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--static", required=True, help="static model directory (built if absent)")
    parser.add_argument("--per-corpus", type=int, default=300)
    parser.add_argument("--examples", type=int, default=150, help="examples per benchmark of the QA mix")
    parser.add_argument("--mmlu-examples", type=int, default=1000)
    args = parser.parse_args()
    if not (DATA / "corpora").is_dir():
        print(f"skipped: shared data not found at {DATA}")
        return
    import torch

    from curate.targeted.embedding import load_embedder, resolve_model_dir

    torch.set_num_threads(1)
    started_wall = time.perf_counter()
    if not Path(args.static).exists():
        from curate.targeted.static_embed import distill_static_model

        cpu = time.process_time()
        distill_static_model(resolve_model_dir(None), args.static)
        print(f"distilled {args.static} in {time.process_time() - cpu:.0f} CPU s", flush=True)
    models = {"minilm": load_embedder(None, "cpu"), "static": load_embedder(args.static)}
    ids, texts, groups = document_pool(args.per_corpus)
    targets = target_sets(args.examples, args.mmlu_examples)
    print(f"pool: {len(ids)} documents, {dict(sorted(Counter(groups).items()))}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    docs, seconds = {}, {}
    for m, model in models.items():
        docs[m], seconds[m] = embed(texts, model)
    print("pool embedding CPU s: " + ", ".join(f"{m} {s:.1f} ({len(ids) / s:.1f} docs/s)"
                                                for m, s in seconds.items()), flush=True)
    table = ["| targets | aggregate | examples | Spearman | " + " | ".join(f"top {f:.0%} overlap" for f in FRACTIONS)
             + " | MiniLM AUC / R-prec. | static AUC / R-prec. |", "|---|---|---:|---:|" + "---:|" * 6]
    for name, examples in targets.items():
        vectors = {m: embed([e.text for e in examples], model)[0] for m, model in models.items()}
        table += compare(ids, groups, docs, vectors, name)
    print("\n".join(table))
    print(f"wall {time.perf_counter() - started_wall:.0f} s, CPU {time.process_time():.0f} s; "
          f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
