"""Selection ablations: train the same small model on several selections of one pool at the
same token budget and compare held-out loss and benchmark accuracy side by side (the
protocol of DataComp-LM, Li et al. 2024, at toy or real scale).

Spec (YAML)::

    seed: 0
    token_budget: 2000000        # training tokens per selection (same for all)
    max_epochs: 4                # repetition cap when a selection is smaller than the budget
    tokenizer: {path: tok.json}  # or {vocab_size: 8192}: trained on a sample of all selections
    heldout: data/heldout.jsonl  # documents for held-out loss, shared by every run
    selections: {random: out/random/03-sample, fasttext: out/ft/05-select_budget, ...}
    train: {model: {...}, optim: {...}, batch: {...}, eval: {benchmarks: [...]}}

Each selection goes through ``mix`` → ``tokenize`` → ``train``; finished (committed) parts
are reused. Every path — the spec, its selections, heldout, tokenizer and benchmarks, and the
output — may be a URI (``s3://…``): the parts go through :mod:`curate.train.store` and the
results are written locally and uploaded.
"""
from __future__ import annotations

import csv
import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from curate.core import CurateError
from curate.io import fs
from curate.train import store
from curate.train.mix import _resolve as resolve_spec_path

SPEC_KEYS = {"name", "seed", "token_budget", "max_epochs", "tokenizer", "heldout", "selections", "train"}


@dataclass(frozen=True)
class AblationSpec:
    selections: dict[str, str]
    token_budget: int
    train: dict
    heldout: str | None = None
    tokenizer_path: str | None = None
    vocab_size: int = 8192
    max_epochs: float = 4.0
    seed: int = 0
    name: str = "ablation"


def load_ablation(path: str | Path) -> AblationSpec:
    """Parse an ablation YAML (a path or a URI); relative paths in it resolve against its directory."""
    path = fs.resolve(path, Path.cwd())
    if not fs.isfile(path):
        raise CurateError(f"ablation spec not found: {path}")
    raw = yaml.safe_load(fs.read_text(path)) or {}
    return parse_ablation(raw, fs.parent(path))


def parse_ablation(raw: dict, base: str | Path = Path(".")) -> AblationSpec:
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise CurateError(f"ablation spec: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(SPEC_KEYS))}")
    if not isinstance(raw.get("selections"), dict) or len(raw["selections"]) < 1:
        raise CurateError("ablation spec needs 'selections': {name: path, ...}")
    if "token_budget" not in raw:
        raise CurateError("ablation spec needs 'token_budget' (training tokens per selection)")

    def res(p) -> str:
        return resolve_spec_path(p, base)

    tok = raw.get("tokenizer") or {}
    train = dict(raw.get("train") or {})
    if "eval" in train and "benchmarks" in train["eval"]:
        train["eval"] = {**train["eval"], "benchmarks": [res(b) for b in train["eval"]["benchmarks"]]}
    for key in ("out", "data"):
        if key in train:
            raise CurateError(f"ablation spec: train.{key} is set by `curate ablate` itself; remove it")
    return AblationSpec(
        selections={str(k): res(v) for k, v in raw["selections"].items()}, token_budget=int(raw["token_budget"]),
        train=train, heldout=res(raw["heldout"]) if raw.get("heldout") else None,
        tokenizer_path=res(tok["path"]) if tok.get("path") else None, vocab_size=int(tok.get("vocab_size", 8192)),
        max_epochs=float(raw.get("max_epochs", 4.0)), seed=int(raw.get("seed", 0)),
        name=str(raw.get("name", "ablation")))


