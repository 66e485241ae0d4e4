"""`curate mixopt` end to end on real text: a pool of four shared corpora as domains, the target
= held-out documents of one of them; proxies, regression, proposal, and the validation of the
proposed mixture against the natural and uniform ones at the same token budget.

    .venv/bin/python bench/mixopt.py                  # CPU toy (docs/mixtures.md): 16 proxies, 1-layer 64-dim
    .venv/bin/python bench/mixopt.py --kl-bound 0.5 --cap wiki=1   # the same under a KL bound and a cap
    .venv/bin/python bench/mixopt.py --preset gpu     # GPU: 64 proxies of a 4-layer 256-dim model, 4 workers

Prints the summary (regression, proposed weights, validation losses) as JSON; outputs stay in --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DOMAINS = {"news": "reuters21578.jsonl.gz", "wiki": "wikitext2.jsonl", "code_docs": "python_docs.jsonl",
           "reviews": "nltk_movie_reviews.jsonl"}
PRESETS = {
    "cpu": {"docs": {"news": 60, "wiki": 12, "code_docs": 16, "reviews": 20}, "held": 8, "chars": 2000,
            "budget": 20480, "mixtures": 16, "vocab": 512, "workers": 1, "device": "cpu",
            "model": {"n_layer": 1, "n_head": 2, "d_model": 64, "context": 64}, "micro_batch": 8, "lr": 0.01},
    "gpu": {"docs": {"news": 4000, "wiki": 100, "code_docs": 400, "reviews": 1500}, "held": 20, "chars": 20000,
            "budget": 2_000_000, "mixtures": 64, "vocab": 8192, "workers": 4, "device": "cuda",
            "model": {"n_layer": 4, "n_head": 4, "d_model": 256, "context": 256}, "micro_batch": 32, "lr": 0.003},
}


def write_inputs(root: Path, p: dict, target: str) -> None:
    from helpers import SHARED_DATA, read_jsonl

    held = []
    with open(root / "pool.jsonl", "w", encoding="utf-8") as fh:
        for domain, name in DOMAINS.items():
            n = p["docs"][domain] + (p["held"] if domain == target else 0)
            rows = read_jsonl(SHARED_DATA / "corpora" / name, limit=n)
            if domain == target:
                rows, held = rows[:-p["held"]], rows[-p["held"]:]
            for r in rows:
                fh.write(json.dumps({"id": r["id"], "text": r["text"][:p["chars"]], "domain": domain}) + "\n")
    with open(root / "held.jsonl", "w", encoding="utf-8") as fh:
        for r in held:
            fh.write(json.dumps({"id": r["id"], "text": r["text"][:p["chars"]]}) + "\n")


def spec(p: dict, kl_bound: float | None, caps: dict) -> dict:
    return {"name": "bench", "seed": 0, "pool": "pool.jsonl", "token_budget": p["budget"], "max_epochs": 4,
            "kl_bound": kl_bound, "caps": caps,
            "mixtures": p["mixtures"], "concentration": 0.5, "target": {"documents": "held.jsonl"},
            "tokenizer": {"vocab_size": p["vocab"]}, "workers": p["workers"],
            "train": {"device": p["device"], "cpu_threads": 1, "model": p["model"],
                      "optim": {"lr": p["lr"], "min_lr": p["lr"] / 10, "warmup_steps": 5},
                      "batch": {"micro_batch": p["micro_batch"]}, "eval": {"heldout_batches": 8},
                      "log": {"every": 50, "progress": False, "tensorboard": False}},
            "search": {"candidates": 50_000, "top_k": 100}}


def main() -> None:
    import yaml

    from curate.mixture.mixopt import run_mixopt
    from curate.mixture.spec import load_mixopt

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--target", choices=sorted(DOMAINS), default="wiki")
    ap.add_argument("--kl-bound", type=float, default=None, help="KL(proposed || natural) bound, nats")
    ap.add_argument("--cap", action="append", default=[], metavar="DOMAIN=EPOCHS", help="a per-domain repetition cap")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    p = PRESETS[args.preset]
    root = Path(args.out or tempfile.mkdtemp(prefix="mixopt-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    write_inputs(root, p, args.target)
    caps = {c.split("=")[0]: float(c.split("=")[1]) for c in args.cap}
    (root / "mixopt.yaml").write_text(yaml.safe_dump(spec(p, args.kl_bound, caps)), encoding="utf-8")
    start = time.perf_counter()
    summary = run_mixopt(load_mixopt(root / "mixopt.yaml"), root / "out", log=lambda m: print(m, file=sys.stderr))
    keep = ("natural", "proposed", "proposal", "regression", "validation", "available_tokens")
    print(json.dumps({"preset": args.preset, "target": args.target, "kl_bound": args.kl_bound, "caps": caps,
                      "seconds": round(time.perf_counter() - start, 1),
                      "out": str(root / "out"), **{k: summary[k] for k in keep}}, indent=1))


if __name__ == "__main__":
    main()
