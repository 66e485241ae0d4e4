"""Hugging Face sequence classifiers and regressors as a :class:`curate.core.Scorer` (the library
behind the ``hf_classify`` stage and the ``{hf_classify: ...}`` entry of ``score``).

Model-based quality and domain scores beyond fastText: FineWeb-Edu's educational-value regressor
(Penedo et al. 2024), WebOrganizer's topic/format classifiers (Wettig et al. 2025) and
Nemotron-CC's quality classifiers (Su et al. 2024) are all ``*ForSequenceClassification``
models. Any such model directory is scored in one Spark pass through the Scorer adapter
(:func:`curate.quality.columns.append_scores`), one model load per Python worker.

A model directory is trusted only through its manifest ``SHA256SUMS`` (``sha256sum`` format,
written by ``curate classifier hash DIR``): every file in the directory must be listed and match,
weights must be safetensors, and no remote code is ever run (``trust_remote_code=False``).

Besides standard HF classifiers, a directory written by ``curate classifier train --kind
embedding-head`` (``curate_head.json``: a frozen encoder, mean pooling, L2 norm, then a
linear or MLP head in ``head.safetensors``) is scored the same way.

Output struct ``<name>``: ``score`` (P(positive label), the expected label value for numeric
class names, or the regression value), ``label`` (the arg-max class; null for regression) and
``probs`` (per-class probabilities in the model's label order; empty for regression).
Texts are cut to the model window: the first window (``long_docs: first``) or the mean of the
per-window probabilities / values over all windows (``long_docs: mean``).

Every forward pass has a fixed shape, ``(rows, width)``: a window's width is its own token count
rounded up to a bucket (:func:`bucket_width`), the rows a function of that width
(:func:`rows_per_pass`); windows are grouped by width, a short last pass is filled with copies of
its last row, and results are put back in input order. A window's scores
are so a function of the window alone, not of which documents share its Arrow batch: the same bytes
whatever the partitioning (on CPU; checked by tests/quality/test_hf_classify.py).
"""
from __future__ import annotations

import functools
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from curate.core import TEXT, CurateError
from curate.integrity import is_uri, sha256_file, verify_digest, write_text_atomic

MANIFEST = "SHA256SUMS"
HEAD_CONFIG = "curate_head.json"
HEAD_WEIGHTS = "head.safetensors"
LONG_DOCS = ("first", "mean")
LAYOUTS = ("fixed", "sorted", "input")  # batch layouts of run_windows; only "fixed" is partition-independent
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
CHARS_PER_TOKEN_CAP = 64  # "first" never needs more characters than this per window token
CPU_TOKENS_PER_PASS = 512  # on a CPU core, larger forward passes are no faster per token (docs/hf_classify.md)
EMBEDDING = "embedding"  # an encoder without a head: forward() gives the pooled vectors
FIELDS = {"score": "double", "label": "string", "probs": "array<float>"}


# --------------------------------------------------------------------------- the manifest

def model_files(model_dir: Path) -> list[str]:
    """Every regular file of ``model_dir`` (relative POSIX paths), except the manifest itself
    and ``*.sha256`` sidecars."""
    return sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")
                  if p.is_file() and p.name != MANIFEST and not p.name.endswith(".sha256"))


def write_manifest(model_dir: str | Path) -> str:
    """Hash every file of ``model_dir`` into ``SHA256SUMS``; return the manifest's own sha256."""
    model_dir = Path(model_dir)
    lines = [f"{sha256_file(model_dir / rel)}  {rel}\n" for rel in model_files(model_dir)]
    write_text_atomic(model_dir / MANIFEST, "".join(lines))
    return sha256_file(model_dir / MANIFEST)