def _tokenizer(spec: AblationSpec, out: str) -> str:
    """The spec's tokenizer, or one trained on an equal-share sample of every selection (reused
    once it and its sha256 sidecar, written last remotely, are both there)."""
    from itertools import chain

    from curate.train.mix import iter_mixture_texts
    from curate.train.tokenizer import sample_texts, train_tokenizer

    if spec.tokenizer_path is not None:
        return spec.tokenizer_path
    path = fs.join(out, "tokenizer.json")
    if not (fs.exists(path) and fs.exists(f"{path}.sha256")):
        per_selection = max(spec.token_budget * 4 // max(len(spec.selections), 1), 1)
        texts = chain.from_iterable(sample_texts(iter_mixture_texts(p), max_chars=per_selection, seed=spec.seed)
                                    for p in spec.selections.values())
        train_tokenizer(texts, path, vocab_size=spec.vocab_size)
    return path


def check_inputs(spec: AblationSpec) -> None:
    """Fail before any work when a selection, the held-out set, the tokenizer or a benchmark
    cannot be read."""
    benchmarks = (spec.train.get("eval") or {}).get("benchmarks") or []
    named = {**{f"selection '{k}'": v for k, v in spec.selections.items()},
             "heldout": spec.heldout, "tokenizer": spec.tokenizer_path,
             **{f"benchmark {i + 1}": b for i, b in enumerate(benchmarks)}}
    for what, uri in named.items():
        if uri is None:
            continue
        fs.check_reachable(uri)
        if not any(ch in uri for ch in "*?[") and not fs.exists(uri):
            raise CurateError(f"ablation spec: {what} {uri} does not exist")


def run_ablation(spec: AblationSpec, out: str | Path, *, plot: bool = True) -> list[dict]:
    """Mix, tokenize and train every selection; write results.{json,csv,md} (+ results.png)."""
    from curate.train.config import TrainConfig, from_dict
    from curate.train.mix import SourceSpec, iter_mixture_texts
    from curate.train.shards import write_token_shards

    check_inputs(spec)
    out = fs.resolve(out, Path.cwd())
    fs.makedirs(out)
    tok = _tokenizer(spec, out)
    heldout = None
    if spec.heldout is not None:
        heldout = fs.join(out, "heldout_shards")
        if not store.committed(heldout):
            write_token_shards(iter_mixture_texts(spec.heldout), tok, heldout, source=spec.heldout)
    base = from_dict(TrainConfig, spec.train, "ablation spec: train")
    tokens_per_step = base.batch.micro_batch * base.batch.grad_accum * base.model.context
    steps = spec.token_budget // tokens_per_step
    if steps < 1:
        raise CurateError(f"token_budget {spec.token_budget} is less than one step ({tokens_per_step} tokens)")
    rows = []
    for name, path in spec.selections.items():
        sources = (SourceSpec(name, path, weight=1.0, max_epochs=spec.max_epochs),)
        cfg, manifest = mix_and_train(fs.join(out, name), sources, base, token_budget=spec.token_budget, steps=steps,
                                      seed=spec.seed, tokenizer=tok, heldout=heldout)
        mixture = manifest["sources"][name]
        rows.append({"selection": name, "train_tokens": steps * tokens_per_step,
                     "documents": mixture["documents"], "epochs": mixture["epochs"],
                     **final_eval(fs.join(cfg.out, "log.jsonl"))})
    with _written_to(out) as local:
        write_results(rows, local, plot=plot)
    return rows


def mix_and_train(run_dir: str, sources: tuple, base, *, token_budget: int, steps: int, seed: int,
                  tokenizer: str, heldout: str | None, name: str = "mixture") -> tuple:
    """Mix ``sources`` to ``token_budget`` tokens, tokenize them and train ``steps`` steps of ``base``
    under ``run_dir`` (``mix/``, ``shards/``, ``run/``), reusing every part already committed, so a
    killed run resumes. Returns the training config and the mixture's manifest."""
    from curate.train.loop import train
    from curate.train.mix import MixtureSpec, build_mixture, iter_mixture_texts
    from curate.train.shards import write_token_shards

    mix_dir, shard_dir = fs.join(run_dir, "mix"), fs.join(run_dir, "shards")
    if not store.committed(mix_dir):  # + one context of slack: contexts need T+1 tokens
        build_mixture(MixtureSpec(sources=sources, total_tokens=token_budget + base.model.context + 1, seed=seed,
                                  tokenizer=tokenizer, name=name), mix_dir)
    if not store.committed(shard_dir):
        write_token_shards(iter_mixture_texts(mix_dir), tokenizer, shard_dir, source=mix_dir)
    cfg = base.replace(out=fs.join(run_dir, "run"), seed=seed,
                       data={"shards": shard_dir, "heldout_shards": heldout, "heldout_contexts": 0},
                       optim={"max_steps": steps, "warmup_steps": min(base.optim.warmup_steps, steps)})
    train(cfg)
    return cfg, store.read_json(fs.join(mix_dir, store.MANIFEST))


@contextmanager
def _written_to(out: str) -> Iterator[Path]:
    """A local directory whose files end up in ``out``: ``out`` itself, or a temporary
    directory uploaded to the object store when the block succeeds."""
    if not fs.is_remote(out):
        yield Path(fs.strip_file_scheme(out))
        return
    local = Path(tempfile.mkdtemp(prefix="curate-ablate-"))
    try:
        yield local
        fs.put_tree(local, out)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def final_eval(log: str | Path) -> dict:
    """The last evaluation record of a run's JSONL log (a path or a URI)."""
    evals = [json.loads(line) for line in fs.read_text(log).splitlines() if '"eval"' in line]
    evals = [e for e in evals if e.get("event") == "eval"]
    if not evals:
        raise CurateError(f"{log} has no evaluation record; the run did not finish")
    last = {k: v for k, v in evals[-1].items() if k not in ("event", "step")}
    return dict(sorted(last.items(), key=lambda kv: (kv[0] != "heldout_loss", kv[0])))


def markdown_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "selection" else "---:" for c in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], out: Path, *, plot: bool = True) -> None:
    (out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    (out / "results.md").write_text(markdown_table(rows), encoding="utf-8")
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    if plot:
        plot_results(rows, out / "results.png")


def plot_results(rows: list[dict], path: Path) -> None:
    """Held-out loss and each benchmark's accuracy per selection, as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["selection"] for r in rows]
    metrics = [k for k in rows[0] if k == "heldout_loss" or k.endswith("/acc")]
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(3.2 * max(len(metrics), 1), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.bar(names, [r.get(metric, 0.0) for r in rows], color="tab:blue" if metric == "heldout_loss" else "tab:green")
        ax.set_title(metric + (" (lower is better)" if metric == "heldout_loss" else ""), fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
