"""Helpers shared by several test modules (tests import these, never each other).

Fixtures live in conftest.py files; this module holds plain functions and constants. Heavy
libraries (torch, transformers, fastText) are imported inside the functions that need them.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


# ------------------------------------------------------------------------------ files and runs


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """Read a (possibly gzipped) JSONL file, at most ``limit`` records."""
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def tamper(path: Path) -> None:
    """Flip the last byte in place (same size; the sidecar is left as it was)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every data file under ``root`` (not manifests, whose timings differ, nor the
    run's lease records)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "_manifest.json"
            and "_builtin" not in p.parts and "_lease" not in p.parts}


def manifests(output: Path) -> dict[str, dict]:
    """Step directory name → its ``_manifest.json`` (the ``_``-prefixed side directories left out)."""
    return {d.name: json.loads((d / "_manifest.json").read_text()) for d in sorted(Path(output).iterdir())
            if (d / "_manifest.json").is_file() and not d.name.startswith("_")}


def shard_hashes(manifest: dict) -> dict[str, list[tuple[str, int, str]]]:
    """Output name → (file, rows, sha256) of each shard, quarantine left out."""
    return {name: [(s["file"], s["rows"], s["sha256"]) for s in entry.get("shards", [])]
            for name, entry in manifest["outputs"].items() if name != "quarantine"}


# ------------------------------------------------------------------------------ filter material

SENTENCES = [
    "The river runs through the old town and past the market where farmers sell fresh bread.",
    "Children walk to school along the water with their friends every morning.",
    "In the evening the lights of the cafes shine on the stones of the bridge.",
    "Visitors often say that the place has a calm and friendly character.",
    "Local history is kept alive by a small museum near the main square.",
    "Many families have lived here for generations and they care for the streets.",
]
PROSE = " ".join(SENTENCES)  # one line, 81 words: passes every heuristic filter
LINES = "\n".join(SENTENCES)  # the same, one sentence per line
LONG_LINE = "Every summer the whole village gathers by the lake to share food, music and long stories together."
FILLER = [f"item{i}" for i in range(300)]

# ISO 639-3 (UDHR file names) -> the ISO 639-1 labels lid.176 uses.
LID_LANGUAGES = {"eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "nld": "nl",
                 "pol": "pl", "rus": "ru", "tur": "tr", "swe": "sv"}
UDHR = SHARED_DATA / "multilingual" / "udhr.jsonl"
_LID_CACHE: dict[str, tuple[Path, dict]] = {}


def spaced(phrase: str, times: int) -> str:
    """``phrase`` repeated ``times`` times, each followed by a distinct filler word."""
    return " ".join(f"{phrase} {FILLER[i]}" for i in range(times))


def udhr_examples() -> list[tuple[str, str]]:
    """(language, text) pairs for the LID languages from the shared UDHR file."""
    out = []
    for record in read_jsonl(UDHR):
        code = LID_LANGUAGES.get(record["meta"]["lang"])
        if code:
            out.append((code, record["text"]))
    return out


def lid_model(directory: Path) -> tuple[Path, dict]:
    """Train (once per test process) a small fastText LID model on UDHR text; returns (path, report)."""
    if "model" not in _LID_CACHE:
        from curate.commands.langid import train_langid

        out = directory / "lid.bin"
        report = train_langid(udhr_examples(), out, bucket=100_000, seed=1, valid_fraction=0.2)
        _LID_CACHE["model"] = (out, report)
    return _LID_CACHE["model"]


