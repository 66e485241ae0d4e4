"""Token shards: what the training loop reads (tokenizers: :mod:`curate.train.tokenizer`).

- :func:`write_token_shards` encodes documents in mixture order, appends EOS after each,
  and writes flat ``uint16``/``uint32`` arrays (``shard-NNNNN.bin``) with document offsets
  (``shard-NNNNN.idx.npy``, int64, ``documents + 1`` entries), both memory-mappable, and a
  ``_manifest.json`` with tokens, documents and sha256 per shard. Shards end at document
  boundaries. :class:`TokenShards` reads them back as one token stream.
- :func:`tokenize_spark` is the same for large mixtures: one Spark task per shard of
  consecutive mixture positions, the same token stream.

The input, the tokenizer and the output may be URIs (``s3://…``). The output is built locally
and published by :mod:`curate.train.store` (on object stores: shards under an attempt prefix,
the manifest last); the Spark path's tasks write their shards straight into that prefix.
:class:`TokenShards` over a URI fetches each shard once into the local cache
(``$CURATE_CACHE``) and checks it against the manifest's sha256 before memory-mapping it.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from curate.core import CurateError
from curate.integrity import (
    TOKENIZER_FILE,
    atomic_file,
    load_tokenizer,
    sha256_file,
    tokenizer_file,
    verify_digest,
    write_sidecar,
)
from curate.io import fs
from curate.train import store
from curate.train.tokenizer import EOS

MANIFEST = "_manifest.json"


# --------------------------------------------------------------------------- shards


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_documents(tok, texts: list[str], eos_id: int, dtype: np.dtype) -> list[np.ndarray]:
    """Token arrays of ``texts``, each followed by EOS."""
    return [np.array(e.ids + [eos_id], dtype=dtype) for e in tok.encode_batch(texts)]


def write_shard(out_dir: str | Path, index: int, docs: list[np.ndarray], dtype: np.dtype) -> dict:
    """Write ``shard-<index>.bin`` (the documents back to back) and its offsets; return its entry.

    Locally files are written under temporary names and renamed, so a retried or speculative
    Spark task never leaves a torn shard; on an object store each file is one PUT (whole or absent).
    """
    name = f"shard-{index:05d}"
    tokens = np.concatenate(docs).astype(dtype, copy=False) if docs else np.zeros(0, dtype)
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    buf = io.BytesIO()
    np.save(buf, offsets)
    digests = {}
    for suffix, blob in ((".bin", tokens.tobytes()), (".idx.npy", buf.getvalue())):
        if fs.is_remote(out_dir):
            fs.write_bytes(fs.join(out_dir, f"{name}{suffix}"), blob)
        else:
            with atomic_file(Path(out_dir) / f"{name}{suffix}") as tmp:
                tmp.write_bytes(blob)
        digests[suffix] = hashlib.sha256(blob).hexdigest()
    return {"file": f"{name}.bin", "offsets": f"{name}.idx.npy", "tokens": int(len(tokens)),
            "documents": len(docs), "sha256": digests[".bin"], "offsets_sha256": digests[".idx.npy"]}


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
    """Encode text batches (in order) into token shards under ``out_dir`` (a path or URI)
    atomically; return the manifest."""
    out_dir = fs.resolve(out_dir, Path.cwd())
    tok, tok_file = _prepare(tokenizer_path, out_dir, overwrite)
    eos_id, dtype = tok.token_to_id(EOS), token_dtype(tok.get_vocab_size())
    with store.building(out_dir) as tmp:
        writer = _ShardWriter(tmp, dtype, shard_tokens)
        for texts in batches:
            for doc in encode_documents(tok, [t or "" for t in texts], eos_id, dtype):
                writer.add(doc)
        writer.flush()
        return _finish(tmp, writer.shards, tok, tok_file, source)


def _prepare(tokenizer_path: str | Path, out_dir: str, overwrite: bool):
    """Check the output may be (re)written; load the verified tokenizer (a path or a URI)."""
    exists = store.committed(out_dir) if fs.is_remote(out_dir) else Path(out_dir).exists()
    if exists and not overwrite:
        raise CurateError(f"{out_dir} exists; pass --force to rewrite the token shards")
    tok = load_tokenizer(tokenizer_path, required_token=EOS)
    if fs.is_remote(tokenizer_path):
        name = str(tokenizer_path).rstrip("/")
        return tok, store.fetch(name if name.endswith(".json") else fs.join(name, TOKENIZER_FILE))
    return tok, tokenizer_file(tokenizer_path)


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
    mixture_dir, out_dir = fs.resolve(mixture_dir, Path.cwd()), fs.resolve(out_dir, Path.cwd())
    manifest = store.read_json(fs.join(mixture_dir, store.MANIFEST))
    if not manifest or manifest.get("kind") != "mixture" or not manifest.get("shards"):
        raise CurateError(f"{mixture_dir} is not a `curate mix` output (no mixture {store.MANIFEST})")
    base, rels = store.base(mixture_dir, manifest), [s["file"] for s in manifest["shards"]]
    tok, tok_file = _prepare(tokenizer_path, out_dir, overwrite)
    attempt = store.new_attempt()
    with store.building(out_dir, attempt=attempt) as tmp:
        target = fs.join(out_dir, store.attempt_root(attempt)) if fs.is_remote(out_dir) else str(tmp)
        shards = _spark_shards(spark, mixture_dir, _mixture_frame(spark, base, rels), tok, target, docs_per_shard)
        return _finish(tmp, shards, tok, tok_file, str(mixture_dir))


def _mixture_frame(spark, base: str, rels: list[str]):
    """``(position, text)`` of a mixture's shards: Spark's reader for local files, task-side
    pyarrow reads (:func:`curate.io.shards.read_shards`) for URIs."""
    if not fs.is_remote(base):
        return spark.read.parquet(*[fs.join(fs.strip_file_scheme(base), r) for r in rels])
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    from curate.io.shards import read_shards

    schema = StructType([StructField("position", LongType()), StructField("text", StringType())])
    return read_shards(spark, base, {"format": "parquet", "schema": schema.jsonValue(),
                                     "shards": [{"file": r} for r in rels]})


def _spark_shards(spark, mixture_dir: str, df, tok, target: str, docs_per_shard: int) -> list[dict]:
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
        entry = write_shard(target, int(pdf["shard"].iloc[0]), docs, dtype)
        return pd.DataFrame([{"shard": int(pdf["shard"].iloc[0]), "entry": json.dumps(entry)}])

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
    """The shards of a directory (a path or a URI) as one memory-mapped token stream (EOS between
    documents). Remote shards are fetched into the local cache once and checked against the
    manifest's sha256 before use; local ones only when ``verify``."""

    def __init__(self, root: str | Path, *, verify: bool = False):
        self.remote = fs.is_remote(root)
        self.root = str(root).rstrip("/") if self.remote else Path(fs.strip_file_scheme(str(root)))
        path = fs.join(self.root, MANIFEST)
        manifest = store.read_json(path) if self.remote or Path(path).is_file() else None
        if manifest is None:
            raise CurateError(f"no token shards at {self.root} ({MANIFEST} missing); run `curate tokenize`")
        self.manifest = manifest
        if self.manifest.get("kind") != "token_shards":
            raise CurateError(f"{path} is not a token-shard manifest")
        base = store.base(self.root, self.manifest)
        shards = self.manifest["shards"]
        self.files = [self._local(base, s["file"], s["sha256"]) for s in shards]
        self.offset_files = [self._local(base, s["offsets"], s.get("offsets_sha256")) for s in shards]
        self.tokenizer_path = self._local(base, TOKENIZER_FILE, None)
        if verify:
            self.verify()
        self.dtype = np.dtype(self.manifest["dtype"])
        self.arrays = [np.memmap(f, dtype=self.dtype, mode="r", shape=(s["tokens"],))
                       for f, s in zip(self.files, shards)]
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

    def _local(self, base: str, name: str, sha256: str | None) -> Path:
        """The local file of ``name``: itself, or (remote) a cached copy checked against ``sha256``."""
        if not self.remote:
            return Path(base) / name
        local = store.fetch(fs.join(base, name))
        if sha256 is not None:
            verify_digest(local, sha256, what="token shard", source=f"{fs.join(self.root, MANIFEST)}")
        return local

    def verify(self) -> None:
        """Check every shard against the sha256 in the manifest."""
        for f, s in zip(self.files, self.manifest["shards"]):
            if sha256_file(f) != s["sha256"]:
                raise CurateError(f"{fs.join(self.root, s['file'])} does not match its manifest sha256; "
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
        parts = [np.load(f)[:-1] + base for f, base in zip(self.offset_files, self.starts[:-1])]
        return np.concatenate(parts + [np.array([len(self)], dtype=np.int64)])
