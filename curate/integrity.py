"""Integrity: file hashes, sha256 sidecars, verified loading, atomic files and directories.

Stdlib only at import time; the loaders import ``fasttext`` / ``tokenizers`` when called.
The loaders accept URIs (``s3://…``): the file and its sidecar are fetched by the URI layer's
registered fetcher (:func:`set_fetcher`) into a local cache, then checked like a local file.
A sidecar ``<file>.sha256`` holds ``"<hex>  <name>\\n"`` (the ``sha256sum`` format). Every
model or tokenizer file is checked with :func:`verify_file` before it is loaded: a missing
sidecar or a different hash is a :class:`~curate.core.CurateError`, never a load. The
verified loaders here (:func:`load_fasttext`, :func:`load_tokenizer`) are the only ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from curate.core import CurateError

SIDECAR_SUFFIX = ".sha256"
TOKENIZER_FILE = "tokenizer.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime_ns, expected) -> verified sha256
_LOADED: OrderedDict[tuple[str, str, str], Any] = OrderedDict()  # (kind, path, sha256) -> model or tokenizer
LOADED_LIMIT = 4  # loaded models kept per process, least recently used dropped first
_FETCHER: list = []  # how a URI becomes a local file: registered by curate.io.fs (never imported here)


def stable_hash(value: Any) -> str:
    """sha256 of a canonical JSON rendering (sorted keys, str() for unknown types)."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- sidecars


def sidecar_path(path: str | Path) -> Path:
    """``MODEL.bin`` -> ``MODEL.bin.sha256``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | Path, target: str | Path | None = None) -> str:
    """Hash ``path`` and write the sidecar of ``target`` (default ``path``); return the digest.

    ``target`` lets a file staged under a temporary name get the sidecar of its final name.
    """
    target = Path(target or path)
    digest = sha256_file(path)
    write_text_atomic(sidecar_path(target), f"{digest}  {target.name}\n")
    return digest


def read_sidecar(path: str | Path) -> str | None:
    """The digest recorded in ``path``'s sidecar; None when there is no sidecar."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    fields = sidecar.read_text(encoding="utf-8").split()
    digest = fields[0].lower() if fields else ""
    if not _HEX64.fullmatch(digest):
        raise CurateError(f"{sidecar} does not start with a sha256 hex digest")
    return digest


def expected_sha256(path: str | Path, *, what: str = "file") -> str:
    """The digest in ``path``'s sidecar; a CurateError saying how to create it when absent."""
    digest = read_sidecar(path)
    if digest is None:
        sidecar = sidecar_path(path)
        raise CurateError(f"{what} {path} has no sha256 sidecar {sidecar.name}; once you trust the file, create it "
                          f"with `sha256sum {Path(path).name} > {sidecar.name}` (in its directory)")
    return digest


def verify_file(path: str | Path, *, what: str = "file") -> str:
    """Check ``path`` against its sidecar and return its sha256, or raise CurateError."""
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"{what} not found: {path}")
    return verify_digest(path, expected_sha256(path, what=what), what=what, source="its sidecar")


def verify_digest(path: str | Path, expected: str, *, what: str = "file", source: str = "the expected hash") -> str:
    """Check that ``path`` hashes to ``expected`` (recorded in ``source``); return it or raise CurateError.

    A file is hashed once per process while its size, mtime and expected hash stay the same.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key not in _VERIFIED:
        actual = sha256_file(path)
        if actual != expected:
            raise CurateError(f"{what} {path} does not match {source} (sha256 {actual[:16]}…, expected "
                              f"{expected[:16]}…): the file is corrupt or was replaced — refusing to load it")
        _VERIFIED[key] = actual
    return _VERIFIED[key]


# --------------------------------------------------------------------------- remote files


def set_fetcher(fetch) -> None:
    """Register ``fetch(uri) -> local path`` (a download that brings the ``.sha256`` sidecar
    along). The URI layer, :mod:`curate.io.fs`, registers its cached download when imported;
    this module stays below it and never imports it."""
    _FETCHER[:] = [fetch]


def is_uri(path: str | Path) -> bool:
    """True for ``s3://…``, ``gs://…`` and other remote URIs (not for local paths or ``file://``)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def local_file(path: str | Path) -> Path:
    """A local path for ``path``: itself, or a remote file fetched (with its sidecar) into a cache."""
    text = str(path)
    if not is_uri(text):
        return Path(text.removeprefix("file://"))
    if not _FETCHER:
        raise CurateError(f"{text}: a remote file, but no URI layer is loaded to fetch it (import curate.io.fs)")
    return Path(_FETCHER[0](text))


