"""Tokenizer training: a byte-level BPE (GPT-2 style, Radford et al. 2019) with Hugging Face
``tokenizers`` on a seeded sample of a corpus (:func:`sample_texts`), written as ``tokenizer.json``
plus a ``.sha256`` sidecar. Loading (hash-checked) is :func:`curate.integrity.load_tokenizer`,
the one loader used by token budgets, mixtures, token shards and evaluation.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from curate.core import CurateError
from curate.integrity import atomic_file, sidecar_path, write_sidecar
from curate.io import fs
from curate.train.sampling import seeded_hash64

EOS = "<|endoftext|>"


def sample_texts(batches: Iterable[list[str]], *, fraction: float = 1.0, max_chars: int | None = None,
                 seed: int = 0) -> Iterator[str]:
    """A deterministic sample: keep text ``i`` when a seeded hash of ``i`` falls under ``fraction``."""
    index, chars = 0, 0
    for batch in batches:
        for text in batch:
            keep = fraction >= 1.0 or seeded_hash64(seed, "tok-sample", index) < fraction * 2**64
            index += 1
            if not keep or not text:
                continue
            if max_chars is not None and chars >= max_chars:
                return
            chars += len(text)
            yield text


def train_tokenizer(texts: Iterable[str], out_path: str | Path, *, vocab_size: int = 8192,
                    min_frequency: int = 2) -> Path | str:
    """Train a byte-level BPE tokenizer with ``<|endoftext|>`` as id 0; write JSON + sha256
    (``out_path`` may be a URI)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise CurateError("vocab_size must be at least 300 (256 byte symbols + merges + EOS)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    if fs.is_remote(out_path):  # saved locally, then the file and its sidecar uploaded
        with tempfile.TemporaryDirectory(prefix="curate-tok-") as tmp:
            local = Path(tmp) / fs.name(out_path)
            tok.save(str(local))
            write_sidecar(local)
            fs.put_file(local, out_path)
            fs.put_file(sidecar_path(local), f"{out_path}.sha256")
        return out_path
    out_path = Path(out_path)
    with atomic_file(out_path) as tmp:
        tok.save(str(tmp))
        write_sidecar(tmp, out_path)
    return out_path
