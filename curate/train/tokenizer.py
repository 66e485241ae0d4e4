"""Tokenizers: train a byte-level BPE, load any ``tokenizer.json`` only after checking its sha256.

:func:`train_tokenizer` trains a byte-level BPE (GPT-2 style, Radford et al. 2019) with Hugging
Face ``tokenizers`` on a seeded sample of a corpus (:func:`sample_texts`) and writes
``tokenizer.json`` plus a ``.sha256`` sidecar. :func:`load_tokenizer` is the one loader used by
token budgets, mixtures, token shards and evaluation: it refuses a file without a matching sidecar.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from curate.core import CurateError
from curate.integrity import atomic_file, verify_file, write_sidecar
from curate.train.sampling import seeded_hash64

EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
_LOADED: dict[tuple[str, str], object] = {}  # (path, sha256) -> Tokenizer


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
                    min_frequency: int = 2) -> Path:
    """Train a byte-level BPE tokenizer with ``<|endoftext|>`` as id 0; write JSON + sha256."""
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
    out_path = Path(out_path)
    with atomic_file(out_path) as tmp:
        tok.save(str(tmp))
        write_sidecar(tmp, out_path)
    return out_path


def tokenizer_file(path: str | Path) -> Path:
    """``path`` itself, or the ``tokenizer.json`` inside it when it is a directory."""
    path = Path(path)
    return path / TOKENIZER_FILE if path.is_dir() else path


def load_tokenizer(path: str | Path, *, require_eos: bool = False):
    """Load a ``tokenizers`` ``tokenizer.json`` (or a directory holding one) after checking its
    sha256 sidecar; cached per process and content. ``require_eos``: it must have ``<|endoftext|>``."""
    from tokenizers import Tokenizer

    path = tokenizer_file(path)
    if not path.is_file():
        raise CurateError(f"tokenizer not found: {path} (expected a tokenizers tokenizer.json; "
                          "train one with `curate tokenizer train`)")
    key = (str(path.resolve()), verify_file(path, what="tokenizer"))
    if key not in _LOADED:
        _LOADED[key] = Tokenizer.from_file(str(path))
    tok = _LOADED[key]
    if require_eos and tok.token_to_id(EOS) is None:
        raise CurateError(f"{path} has no {EOS} token; train it with `curate tokenizer train`")
    return tok
