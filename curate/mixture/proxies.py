"""Proxy runs of ``curate mixopt``: the pool split by domain once, one tokenizer, the target's
token shards, and one small model per mixture trained through the same mix → tokenize → train
path as ``curate ablate`` (finished parts reused, a finished proxy never retrained, several
proxies at once in worker processes)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from curate.core import CurateError
from curate.io import fs
from curate.io.jsonl import read_records
from curate.train.store import building

DOMAINS_DIR, PROXIES_DIR, RESULT = "domains", "proxies", "proxy.json"


# --------------------------------------------------------------------------- the pool

def _pool_rows(path: str, column: str) -> Iterator[tuple[str, str, str | None]]:
    """``(id, text, domain)`` of every pool row (Parquet or JSONL files of a stage, directory or glob)."""
    import pyarrow.parquet as pq

    from curate.train.mix import source_files

    if not any(ch in path for ch in "*?[") and not fs.exists(path):
        raise CurateError(f"mixopt pool not found: {path}")
    for f in source_files(path):
        if f.endswith(".parquet"):
            with fs.open_file(f, "rb") as fh:
                table = pq.read_table(fh)
            if column not in table.column_names:
                raise CurateError(f"{f}: domain column '{column}' not found; columns: {', '.join(table.column_names)}"
                                  " (label domains with the domain_label stage)")
            yield from zip(*(table.column(c).to_pylist() for c in ("id", "text", column)))
        else:
            for line, row in read_records(f):
                if column not in row:
                    raise CurateError(f"{f}:{line}: no domain column '{column}' (label domains with domain_label)")
                yield row.get("id"), row.get("text"), row[column]


def split_pool(pool: str, column: str, wanted: tuple[str, ...] | None, out: Path) -> dict[str, Path]:
    """Write each domain's documents to ``out/domains/<domain>/`` once (pool order kept); reuse it after."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = out / DOMAINS_DIR
    if (root / "_domains.json").exists():
        names = json.loads((root / "_domains.json").read_text(encoding="utf-8"))
        return {d: root / safe_name(d) for d in names}
    rows: dict[str, list] = {}
    for doc_id, text, domain in _pool_rows(pool, column):
        if domain is not None:
            rows.setdefault(str(domain), []).append((str(doc_id), text or ""))
    names = sorted(rows) if wanted is None else list(wanted)
    missing = [d for d in names if d not in rows]
    if missing:
        raise CurateError(f"domain(s) {', '.join(missing)} have no documents in {pool}; "
                          f"its domains: {', '.join(sorted(rows)) or '(none)'}")
    if len({safe_name(d) for d in names}) != len(names):
        raise CurateError("domain names collide once made file-safe; rename them in the domain column")
    with building(root, manifest="_domains.json") as tmp:
        for d in names:
            (tmp / safe_name(d)).mkdir()
            ids, texts = zip(*rows[d])
            pq.write_table(pa.table({"id": list(ids), "text": list(texts)}),
                           tmp / safe_name(d) / "part-00000.parquet", compression="zstd")
        (tmp / "_domains.json").write_text(json.dumps(names), encoding="utf-8")
    return {d: root / safe_name(d) for d in names}