def verify_model_dir(model_dir: str | Path) -> str:
    """Check every file of ``model_dir`` against ``SHA256SUMS``; return the manifest's sha256.

    Refused (CurateError): no manifest, a listed file missing or different, a file not listed,
    no safetensors weights (pickle weights are never loaded).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CurateError(f"hf_classify: model directory not found: {model_dir}")
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        raise CurateError(f"model directory {model_dir} has no {MANIFEST}; once you trust its files, "
                          f"create it with `curate classifier hash {model_dir}`")
    listed = _read_manifest(manifest)
    unlisted = sorted(set(model_files(model_dir)) - set(listed))
    if unlisted:
        raise CurateError(f"model directory {model_dir}: {', '.join(unlisted[:3])} not listed in {MANIFEST}; "
                          "refusing to load (re-hash the directory only if you trust the new files)")
    for rel, digest in listed.items():
        path = model_dir / rel
        if not path.is_file():
            raise CurateError(f"model directory {model_dir}: {rel} is listed in {MANIFEST} but missing")
        verify_digest(path, digest, what="model file", source=MANIFEST)
    if not any(rel.endswith(".safetensors") for rel in listed):
        pickled = [rel for rel in listed if rel.endswith(PICKLE_WEIGHTS)]
        what = f"only pickle weights ({', '.join(pickled[:3])})" if pickled else "no weights"
        raise CurateError(f"model directory {model_dir} has {what}; convert it to safetensors")
    return sha256_file(manifest)


def _read_manifest(manifest: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, rel = line.partition("  ")
        rel = rel.strip().removeprefix("*")
        if len(digest) != 64 or not rel or ".." in Path(rel).parts or Path(rel).is_absolute():
            raise CurateError(f"{manifest}:{n}: expected '<sha256>  <relative path>'")
        entries[rel] = digest.lower()
    return entries


# --------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready to score: ``forward(ids, mask) -> logits`` (float32 NumPy)."""

    model: Any
    tokenizer: Any
    task: str  # "classification", "multi_label", "regression" or "embedding" (a bare encoder)
    labels: tuple[str, ...]
    max_length: int
    device: str
    digest: str
    head: dict | None = None  # embedding head tensors (curate_head.json models)

    @property
    def window(self) -> int:
        """Tokens of text per window (the model window minus the special tokens)."""
        return max(1, self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False))

    def forward(self, input_ids, attention_mask) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self.head is None and self.task != EMBEDDING:
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            else:
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                logits = mean_pool(hidden, attention_mask)
                logits = logits if self.head is None else head_logits(logits, self.head)
            return logits.float().cpu().numpy()