# --------------------------------------------------------------------------- verified loading


def load_fasttext(path: str | Path, *, what: str = "fastText model") -> tuple[Any, str]:
    """(model, sha256) of a fastText ``.bin``, loaded only after it matches its sidecar.

    Loaded once per process and content (a Spark worker loads it once, not per batch); a
    replaced file is verified and loaded again.
    """
    path = local_file(path).expanduser().resolve()
    key = ("fasttext", str(path), verify_file(path, what=what))

    def load():
        import fasttext

        return fasttext.load_model(str(path))

    return _loaded(key, load), key[2]


def _loaded(key: tuple[str, str, str], load) -> Any:
    """What ``load()`` returns for ``key``, loaded once and kept while it is among the
    ``LOADED_LIMIT`` most recently used: a Spark worker lives across stages, and keeping every
    model it ever loaded grew test workers to 1.7 GB each."""
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    _LOADED[key] = value = load()
    while len(_LOADED) > LOADED_LIMIT:
        _LOADED.popitem(last=False)
    return value


def tokenizer_file(path: str | Path) -> Path:
    """``path`` itself, or the ``tokenizer.json`` inside it when it is a directory."""
    path = Path(path)
    return path / TOKENIZER_FILE if path.is_dir() else path


def load_tokenizer(path: str | Path, *, required_token: str | None = None):
    """A Hugging Face ``tokenizers`` tokenizer (a ``tokenizer.json`` or a directory holding one),
    loaded only after it matches its sidecar; once per process and content.
    ``required_token``: refuse a tokenizer without this token (e.g. the end-of-text token)."""
    if is_uri(path) and not str(path).endswith(".json"):  # a remote directory holding tokenizer.json
        path = f"{str(path).rstrip('/')}/{TOKENIZER_FILE}"
    path = tokenizer_file(local_file(path)).expanduser().resolve()
    if not path.is_file():
        raise CurateError(f"tokenizer not found: {path} (expected a tokenizers tokenizer.json; "
                          "train one with `curate tokenizer train`)")
    key = ("tokenizer", str(path), verify_file(path, what="tokenizer"))

    def load():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))

    tok = _loaded(key, load)
    if required_token is not None and tok.token_to_id(required_token) is None:
        raise CurateError(f"{path} has no {required_token} token; train it with `curate tokenizer train`")
    return tok


# --------------------------------------------------------------------------- atomic writes


def temp_sibling(final: str | Path, tag: str | None = None) -> Path:
    """A hidden temporary path beside ``final`` (``.tmp-<name>-<tag or pid>``)."""
    final = Path(final)
    return final.with_name(f".tmp-{final.name}-{tag if tag is not None else os.getpid()}")


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it onto ``final``, on error remove it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(final: str | Path, *, tag: str | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``final``; on success it replaces ``final``.

    An existing ``final`` is moved aside, the new directory renamed in and the old one removed.
    On any error the temporary directory is removed and ``final`` is left as it was.
    ``tag`` names the temporary directory (default: the process id) so that several
    processes (ranks) can find the same one.
    """
    final = Path(final)
    tmp = temp_sibling(final, tag)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, replacing an existing ``final`` (moved aside, then removed)."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = temp_sibling(final, f"old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