def safe_name(domain: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", domain) or "_"


def domain_tokens(paths: dict[str, Path], tokenizer: Path) -> dict[str, int]:
    """Tokens per domain, counted as ``curate mix`` counts them (tokenizer + EOS); a domain with
    no text fails here, before any training."""
    from curate.train.mix import MixtureSpec, iter_mixture_texts, token_counter

    count = token_counter(MixtureSpec(sources=(), tokenizer=tokenizer))
    out = {}
    for d, path in paths.items():
        batches = list(iter_mixture_texts(path))
        if not any(t and t.strip() for batch in batches for t in batch):
            raise CurateError(f"domain '{d}' has no tokens (all its documents are empty); drop it with 'domains:'")
        out[d] = int(sum(int(count(batch).sum()) for batch in batches))
    return out


def tokenizer_for(spec, paths: dict[str, Path], out: Path) -> Path:
    """The spec's tokenizer, or one trained on an equal-share sample of every domain (as ablate)."""
    from itertools import chain

    from curate.train.mix import iter_mixture_texts
    from curate.train.tokenizer import sample_texts, train_tokenizer

    if spec.tokenizer_path is not None:
        return Path(spec.tokenizer_path)
    path = out / "tokenizer.json"
    if not path.exists():
        per_domain = max(spec.token_budget * 4 // max(len(paths), 1), 1)
        texts = chain.from_iterable(sample_texts(iter_mixture_texts(p), max_chars=per_domain, seed=spec.seed)
                                    for p in paths.values())
        train_tokenizer(texts, path, vocab_size=spec.vocab_size)
    return path


# --------------------------------------------------------------------------- the target

def target_texts(spec) -> list[str]:
    """Held-out documents of the target, then each benchmark item as its context + gold answer
    (likelihood of the correct continuation, as DataDecide's small-scale metrics)."""
    from curate.train.evaluate import load_benchmark
    from curate.train.mix import iter_mixture_texts

    texts = [t for p in spec.target_documents for batch in iter_mixture_texts(p) for t in batch if t and t.strip()]
    for bench in spec.target_benchmarks:
        for item in load_benchmark(bench, spec.max_benchmark_examples):
            gold = item.choices[item.gold]
            texts.append(gold.context + gold.continuation)
    if not texts:
        raise CurateError("the target has no documents (its files hold no non-empty text); "
                          "point target.documents/benchmarks at held-out data")
    return texts


def write_target_shards(texts: list[str], tokenizer: Path, out: Path, context: int) -> Path:
    """The target's token shards; a target shorter than one training context fails here."""
    from curate.train.shards import TokenShards, write_token_shards

    path = out / "target_shards"
    if not path.exists():
        write_token_shards([texts], tokenizer, path, source="mixopt target")
    tokens = len(TokenShards(path))
    if tokens < context + 1:
        raise CurateError(f"the target has {tokens} tokens, fewer than one context ({context + 1}); "
                          "add held-out documents or benchmark items")
    return path


# --------------------------------------------------------------------------- one proxy

@dataclass(frozen=True)
class Proxy:
    """Everything one proxy run needs (picklable: it crosses to worker processes)."""

    name: str
    weights: dict[str, float]  # requested shares of the budget
    domains: dict[str, str]  # domain -> its split directory
    caps: dict[str, float]
    run_dir: str
    tokenizer: str
    target_shards: str
    train: dict
    token_budget: int
    seed: int
    local_rank: int | None = None  # the GPU of a worker process (cuda:<local_rank>)


def proxy_config(train: dict, token_budget: int):
    """The proxies' training config and their number of steps (``curate ablate``'s recipe)."""
    from curate.train.config import TrainConfig, from_dict

    base = from_dict(TrainConfig, train, "mixopt spec: train")
    tokens_per_step = base.batch.micro_batch * base.batch.grad_accum * base.model.context
    steps = token_budget // tokens_per_step
    if steps < 1:
        raise CurateError(f"token_budget {token_budget} is less than one training step ({tokens_per_step} tokens)")
    return base, steps


def train_proxy(p: Proxy) -> dict:
    """Mix, tokenize and train one mixture; the result is written last (``proxy.json``), so a
    finished proxy is read back and a killed one resumes from its parts and checkpoints."""
    from curate.train.ablate import final_eval, mix_and_train
    from curate.train.mix import SourceSpec

    run_dir = Path(p.run_dir)
    done = run_dir / RESULT
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    if p.local_rank is not None:
        os.environ["LOCAL_RANK"] = str(p.local_rank)
    base, steps = proxy_config(p.train, p.token_budget)
    sources = tuple(SourceSpec(d, path, weight=p.weights[d], max_epochs=p.caps[d]) for d, path in p.domains.items())
    cfg, manifest = mix_and_train(str(run_dir), sources, base, token_budget=p.token_budget, steps=steps, seed=p.seed,
                                  tokenizer=p.tokenizer, heldout=p.target_shards, name=p.name)
    total = max(manifest["total_tokens"], 1)
    tokens_per_step = base.batch.micro_batch * base.batch.grad_accum * base.model.context
    result = {"proxy": p.name, "train_tokens": steps * tokens_per_step,
              "weights": {d: round(s["tokens"] / total, 6) for d, s in manifest["sources"].items()},
              "requested": {d: round(w, 6) for d, w in p.weights.items()},
              "epochs": {d: s["epochs"] for d, s in manifest["sources"].items()},
              "target_loss": final_eval(Path(cfg.out) / "log.jsonl")["heldout_loss"]}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(done)
    return result


def run_proxies(proxies: list[Proxy], workers: int, log: Callable[[str], None]) -> list[dict]:
    """Train every proxy (in order, or ``workers`` processes at once); results in proxy order."""
    if workers <= 1 or len(proxies) <= 1:
        results = []
        for i, p in enumerate(proxies):
            results.append(train_proxy(p))
            log(f"proxy {i + 1}/{len(proxies)} {p.name}: target loss {results[-1]['target_loss']:.4f}")
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    gpus = _gpu_count()
    placed = [Proxy(**{**p.__dict__, "local_rank": i % gpus if gpus else None}) for i, p in enumerate(proxies)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = []
        for i, r in enumerate(pool.map(train_proxy, placed)):
            results.append(r)
            log(f"proxy {i + 1}/{len(proxies)} {r['proxy']}: target loss {r['target_loss']:.4f}")
    return results


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def weight_vector(result: dict, domains: list[str]) -> np.ndarray:
    return np.array([result["weights"].get(d, 0.0) for d in domains], dtype=np.float64)
