"""Evaluation: held-out loss and multiple-choice accuracy by log-likelihood.

Multiple choice follows the lm-evaluation-harness recipe (Gao et al. 2021): each choice is
scored by the summed log-probability of its continuation given the context; ``acc`` takes
the argmax, ``acc_norm`` divides by the continuation's UTF-8 bytes first. Three JSONL
layouts of ``shared/data/benchmarks`` are understood:

- ``query`` + ``choices`` + ``gold`` (ARC, PIQA, COPA, OpenBookQA, SIQA, …): one context,
  one continuation per choice;
- ``context_options`` + ``continuation`` + ``gold`` (Winogrande, WSC): one context per
  choice, a shared continuation (partial scoring);
- ``question`` + ``choices`` + ``answer`` (MMLU).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.core import CurateError
from curate.io import fs
from curate.io.jsonl import read_records


@dataclass(frozen=True)
class Choice:
    context: str
    continuation: str


@dataclass(frozen=True)
class MCItem:
    choices: tuple[Choice, ...]
    gold: int


def parse_item(row: dict) -> MCItem:
    """One benchmark row in any of the supported layouts."""
    if "context_options" in row and "continuation" in row:
        cont = " " + row["continuation"].strip()
        return MCItem(tuple(Choice(c, cont) for c in row["context_options"]), int(row["gold"]))
    if "query" in row and "choices" in row and "gold" in row:
        return MCItem(tuple(Choice(row["query"], " " + str(c).strip()) for c in row["choices"]), int(row["gold"]))
    if "question" in row and "choices" in row and "answer" in row:
        ctx = f"Question: {row['question']}\nAnswer:"
        return MCItem(tuple(Choice(ctx, " " + str(c).strip()) for c in row["choices"]), int(row["answer"]))
    raise CurateError(f"unsupported benchmark row (keys {sorted(row)}); expected query/choices/gold, "
                      "context_options/continuation/gold or question/choices/answer")


def load_benchmark(path: str | Path, max_examples: int | None = None) -> list[MCItem]:
    """The items of a benchmark JSONL (a local path or a URI)."""
    if not fs.isfile(path):
        raise CurateError(f"benchmark file not found: {path}")
    items = []
    for _, record in read_records(path):
        items.append(parse_item(record))
        if max_examples is not None and len(items) >= max_examples:
            break
    return items


def autocast_for(device: str):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()


def continuation_logprobs(model, tok, pairs: list[Choice], *, eos_id: int, context: int, device: str,
                          batch_size: int = 32) -> np.ndarray:
    """Summed log p(continuation | EOS + context) for each pair; contexts are cut on the left."""
    import torch
    import torch.nn.functional as F

    seqs, n_cont = [], []
    for p in pairs:
        ctx_ids, cont_ids = tok.encode(p.context).ids, tok.encode(p.continuation).ids
        ids = ([eos_id] + ctx_ids + cont_ids)[-(context + 1):]
        seqs.append(ids)
        n_cont.append(min(len(cont_ids), len(ids) - 1))
    out = np.zeros(len(seqs))
    model.eval()
    with torch.no_grad(), autocast_for(device):
        for lo in range(0, len(seqs), batch_size):
            chunk = seqs[lo:lo + batch_size]
            width = max(len(s) for s in chunk) - 1
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            y = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.bool)
            for i, s in enumerate(chunk):
                n = len(s) - 1
                x[i, :n] = torch.tensor(s[:-1])
                y[i, :n] = torch.tensor(s[1:])
                mask[i, n - n_cont[lo + i]:n] = True
            logp = F.log_softmax(model(x.to(device)).float(), dim=-1)
            picked = logp.gather(-1, y.to(device).unsqueeze(-1)).squeeze(-1)
            out[lo:lo + len(chunk)] = (picked * mask.to(device)).sum(-1).cpu().numpy()
    return out


def multiple_choice_accuracy(model, tok, items: list[MCItem], *, eos_id: int, context: int,
                             device: str = "cpu") -> dict[str, float]:
    """``acc`` and byte-normalised ``acc_norm`` over ``items``."""
    pairs = [c for item in items for c in item.choices]
    scores = continuation_logprobs(model, tok, pairs, eos_id=eos_id, context=context, device=device)
    correct = correct_norm = 0
    pos = 0
    for item in items:
        k = len(item.choices)
        s = scores[pos:pos + k]
        nbytes = np.array([max(len(c.continuation.encode("utf-8")), 1) for c in item.choices])
        correct += int(np.argmax(s) == item.gold)
        correct_norm += int(np.argmax(s / nbytes) == item.gold)
        pos += k
    n = max(len(items), 1)
    return {"acc": correct / n, "acc_norm": correct_norm / n, "n": len(items)}


def heldout_loss(model, stream, *, batch_size: int, max_batches: int, device: str) -> float:
    """Mean next-token loss over the first ``max_batches`` held-out batches, in stream order."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast_for(device):
        for windows in stream.sequential(batch_size, limit=batch_size * max_batches):
            w = torch.from_numpy(windows).to(device)
            total += float(model(w[:, :-1], w[:, 1:])) * len(w)
            count += len(w)
    return total / max(count, 1)


def benchmark_name(path: str | Path) -> str:
    name = fs.name(path)
    return name[:-len(".jsonl")] if name.endswith(".jsonl") else Path(name).stem
