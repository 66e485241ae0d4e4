"""Token shards: what the training loop reads (tokenizers: :mod:`curate.train.tokenizer`).

- :func:`write_token_shards` encodes documents in mixture order, appends EOS after each,
  and writes flat ``uint16``/``uint32`` arrays (``shard-NNNNN.bin``) with document offsets
  (``shard-NNNNN.idx.npy``, int64, ``documents + 1`` entries), both memory-mappable, and a
  ``_manifest.json`` with tokens, documents and sha256 per shard. Shards end at document
  boundaries. :class:`TokenShards` reads them back as one token stream.
- :func:`tokenize_spark` is the same for large mixtures: one Spark task per shard of
  consecutive mixture positions, the same token stream.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from curate.core import CurateError
from curate.integrity import (
    TOKENIZER_FILE,
    atomic_dir,
    atomic_file,
    load_tokenizer,
    sha256_file,
    tokenizer_file,
    write_sidecar,
)
from curate.train.tokenizer import EOS

MANIFEST = "_manifest.json"


# --------------------------------------------------------------------------- shards


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_documents(tok, texts: list[str], eos_id: int, dtype: np.dtype) -> list[np.ndarray]:
    """Token arrays of ``texts``, each followed by EOS."""
    return [np.array(e.ids + [eos_id], dtype=dtype) for e in tok.encode_batch(texts)]


def write_shard(out_dir: Path, index: int, docs: list[np.ndarray], dtype: np.dtype) -> dict:
    """Write ``shard-<index>.bin`` (the documents back to back) and its offsets; return its entry.

    Files are written under temporary names and renamed, so a retried or speculative Spark task
    never leaves a torn shard.
    """
    name = f"shard-{index:05d}"
    tokens = np.concatenate(docs).astype(dtype, copy=False) if docs else np.zeros(0, dtype)
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    for suffix, write in ((".bin", tokens.tofile), (".idx.npy", lambda f: np.save(f, offsets))):
        with atomic_file(out_dir / f"{name}{suffix}") as tmp, open(tmp, "wb") as fh:
            write(fh)
    return {"file": f"{name}.bin", "offsets": f"{name}.idx.npy", "tokens": int(len(tokens)),
            "documents": len(docs), "sha256": sha256_file(out_dir / f"{name}.bin"),
            "offsets_sha256": sha256_file(out_dir / f"{name}.idx.npy")}


class _ShardWriter:
    """Accumulates documents and writes a shard each time ``shard_tokens`` is reached."""

    def __init__(self, out_dir: Path, dtype: np.dtype, shard_tokens: int):
        self.out_dir, self.dtype, self.shard_tokens = out_dir, dtype, shard_tokens
        self.docs: list[np.ndarray] = []
        self.pending = 0
        self.shards: list[dict] = []

    def add(self, doc: np.ndarray) -> None:
        self.docs.append(doc)
        self.pending += len(doc)
        if self.pending >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if self.docs:
            self.shards.append(write_shard(self.out_dir, len(self.shards), self.docs, self.dtype))
            self.docs, self.pending = [], 0


def write_token_shards(batches: Iterable[list[str]], tokenizer_path: str | Path, out_dir: str | Path, *,
                       shard_tokens: int = 1 << 26, source: str = "", overwrite: bool = False) -> dict:
    """Encode text batches (in order) into token shards under ``out_dir`` atomically; return the manifest."""
    out_dir = Path(out_dir)
    tok, tok_file = _prepare(tokenizer_path, out_dir, overwrite)
    eos_id, dtype = tok.token_to_id(EOS), token_dtype(tok.get_vocab_size())
    with atomic_dir(out_dir) as tmp:
        writer = _ShardWriter(tmp, dtype, shard_tokens)
        for texts in batches:
            for doc in encode_documents(tok, [t or "" for t in texts], eos_id, dtype):
                writer.add(doc)
        writer.flush()
        return _finish(tmp, writer.shards, tok, tok_file, source)


def _prepare(tokenizer_path: str | Path, out_dir: Path, overwrite: bool):
    """Check the output may be (re)written; load the verified tokenizer."""
    if out_dir.exists() and not overwrite:
        raise CurateError(f"{out_dir} exists; pass --force to rewrite the token shards")
    return load_tokenizer(tokenizer_path, required_token=EOS), tokenizer_file(tokenizer_path)


def _finish(tmp: Path, shards: list[dict], tok, tok_file: Path, source: str) -> dict:
    """Copy the tokenizer in and write the manifest (the caller renames the directory into place)."""
    shutil.copyfile(tok_file, tmp / TOKENIZER_FILE)
    tok_sha256 = write_sidecar(tmp / TOKENIZER_FILE)
    manifest = {
        "kind": "token_shards", "source": source, "dtype": token_dtype(tok.get_vocab_size()).name,
        "tokenizer": {"file": TOKENIZER_FILE, "sha256": tok_sha256,
                      "vocab_size": tok.get_vocab_size(), "eos_id": tok.token_to_id(EOS)},
        "tokens": sum(s["tokens"] for s in shards),
        "documents": sum(s["documents"] for s in shards),
        "shards": shards,
    }
    manifest["fingerprint"] = fingerprint(manifest)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def tokenize_spark(spark, mixture_dir: str | Path, tokenizer_path: str | Path, out_dir: str | Path, *,
                   docs_per_shard: int = 20_000, overwrite: bool = False) -> dict:
    """The Spark path of :func:`write_token_shards` for large mixtures.

    Shard ``k`` holds mixture positions ``[k·docs_per_shard, (k+1)·docs_per_shard)``; each is
    encoded and written by one task (``applyInPandas``) straight into the output directory
    (which must be on a filesystem the executors share). Only one summary row per shard comes
    back to the driver. The token stream equals the single-process one.
    """
    mixture_dir, out_dir = Path(mixture_dir), Path(out_dir)
    data = mixture_dir / "data"
    if not data.is_dir() or not list(data.glob("part-*.parquet")):
        raise CurateError(f"{mixture_dir} is not a `curate mix` output (data/part-*.parquet missing)")
    tok, tok_file = _prepare(tokenizer_path, out_dir, overwrite)
    with atomic_dir(out_dir) as tmp:
        shards = _spark_shards(spark, mixture_dir, data, tok, str(tmp), docs_per_shard)
        return _finish(tmp, shards, tok, tok_file, str(mixture_dir))


def _spark_shards(spark, mixture_dir: Path, data: Path, tok, target: str, docs_per_shard: int) -> list[dict]:
    """Write every shard from a Spark task into ``target``; return their entries in order."""
    import pandas as pd
    from pyspark.sql import functions as F

    tok_json, eos_id = tok.to_str(), tok.token_to_id(EOS)
    dtype = token_dtype(tok.get_vocab_size())

    def write_group(pdf: pd.DataFrame) -> pd.DataFrame:
        from tokenizers import Tokenizer

        pdf = pdf.sort_values("position")
        worker_tok = Tokenizer.from_str(tok_json)
        docs = encode_documents(worker_tok, [t or "" for t in pdf["text"]], eos_id, dtype)
        entry = write_shard(Path(target), int(pdf["shard"].iloc[0]), docs, dtype)
        return pd.DataFrame([{"shard": int(pdf["shard"].iloc[0]), "entry": json.dumps(entry)}])

    df = spark.read.parquet(str(data))
    if "position" not in df.columns:
        raise CurateError(f"{mixture_dir}: no 'position' column; tokenize a `curate mix` output")
    summary = (df.select("position", "text")
               .withColumn("shard", F.floor(F.col("position") / docs_per_shard).cast("long"))
               .groupBy("shard").applyInPandas(write_group, "shard long, entry string")
               .orderBy("shard").collect())
    shards = [json.loads(r["entry"]) for r in summary]
    if [r["shard"] for r in summary] != list(range(len(summary))):
        raise CurateError(f"{mixture_dir}: positions are not contiguous; rebuild it with `curate mix`")
    return shards


def fingerprint(manifest: dict) -> str:
    """A hash of what the token stream is: tokenizer, dtype and every shard's content hash."""
    key = {"tokenizer": manifest["tokenizer"]["sha256"], "dtype": manifest["dtype"],
           "shards": [(s["file"], s["tokens"], s["sha256"]) for s in manifest["shards"]]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class TokenShards:
    """The shards of a directory as one memory-mapped token stream (EOS between documents)."""

    def __init__(self, root: str | Path, *, verify: bool = False):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise CurateError(f"no token shards at {self.root} ({MANIFEST} missing); run `curate tokenize`")
        self.manifest = json.loads(path.read_text(encoding="utf-8"))
        if self.manifest.get("kind") != "token_shards":
            raise CurateError(f"{path} is not a token-shard manifest")
        if verify:
            self.verify()
        self.dtype = np.dtype(self.manifest["dtype"])
        self.arrays = [np.memmap(self.root / s["file"], dtype=self.dtype, mode="r", shape=(s["tokens"],))
                       for s in self.manifest["shards"]]
        self.starts = np.concatenate([[0], np.cumsum([len(a) for a in self.arrays])]).astype(np.int64)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.manifest["tokenizer"]["eos_id"])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def verify(self) -> None:
        """Check every shard against the sha256 in the manifest."""
        for s in self.manifest["shards"]:
            if sha256_file(self.root / s["file"]) != s["sha256"]:
                raise CurateError(f"{self.root / s['file']} does not match its manifest sha256; "
                                  "re-run `curate tokenize`")

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` of the stream, across shard boundaries, as int64."""
        out = np.empty(stop - start, dtype=np.int64)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pos, i = start, first
        while pos < stop:
            lo = pos - self.starts[i]
            n = min(stop, self.starts[i + 1]) - pos
            out[pos - start:pos - start + n] = self.arrays[i][lo:lo + n]
            pos += n
            i += 1
        return out

    def document_offsets(self) -> np.ndarray:
        """Start of every document in stream coordinates (plus the end)."""
        parts = [np.load(self.root / s["offsets"])[:-1] + base
                 for s, base in zip(self.manifest["shards"], self.starts[:-1])]
        return np.concatenate(parts + [np.array([len(self)], dtype=np.int64)])
