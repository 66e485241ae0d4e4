"""The shared tokenizer and the `curate ablate` runs: the model zoo and the proxy models."""
from __future__ import annotations

from pathlib import Path

from bench.selection.data import Inputs, read_pairs
from bench.selection.presets import Preset

TOKENIZER_CHARS = 4_000_000


def train_pool_tokenizer(inputs: Inputs, preset: Preset, path: Path) -> Path:
    """A byte-level BPE trained on the selectable pool only (never on target text)."""
    from curate.train.tokenizer import train_tokenizer

    if not path.exists():
        texts = [text for _, text in read_pairs(inputs.pool)]
        budget, sample = TOKENIZER_CHARS, []
        for text in texts:
            if budget <= 0:
                break
            sample.append(text)
            budget -= len(text)
        train_tokenizer(sample, path, vocab_size=preset.vocab_size)
    return path


def train_section(preset: Preset, model: dict, benchmarks: list[Path], max_examples: int) -> dict:
    """The `train:` part of an ablation spec (everything but data and out)."""
    return {"device": preset.device, "cpu_threads": preset.cpu_threads, "model": dict(model),
            "optim": {"lr": preset.lr, "min_lr": preset.lr / 10, "warmup_steps": 10},
            "batch": {"micro_batch": preset.micro_batch},
            "eval": {"benchmarks": [str(b) for b in benchmarks], "max_examples": max_examples},
            "checkpoint": {"keep": 1}, "log": {"every": 50, "tensorboard": False, "progress": False}}


def ablate(selections: dict[str, Path], *, token_budget: int, train: dict, heldout: Path, tokenizer: Path,
           seed: int, out: Path, name: str) -> list[dict]:
    """`curate ablate` (curate/train/ablate.py) on ``selections``; rows gain ``seed`` and
    ``selected_tokens`` (the tokens the selection offered before the budget cut)."""
    from curate.train import store
    from curate.train.ablate import parse_ablation, run_ablation

    spec = parse_ablation({"name": name, "seed": seed, "token_budget": token_budget, "heldout": str(heldout),
                           "tokenizer": {"path": str(tokenizer)}, "train": train,
                           "selections": {k: str(v) for k, v in selections.items()}}, out)
    rows = run_ablation(spec, out, plot=False)
    for row in rows:
        manifest = store.read_json(out / row["selection"] / "mix" / store.MANIFEST)
        row.update(seed=seed, selected_tokens=manifest["sources"][row["selection"]]["available_tokens"])
    return rows


def mean_acc_norm(row: dict, benchmarks) -> float:
    """Mean byte-normalised multiple-choice accuracy over ``benchmarks`` (log-likelihood)."""
    return sum(row[f"{b}/acc_norm"] for b in benchmarks) / len(benchmarks)


def chance(benchmark_files: dict[str, Path]) -> float:
    """Mean accuracy of random guessing over the benchmarks' items."""
    from curate.io.jsonl import read_records

    per = []
    for path in benchmark_files.values():
        items = [r for _, r in read_records(path)]
        per.append(sum(1 / len(r["choices"]) for r in items) / max(len(items), 1))
    return sum(per) / len(per)