def mean_pool(hidden, attention_mask):
    """Mean of the token vectors under the mask, L2-normalised (sentence-transformers' MiniLM pooling)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)


def head_logits(x, tensors: dict):
    """A linear head (``weight``, ``bias``) or a one-hidden-layer ReLU MLP (``hidden.*``, ``out.*``)."""
    import torch

    if "hidden.weight" in tensors:
        x = torch.relu(x @ tensors["hidden.weight"].T + tensors["hidden.bias"])
        return x @ tensors["out.weight"].T + tensors["out.bias"]
    return x @ tensors["weight"].T + tensors["bias"]


def resolve_device(device: str | None) -> str:
    """``device`` or, when None: the GPU Spark assigned to this task (``spark.task.resource.gpu.amount``),
    else ``cuda`` when available, else ``cpu``."""
    import torch

    if device:
        return device
    if not torch.cuda.is_available():
        return "cpu"
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        gpus = ctx.resources().get("gpu") if ctx is not None else None
        if gpus is not None and gpus.addresses:
            return f"cuda:{gpus.addresses[0]}"
    except ImportError:
        pass
    return "cuda"


def torch_dtype(precision: str, device: str):
    """float32 on CPU; bfloat16 on a GPU that supports it (``auto``), else float16."""
    import torch

    if precision not in PRECISIONS:
        raise CurateError(f"hf_classify: precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, precision)


def load_model(model_dir: str | Path, *, device: str | None = None, precision: str = "auto",
               max_length: int | None = None) -> LoadedModel:
    """A verified model directory, loaded once per process, device and precision; offline, eval mode."""
    if is_uri(model_dir):
        raise CurateError(f"hf_classify needs a local model directory, got {model_dir}; copy it to local disk")
    path = Path(model_dir).expanduser().resolve()
    digest = verify_model_dir(path)
    resolved = resolve_device(device)
    return _load(str(path), digest, resolved, precision, max_length)


@functools.lru_cache(maxsize=4)
def _load(path: str, digest: str, device: str, precision: str, max_length: int | None) -> LoadedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise CurateError("transformers is not installed; install it with `pip install 'curate[hf]'`") from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    dtype = torch_dtype(precision, device)
    common = {"local_files_only": True, "trust_remote_code": False, "use_safetensors": True, "dtype": dtype}
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    head_file = Path(path) / HEAD_CONFIG
    head = None
    if head_file.is_file():
        spec = json.loads(head_file.read_text(encoding="utf-8"))
        model = AutoModel.from_pretrained(path, **common)
        head = _load_head(Path(path) / HEAD_WEIGHTS, device)
        task, labels = spec["task"], tuple(spec.get("labels", ()))
        window = int(spec["max_length"])
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, **common)
        task, labels = _task_of(model.config)
        window = _model_window(model.config, tokenizer)
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        raise CurateError(f"hf_classify: the tokenizer of {path} has no padding token")
    window = min(window, max_length) if max_length else window
    return LoadedModel(model, tokenizer, task, labels, window, device, digest, head)


def load_encoder(model_dir: str | Path, digest: str, *, device: str | None = None,
                 precision: str = "auto") -> LoadedModel:
    """A sentence encoder (``AutoModel`` + mean pooling + L2 norm, as sentence-transformers' MiniLM)
    from a directory the caller has already verified (``digest`` names that check); its window is
    ``max_seq_length`` of ``sentence_bert_config.json`` when present."""
    return _load_encoder(str(Path(model_dir).resolve()), digest, resolve_device(device), precision)


@functools.lru_cache(maxsize=2)
def _load_encoder(path: str, digest: str, device: str, precision: str) -> LoadedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    model = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False, use_safetensors=True,
                                      dtype=torch_dtype(precision, device)).to(device).eval()
    st_config = Path(path) / "sentence_bert_config.json"
    window = (int(json.loads(st_config.read_text())["max_seq_length"]) if st_config.is_file()
              else _model_window(model.config, tokenizer))
    return LoadedModel(model, tokenizer, EMBEDDING, (), window, device, digest)


def encode_texts(texts: Sequence[str | None], loaded: LoadedModel, *, batch_size: int = 64) -> np.ndarray:
    """(n, dim) float32 unit vectors of the first window of each text (an ``embedding`` model)."""
    texts = ["" if t is None else str(t) for t in texts]
    pieces, _ = windows_of(texts, loaded, "first")
    return run_windows(pieces, loaded, batch_size)


def _load_head(path: Path, device: str) -> dict:
    from safetensors.torch import load_file

    return {k: v.float().to(device) for k, v in load_file(str(path)).items()}


def _task_of(config) -> tuple[str, tuple[str, ...]]:
    if config.num_labels == 1 or config.problem_type == "regression":
        return "regression", ()
    labels = tuple(str(config.id2label[i]) for i in range(config.num_labels))
    return ("multi_label" if config.problem_type == "multi_label_classification" else "classification"), labels


def _model_window(config, tokenizer) -> int:
    limits = [int(v) for v in (tokenizer.model_max_length, getattr(config, "max_position_embeddings", None))
              if v is not None and v < 1_000_000]
    if not limits:
        raise CurateError("hf_classify: neither the tokenizer nor the config gives a maximum sequence length; "
                          "pass max_length")
    offset = 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
    return min(limits[0], *(x - offset for x in limits[1:])) if len(limits) > 1 else limits[0]


# --------------------------------------------------------------------------- scoring

def windows_of(texts: Sequence[str], loaded: LoadedModel, long_docs: str) -> tuple[list[list[int]], list[int]]:
    """Token windows (special tokens added, at most ``max_length`` each) and, for each, the index of
    its text: the first window of each text, or all of them (the tokenizer's overflowing windows)."""
    cap = loaded.window * CHARS_PER_TOKEN_CAP if long_docs == "first" else None
    capped = [t[:cap] if cap else t for t in texts]
    mean = long_docs == "mean"
    encoded = loaded.tokenizer(capped, truncation=True, max_length=loaded.max_length, stride=0,
                               return_overflowing_tokens=mean, verbose=False)
    owner = list(encoded["overflow_to_sample_mapping"]) if mean else list(range(len(texts)))
    return list(encoded["input_ids"]), owner


def bucket_width(n_tokens: int, max_length: int) -> int:
    """The padded width of a window of ``n_tokens``: rounded up to a multiple of 8 up to 64 tokens,
    then of 16 up to 128, 32 up to 256, 64 up to 512 … (8 buckets per doubling, ~8% padding on
    average), at most ``max_length``. It depends on the window alone."""
    step = max(8, 1 << max(0, (n_tokens - 1).bit_length() - 3))
    return min(max_length, -(-n_tokens // step) * step)


def rows_per_pass(width: int, batch_size: int, device: str) -> int:
    """Windows per forward pass of ``width``: ``batch_size`` on a GPU; on the CPU at most
    :data:`CPU_TOKENS_PER_PASS` tokens (so a short last batch costs little), at least one row."""
    return batch_size if device != "cpu" else max(1, min(batch_size, CPU_TOKENS_PER_PASS // width))


def run_windows(pieces: list[list[int]], loaded: LoadedModel, batch_size: int, *, layout: str = "fixed") -> np.ndarray:
    """Logits (n_windows, n_outputs) float32 in input order, one forward pass per :func:`pass_plan` entry."""
    if layout not in LAYOUTS:
        raise CurateError(f"hf_classify: layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
    out: np.ndarray | None = None
    plan = pass_plan([len(p) for p in pieces], loaded.max_length, batch_size, loaded.device, layout)
    for chunk, width, rows in plan:
        ids, mask = padded_pass(pieces, chunk, width, rows, loaded.tokenizer.pad_token_id)
        logits = loaded.forward(ids.to(loaded.device), mask.to(loaded.device))
        if out is None:
            out = np.zeros((len(pieces), logits.shape[1]), dtype=np.float32)
        out[chunk] = logits[:len(chunk)]
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def pass_plan(lengths: list[int], max_length: int, batch_size: int, device: str,
              layout: str = "fixed") -> list[tuple[list[int], int, int]]:
    """``(windows, width, rows)`` of each forward pass over windows of ``lengths`` tokens.

    ``layout``: ``fixed`` (the default): every pass is ``(rows, width)``, both functions of the width
    alone (windows grouped by :func:`bucket_width`, in input order within a bucket, passes of
    :func:`rows_per_pass` windows; a short last pass is to be filled with copies, see
    :func:`padded_pass`), so a window's logits do not depend on the other windows passed with it.
    ``sorted``: batches of windows sorted by length, padded to the longest (least padding, but the
    shapes, and so the last bits, depend on the neighbours); ``input``: batches in input order.
    """
    n = len(lengths)
    if layout != "fixed":
        order = sorted(range(n), key=lengths.__getitem__) if layout == "sorted" else list(range(n))
        chunks = [order[start:start + batch_size] for start in range(0, n, batch_size)]
        return [(chunk, max(lengths[i] for i in chunk), len(chunk)) for chunk in chunks]
    widths = [bucket_width(k, max_length) for k in lengths]
    passes = []
    for width, group in itertools.groupby(sorted(range(n), key=widths.__getitem__), key=widths.__getitem__):
        bucket, rows = list(group), rows_per_pass(width, batch_size, device)  # stable: input order in a bucket
        passes += [(bucket[start:start + rows], width, rows) for start in range(0, len(bucket), rows)]
    return passes


def padded_pass(pieces: list[list[int]], windows: list[int], width: int, rows: int, pad_id: int):
    """CPU ``(input_ids, attention_mask)`` of one ``(rows, width)`` pass over ``windows`` (indices
    into ``pieces``); rows beyond them repeat the last window."""
    import torch

    filled = windows + [windows[-1]] * (rows - len(windows))
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for row, i in enumerate(filled):
        ids[row, :len(pieces[i])] = torch.tensor(pieces[i], dtype=torch.long)
        mask[row, :len(pieces[i])] = 1
    return ids, mask


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax (one label per text), sigmoid (multi-label), identity (regression); float64."""
    logits = logits.astype(np.float64)
    if task == "regression":
        return logits
    if task == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def positive_index(labels: Sequence[str], positive: str | None) -> int | None:
    """Index of the ``positive`` label; default: the second of two labels; None: expected value or max."""
    if positive is not None:
        if positive not in labels:
            raise CurateError(f"hf_classify: positive label '{positive}' is not a label of the model; "
                              f"its labels: {', '.join(labels)}")
        return list(labels).index(positive)
    return 1 if len(labels) == 2 else None


def numeric_labels(labels: Sequence[str]) -> np.ndarray | None:
    try:
        return np.asarray([float(label) for label in labels], dtype=np.float64)
    except ValueError:
        return None


def classify_texts(texts: Sequence[str | None], loaded: LoadedModel, *, positive: str | None = None,
                   batch_size: int = 32, long_docs: str = "first", layout: str = "fixed") -> dict:
    """``{"score", "label", "probs"}`` for ``texts`` (see the module docstring); ``layout``: see
    :func:`run_windows`."""
    if long_docs not in LONG_DOCS:
        raise CurateError(f"hf_classify: long_docs must be one of {', '.join(LONG_DOCS)}, got '{long_docs}'")
    texts = ["" if t is None else str(t) for t in texts]
    n = len(texts)
    width = len(loaded.labels)
    if n == 0:
        return {"score": np.zeros(0), "label": [], "probs": np.zeros((0, width), np.float32)}
    pieces, owner = windows_of(texts, loaded, long_docs)
    per_window = probabilities(run_windows(pieces, loaded, batch_size, layout=layout), loaded.task)
    sums = np.zeros((n, per_window.shape[1]), dtype=np.float64)
    np.add.at(sums, np.asarray(owner, dtype=np.int64), per_window)
    per_text = sums / np.bincount(owner, minlength=n)[:, None]
    if loaded.task == "regression":
        return {"score": per_text[:, 0], "label": [None] * n, "probs": np.zeros((n, 0), np.float32)}
    index = positive_index(loaded.labels, positive)
    values = numeric_labels(loaded.labels)
    if index is not None:
        score = per_text[:, index]
    elif values is not None:
        score = per_text @ values  # e.g. classes "0".."5": the expected score
    else:
        score = per_text.max(axis=1)
    best = per_text.argmax(axis=1)
    return {"score": score, "label": [loaded.labels[b] for b in best], "probs": per_text.astype(np.float32)}


@dataclass(frozen=True)
class HFClassifier:
    """A :class:`curate.core.Scorer` writing the struct ``name`` (``score``, ``label``, ``probs``)."""

    model: str
    name: str = "hf_classify"
    positive: str | None = None
    batch_size: int = 32
    long_docs: str = "first"
    max_length: int | None = None
    device: str | None = None
    precision: str = "auto"

    fields: ClassVar[dict[str, str]] = FIELDS
    inputs: ClassVar[tuple[str, ...]] = (TEXT,)

    def load(self) -> LoadedModel:
        return load_model(self.model, device=self.device, precision=self.precision, max_length=self.max_length)

    def setup(self) -> None:
        loaded = self.load()
        if loaded.task != "regression":
            positive_index(loaded.labels, self.positive)

    def score_batch(self, texts: list[str], **_columns: list) -> dict:
        return classify_texts(texts, self.load(), positive=self.positive, batch_size=self.batch_size,
                              long_docs=self.long_docs)


def hf_scorer(model: str, **options: Any) -> HFClassifier:
    """A checked :class:`HFClassifier` (options validated, model verified and loaded on the driver)."""
    scorer = HFClassifier(str(model), **options)
    if not isinstance(scorer.batch_size, int) or scorer.batch_size < 1:
        raise CurateError(f"hf_classify: batch_size must be an integer >= 1, got {scorer.batch_size!r}")
    if scorer.long_docs not in LONG_DOCS:
        raise CurateError(f"hf_classify: long_docs must be one of {', '.join(LONG_DOCS)}, got '{scorer.long_docs}'")
    if scorer.max_length is not None and (not isinstance(scorer.max_length, int) or scorer.max_length < 2):
        raise CurateError(f"hf_classify: max_length must be an integer >= 2, got {scorer.max_length!r}")
    torch_dtype(scorer.precision, "cpu")
    scorer.setup()
    return scorer
