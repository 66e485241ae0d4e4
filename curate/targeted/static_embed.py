"""Static embeddings: a Model2Vec model distilled locally from a sentence transformer.

Model2Vec (Tulkens & van Dongen 2024, "Model2Vec: Fast State-of-the-Art Static Embeddings")
runs the transformer once per vocabulary token, reduces the token vectors with PCA and weights
them by Zipf-estimated frequency (SIF, Arora et al. 2017). A document's embedding is then the
mean of its tokens' vectors: no attention, no padding, so a CPU embeds thousands of ~4 KB
documents per second instead of tens. For BERT tokenizers the word pieces of each distinct word are
computed once and remembered (:mod:`curate.targeted._word_pieces`): tokenisation, not pooling, is
what limits the speed.

A static model is a directory written by ``curate embed distill`` (``config.json`` with
``"model_type": "model2vec"``, ``model.safetensors``, ``tokenizer.json``) and trusted only through
its ``SHA256SUMS`` manifest, like every Hugging Face model directory curate loads
(:func:`curate.quality.hf_models.verify_model_dir`). Encoding needs numpy, safetensors, tokenizers
and numba only (no torch); distilling needs ``model2vec`` and torch (the ``embed`` extra).
"""
from __future__ import annotations

import functools
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from curate.core import CurateError
from curate.integrity import atomic_dir
from curate.quality.hf_models import verify_model_dir, write_manifest
from curate.targeted._word_pieces import WordPieces, is_bert_wordpiece

STATIC_MODEL_TYPE = "model2vec"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
DEFAULT_MAX_TOKENS = 512  # Model2Vec's own default truncation for encode()
DEFAULT_DROP_TOKENS = r"\[unused\d+\]"  # model2vec's default: BERT's placeholder tokens
DTYPES = ("float16", "float32")
DISTILL_HINT = "install it with `pip install 'curate[embed]'` (or `pip install model2vec skeletoken`)"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the model directory

def is_static_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory whose ``config.json`` names a Model2Vec static model."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == STATIC_MODEL_TYPE
    except (ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class StaticEmbedder:
    """A verified static model: token vectors (SIF weights folded in) and the tokenizer.

    ``max_seq_length`` is the number of tokens ``long_docs: first`` keeps (the same attribute a
    sentence-transformers model has, so the character cap of :mod:`curate.targeted.embedding` applies).
    """

    tokenizer: Any
    vectors: np.ndarray  # (vocabulary, dim) float32
    unknown_id: int  # the unknown token is skipped, as Model2Vec does; -1 when there is none
    max_seq_length: int
    digest: str  # sha256 of the manifest
    word_pieces: Any = None  # a WordPieces memo for BERT tokenizers (the fast path), else None

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, texts: Sequence[str], *, max_tokens: int | None) -> np.ndarray:
        """(n, dim) float32 unit vectors: the normalised mean of each text's token vectors.

        ``max_tokens`` keeps each text's first tokens (None: all). A text without known tokens
        gets the zero vector.
        """
        if self.word_pieces is None:
            ids, lengths = token_ids(self.tokenizer, texts, max_tokens)
            return pooled_unit_vectors(self.vectors, ids, lengths, self.unknown_id)
        from curate.targeted._static_kernels import pooled_word_pieces

        words, counts = self.word_pieces.words_of(texts, max_tokens)
        limit = np.int64(-1 if max_tokens is None else max_tokens)  # -1: never reached
        return pooled_word_pieces(self.vectors, self.word_pieces.pieces, self.word_pieces.starts, words, counts,
                                  limit, np.int64(self.unknown_id))


