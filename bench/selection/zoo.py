"""The model zoo of perplexity correlations and PreSelect, built inside the benchmark: small
LMs trained with curate's train path on different pool subsets, sizes and seeds; their benchmark
error by log-likelihood (visible target items only) and their bits per byte on a pool sample
(the ppl-matrix code through :mod:`bench.selection.lm`), written in ``curate ppl-matrix`` layout."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd

from bench.selection.data import Inputs, unit, write_jsonl
from bench.selection.lm import text_bits
from bench.selection.presets import Preset
from bench.selection.training import ablate, mean_acc_norm, train_section
from curate.io.jsonl import read_records


def subsets(inputs: Inputs, preset: Preset, out: Path, seed: int) -> dict[str, Path]:
    """``zoo_subsets`` pool subsets, each the pieces of 1–3 seeded-random corpora: models trained on
    them differ in what they know, so their losses and errors vary across texts."""
    rows = [r for _, r in read_records(inputs.pool)]
    sources = sorted({r["source"] for r in rows})
    files = {}
    for i in range(preset.zoo_subsets):
        rng = random.Random(f"{seed}-zoo-{i}")
        chosen = sorted(rng.sample(sources, rng.randint(1, min(3, len(sources)))))
        files[f"s{i:02d}"] = write_jsonl([r for r in rows if r["source"] in chosen], out / "data" / f"s{i:02d}.jsonl")
    return files


def pool_sample(inputs: Inputs, n: int, seed: int) -> pd.DataFrame:
    """The ``n`` pool pieces with the smallest seeded hash of id, sorted by id."""
    rows = sorted(((r["id"], r["text"]) for _, r in read_records(inputs.pool)),
                  key=lambda r: (unit(r[0], seed + 2), r[0]))
    return pd.DataFrame(rows[:n], columns=["id", "text"]).sort_values("id", kind="stable").reset_index(drop=True)


def build_zoo(inputs: Inputs, preset: Preset, tokenizer: Path, out: Path, seed: int, log=print) -> dict:
    """Train the zoo, write ``errors.csv`` (model,error) and ``matrix.parquet`` (bpb per model)."""
    from curate.pplcorr.lossmatrix import BPB, BYTES, TOKENS, utf8_bytes, write_atomic

    out.mkdir(parents=True, exist_ok=True)
    data = subsets(inputs, preset, out, seed)
    benchmarks = sorted(inputs.visible_benchmarks)
    train = train_section(preset, preset.zoo_model, [inputs.visible_benchmarks[b] for b in benchmarks],
                          preset.zoo_eval_items)
    models = {}
    for k, budget in enumerate(preset.zoo_budgets):
        log(f"zoo: {len(data)} models at {budget:,} tokens")
        rows = ablate(data, token_budget=budget, train=train, heldout=inputs.pool_heldout, tokenizer=tokenizer,
                      seed=seed + k, out=out / f"budget-{budget}", name="zoo")
        for row in rows:
            models[f"{row['selection']}@{budget}"] = (out / f"budget-{budget}" / row["selection"] / "run",
                                                      1.0 - mean_acc_norm(row, benchmarks))
    docs = pool_sample(inputs, preset.zoo_sample, seed)
    matrix = docs[["id"]].assign(**{BYTES: utf8_bytes(docs["text"])})
    for name, (run_dir, _) in models.items():
        bpb, tokens = text_bits(run_dir, tokenizer, docs["text"].tolist(), device=preset.device)
        matrix[BPB + name], matrix[TOKENS + name] = bpb, tokens
    write_atomic(matrix, out / "matrix.parquet")
    errors = pd.DataFrame({"model": list(models), "error": [e for _, e in models.values()]})
    errors.to_csv(out / "errors.csv", index=False)
    mean_bpb = np.array([float((matrix[BPB + m] * matrix[BYTES]).sum() / matrix[BYTES].sum()) for m in models])
    summary = {"models": len(models), "sample_docs": len(docs), "error_min": float(errors["error"].min()),
               "error_max": float(errors["error"].max()), "mean_bpb_min": float(mean_bpb.min()),
               "mean_bpb_max": float(mean_bpb.max()),
               "spearman_error_vs_pool_bpb": float(pd.Series(errors["error"].to_numpy()).corr(
                   pd.Series(mean_bpb), method="spearman"))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log(f"zoo: {summary}")
    return {"errors": out / "errors.csv", "matrix": out / "matrix.parquet", "summary": summary,
            "inputs": [*data.values(), *inputs.visible_benchmarks.values()]}
