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

Each selection goes through ``mix`` → ``tokenize`` → ``train``; finished parts are reused.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from curate.core import CurateError

SPEC_KEYS = {"name", "seed", "token_budget", "max_epochs", "tokenizer", "heldout", "selections", "train"}


@dataclass(frozen=True)
class AblationSpec:
    selections: dict[str, Path]
    token_budget: int
    train: dict
    heldout: Path | None = None
    tokenizer_path: Path | None = None
    vocab_size: int = 8192
    max_epochs: float = 4.0
    seed: int = 0
    name: str = "ablation"


def load_ablation(path: str | Path) -> AblationSpec:
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"ablation spec not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return parse_ablation(raw, path.resolve().parent)


def parse_ablation(raw: dict, base: Path = Path(".")) -> AblationSpec:
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise CurateError(f"ablation spec: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(SPEC_KEYS))}")
    if not isinstance(raw.get("selections"), dict) or len(raw["selections"]) < 1:
        raise CurateError("ablation spec needs 'selections': {name: path, ...}")
    if "token_budget" not in raw:
        raise CurateError("ablation spec needs 'token_budget' (training tokens per selection)")

    def res(p):
        q = Path(p).expanduser()
        return q if q.is_absolute() else (base / q).resolve()

    tok = raw.get("tokenizer") or {}
    train = dict(raw.get("train") or {})
    if "eval" in train and "benchmarks" in train["eval"]:
        train["eval"] = {**train["eval"], "benchmarks": [str(res(b)) for b in train["eval"]["benchmarks"]]}
    for key in ("out", "data"):
        if key in train:
            raise CurateError(f"ablation spec: train.{key} is set by `curate ablate` itself; remove it")
    return AblationSpec(
        selections={str(k): res(v) for k, v in raw["selections"].items()}, token_budget=int(raw["token_budget"]),
        train=train, heldout=res(raw["heldout"]) if raw.get("heldout") else None,
        tokenizer_path=res(tok["path"]) if tok.get("path") else None, vocab_size=int(tok.get("vocab_size", 8192)),
        max_epochs=float(raw.get("max_epochs", 4.0)), seed=int(raw.get("seed", 0)),
        name=str(raw.get("name", "ablation")))


def _tokenizer(spec: AblationSpec, out: Path) -> Path:
    """The spec's tokenizer, or one trained on an equal-share sample of every selection."""
    from itertools import chain

    from curate.train.mix import iter_mixture_texts
    from curate.train.tokenizer import sample_texts, train_tokenizer

    if spec.tokenizer_path is not None:
        return spec.tokenizer_path
    path = out / "tokenizer.json"
    if not path.exists():
        per_selection = max(spec.token_budget * 4 // max(len(spec.selections), 1), 1)
        texts = chain.from_iterable(sample_texts(iter_mixture_texts(p), max_chars=per_selection, seed=spec.seed)
                                    for p in spec.selections.values())
        train_tokenizer(texts, path, vocab_size=spec.vocab_size)
    return path


def run_ablation(spec: AblationSpec, out: str | Path, *, plot: bool = True) -> list[dict]:
    """Mix, tokenize and train every selection; write results.{json,csv,md} (+ results.png)."""
    from curate.train.config import TrainConfig, from_dict
    from curate.train.loop import train
    from curate.train.mix import MixtureSpec, SourceSpec, build_mixture, iter_mixture_texts
    from curate.train.shards import write_token_shards

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(spec, out)
    heldout = None
    if spec.heldout is not None:
        heldout = out / "heldout_shards"
        if not heldout.exists():
            write_token_shards(iter_mixture_texts(spec.heldout), tok, heldout, source=str(spec.heldout))
    base = from_dict(TrainConfig, spec.train, "ablation spec: train")
    tokens_per_step = base.batch.micro_batch * base.batch.grad_accum * base.model.context
    steps = spec.token_budget // tokens_per_step
    if steps < 1:
        raise CurateError(f"token_budget {spec.token_budget} is less than one step ({tokens_per_step} tokens)")
    rows = []
    for name, path in spec.selections.items():
        run_dir = out / name
        mix_dir, shard_dir = run_dir / "mix", run_dir / "shards"
        if not mix_dir.exists():
            # + one context of slack: contexts need T+1 tokens
            mix = MixtureSpec(sources=(SourceSpec(name, path, weight=1.0, max_epochs=spec.max_epochs),),
                              total_tokens=spec.token_budget + base.model.context + 1, seed=spec.seed, tokenizer=tok)
            build_mixture(mix, mix_dir)
        if not shard_dir.exists():
            write_token_shards(iter_mixture_texts(mix_dir), tok, shard_dir, source=str(mix_dir))
        mixture = json.loads((mix_dir / "_manifest.json").read_text(encoding="utf-8"))["sources"][name]
        cfg = base.replace(out=str(run_dir / "run"), seed=spec.seed,
                           data={"shards": str(shard_dir), "heldout_shards": str(heldout) if heldout else None,
                                 "heldout_contexts": 0},
                           optim={"max_steps": steps, "warmup_steps": min(base.optim.warmup_steps, steps)})
        train(cfg)
        rows.append({"selection": name, "train_tokens": steps * tokens_per_step,
                     "documents": mixture["documents"], "epochs": mixture["epochs"],
                     **final_eval(Path(cfg.out) / "log.jsonl")})
    write_results(rows, out, plot=plot)
    return rows


def final_eval(log: Path) -> dict:
    """The last evaluation record of a run's JSONL log."""
    evals = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if '"eval"' in line]
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