def token_ids(tokenizer, texts: Sequence[str], max_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(all token ids of all texts, one flat int64 array; tokens per text), without special tokens."""
    encodings = tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
    per_text = [e.ids if max_tokens is None else e.ids[:max_tokens] for e in encodings]
    lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
    flat = np.fromiter(chain.from_iterable(per_text), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def pooled_unit_vectors(vectors: np.ndarray, ids: np.ndarray, lengths: np.ndarray, unknown_id: int) -> np.ndarray:
    """Mean pooling of token vectors, normalised (the mean and the sum have the same direction)."""
    if ids.size and (ids.min() < 0 or ids.max() >= vectors.shape[0]):
        raise CurateError(f"static model: token id {int(ids.max())} outside its {vectors.shape[0]} vectors; "
                          "the tokenizer and model.safetensors do not belong together")
    from curate.targeted._static_kernels import pooled_sums_normalised

    return pooled_sums_normalised(vectors, ids, lengths, np.int64(unknown_id))


def load_static_embedder(model_dir: str | os.PathLike, max_tokens: int = DEFAULT_MAX_TOKENS) -> StaticEmbedder:
    """A static model directory, checked against its ``SHA256SUMS`` and loaded once per process and content."""
    path = Path(model_dir).expanduser().resolve()
    digest = verify_model_dir(path)
    return _load(str(path), digest, max_tokens)


@functools.lru_cache(maxsize=2)  # once per process and content; a worker rarely needs more than one at a time
def _load(path: str, digest: str, max_tokens: int) -> StaticEmbedder:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tensors = load_file(str(Path(path) / WEIGHTS))
    if "embeddings" not in tensors:
        raise CurateError(f"static model {path}: {WEIGHTS} has no 'embeddings' tensor; distil it with "
                          "`curate embed distill`")
    tokenizer = Tokenizer.from_file(str(Path(path) / TOKENIZER))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    vectors = token_vectors(tensors)
    if tokenizer.get_vocab_size() > vectors.shape[0]:
        raise CurateError(f"static model {path}: its tokenizer has {tokenizer.get_vocab_size()} tokens but "
                          f"{WEIGHTS} only {vectors.shape[0]} vectors; they do not belong together")
    memo = WordPieces(tokenizer) if is_bert_wordpiece(tokenizer) else None
    return StaticEmbedder(tokenizer, vectors, _unknown_id(tokenizer), max_tokens, digest, memo)


def token_vectors(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """One float32 row per token id: ``embeddings`` (through ``mapping`` and times ``weights`` when the
    model was vocabulary-quantised), as Model2Vec's encode reads them."""
    vectors = tensors["embeddings"].astype(np.float32)
    if "mapping" in tensors:
        vectors = vectors[tensors["mapping"].astype(np.int64)]
    if "weights" in tensors:
        vectors = vectors * tensors["weights"].astype(np.float32)[:, None]
    return np.ascontiguousarray(vectors)


def _unknown_id(tokenizer) -> int:
    token = getattr(tokenizer.model, "unk_token", None)
    found = tokenizer.token_to_id(token) if token is not None else None
    return -1 if found is None else int(found)


# --------------------------------------------------------------------------- distillation

@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """CPU matrix products summed in one fixed order: the same bytes on every machine and run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def distill_static_model(source_dir: str | os.PathLike, output: str | os.PathLike, *, pca_dims: int | None = 256,
                         sif_coefficient: float | None = 1e-4, drop_tokens: str | None = DEFAULT_DROP_TOKENS,
                         dtype: str = "float16") -> dict:
    """Distil the verified sentence-transformers directory ``source_dir`` into a static model at ``output``
    (Model2Vec's ``distill_from_model``: every vocabulary token through the transformer, mean pooling,
    PCA to ``pca_dims``, SIF weights), then write its ``SHA256SUMS``. Offline and deterministic
    (one torch thread). ``drop_tokens``: a regex of vocabulary tokens to leave out. Returns a summary.
    """
    if dtype not in DTYPES:
        raise CurateError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    if pca_dims is not None and pca_dims < 1:
        raise CurateError(f"pca_dims must be >= 1 (or none), got {pca_dims}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from model2vec.distill import distill_from_model
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise CurateError(f"model2vec is not installed; {DISTILL_HINT}") from None
    model = AutoModel.from_pretrained(str(source_dir), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source_dir), local_files_only=True, use_fast=True)
    log.info("distilling %s: %d vocabulary tokens through the transformer", source_dir, len(tokenizer))
    with _one_torch_thread():
        static = distill_from_model(model, tokenizer, device="cpu", pca_dims=pca_dims,
                                    sif_coefficient=sif_coefficient, token_remove_pattern=drop_tokens,
                                    quantize_to=dtype)
    static.base_model_name = Path(source_dir).name  # no absolute path of this machine in the model card
    static.config["tokenizer_name"] = Path(source_dir).name
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(output) as tmp:
        static.save_pretrained(str(tmp), model_name=output.name)  # the card names the final directory
        manifest = write_manifest(tmp)
    vocabulary, dim = static.embedding.shape
    return {"output": str(output), "vocabulary": int(vocabulary), "dim": int(dim), "dtype": dtype,
            "pca_dims": pca_dims, "sif_coefficient": sif_coefficient, "manifest_sha256": manifest}