def configured_filters(directory: Path) -> dict:
    """One runnable instance of every registered filter (files written under ``directory``)."""
    import filters

    directory.mkdir(parents=True, exist_ok=True)
    domains = directory / "domains.txt"
    domains.write_text("# blocked domains\nbad.example\nspam.test\n", encoding="utf-8")
    substrings = directory / "substrings.txt"
    substrings.write_text("casino\n/ads/\n", encoding="utf-8")
    special = {
        "url_blocklist": {"domains_file": str(domains), "substrings_file": str(substrings)},
        "pii": {"phones": True},
    }
    names = list(filters.registry())
    if UDHR.is_file():
        special["lang_id"] = {"model": str(lid_model(directory)[0])}
    else:  # no shared data: lang_id cannot get a model
        names.remove("lang_id")
    out = {}
    for name in names:
        flt = filters.build(name, special.get(name, {}))
        flt.setup()
        out[name] = flt
    return out


# ------------------------------------------------------------------------------ tiny language models

LM_CONTEXT = 64
LM_SPECIAL = "<|endoftext|>"


def train_tokenizer(texts: list[str], out_dir: Path, vocab_size: int = 400):
    """A byte-level BPE tokenizer trained offline on ``texts``, saved in HF format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[LM_SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=LM_SPECIAL, eos_token=LM_SPECIAL,
                                   model_max_length=LM_CONTEXT)
    fast.save_pretrained(out_dir)
    return fast


def save_tiny_lm(tokenizer, texts: list[str], out_dir: Path, *, steps: int, seed: int = 0):
    """A 1-layer GPT-2 (n_embd 32) trained ``steps`` Adam steps on windows of ``texts``; saved as safetensors."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from curate.integrity import write_sidecar
    from curate.pplcorr.lossmatrix import encode

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=LM_CONTEXT, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    stream = torch.tensor([i for t in texts for i in encode(tokenizer, t)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - LM_CONTEXT, (16,), generator=gen)
        batch = torch.stack([stream[s:s + LM_CONTEXT] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    for weights in Path(out_dir).glob("*.safetensors"):
        write_sidecar(weights)
    return out_dir


# ------------------------------------------------------------------------------ training configs


def tiny_train_config(corpus: dict, out: Path, **optim):
    """A 2-layer, d_model 32 GPT config on ``corpus["shards"]`` (8 steps unless ``optim`` says otherwise)."""
    from curate.train.config import TrainConfig

    return TrainConfig(out=str(out), device="cpu", cpu_threads=1).replace(
        model={"n_layer": 2, "n_head": 2, "d_model": 32, "context": 32},
        optim={"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2, "max_steps": 8, **optim},
        batch={"micro_batch": 4, "grad_accum": 2},
        data={"shards": str(corpus["shards"]), "prefetch": 1},
        log={"every": 1, "progress": False})


# ------------------------------------------------------------------------------ synthetic kNN data


def synthetic_embeddings(ids, dim: int = 32, *, topics: int = 1000, spread: float = 0.35, seed: int = 0):
    """Deterministic clustered unit vectors for tests and benchmarks: row ``i`` depends only on
    ``ids[i]`` (integer ids), ``topics`` Gaussian clusters on the sphere."""
    import numpy as np

    from curate.order.knn import l2_normalize

    ids = np.asarray(ids, dtype=np.uint64)
    centres = np.random.default_rng(seed).normal(size=(topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topic = synthetic_topics(ids, topics=topics, seed=seed)
    lanes = ids[:, None] * np.uint64(dim) + np.arange(dim, dtype=np.uint64)[None, :]
    u1 = (_mix(lanes, seed + 1) >> np.uint64(11)).astype(np.float64) / 2.0**53
    u2 = (_mix(lanes, seed + 2) >> np.uint64(11)).astype(np.float64) / 2.0**53
    noise = np.sqrt(-2 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)  # Box-Muller
    return l2_normalize(centres[topic] + spread * noise.astype(np.float32) / np.sqrt(dim))


def synthetic_topics(ids, *, topics: int = 1000, seed: int = 0):
    """The cluster of each id in :func:`synthetic_embeddings` (a label for tests)."""
    import numpy as np

    return (_mix(np.asarray(ids, dtype=np.uint64), seed) % np.uint64(topics)).astype(np.int64)


def _mix(values, seed: int):
    """splitmix64 of ``values + seed``: a fast, well-spread integer hash."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
