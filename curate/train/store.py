"""Where mixtures, token shards and checkpoints live: a local directory or an object-store prefix.

torch, numpy and pyarrow write local files, so each of these directories is *built* in a local
directory and then *published* by the same commit protocol as the pipeline's stages
(:mod:`curate.engine.manifest`):

- **locally** the built directory replaces the target in one rename (:func:`curate.integrity.atomic_dir`);
- **on an object store** (no rename) every file but the manifest is uploaded under
  ``<target>/_attempts/<attempt>/``, then the manifest is written last, in one PUT, with
  ``"root": "_attempts/<attempt>"``. Readers read the manifest first and only files under its
  root, so a killed upload is never seen as complete; the attempts the new manifest does not
  name are removed after the commit.

One writer per target: the commands (``curate mix``, ``tokenize``, ``train``, ``ablate``) hold
the output's lease (:mod:`curate.engine.lease`) and install its check with :func:`guarded`;
:func:`building` runs that check just before it publishes, so a run that lost its lease
never commits over the run that took it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator

from curate.integrity import atomic_dir
from curate.io import fs

ATTEMPTS = "_attempts"
MANIFEST = "_manifest.json"
_commit_guard: ContextVar[Callable[[], None] | None] = ContextVar("curate_commit_guard", default=None)


@contextmanager
def guarded(check: Callable[[], None]) -> Iterator[None]:
    """Run ``check`` (raising when this run may not commit) before every publish in the block."""
    token = _commit_guard.set(check)
    try:
        yield
    finally:
        _commit_guard.reset(token)


def check_commit() -> None:
    """The installed guard's check (nothing without one)."""
    check = _commit_guard.get()
    if check is not None:
        check()


def new_attempt() -> str:
    return uuid.uuid4().hex[:12]


@contextmanager
def building(target: str | Path, *, manifest: str = MANIFEST, attempt: str | None = None) -> Iterator[Path]:
    """A local directory to build ``target`` in (it must hold ``manifest`` at the end); published
    when the block succeeds, discarded (nothing visible) when it raises."""
    target = str(target)
    if not fs.is_remote(target):
        with atomic_dir(target) as tmp:
            yield tmp
            check_commit()
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"curate-{fs.name(target)}-"))
    try:
        yield tmp
        publish(tmp, target, manifest=manifest, attempt=attempt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def attempt_root(attempt: str) -> str:
    return f"{ATTEMPTS}/{attempt}"


def publish(local: Path, target: str, *, manifest: str = MANIFEST, attempt: str | None = None) -> str:
    """Upload ``local`` under a fresh attempt prefix of ``target``, then its manifest (with
    ``root``) last; remove the attempts that manifest does not name. Returns the root."""
    attempt = attempt or new_attempt()
    root = attempt_root(attempt)
    fs.put_tree(local, fs.join(target, root), skip=(manifest,))
    check_commit()
    record = json.loads((local / manifest).read_text(encoding="utf-8"))
    fs.write_bytes(fs.join(target, manifest), json.dumps({**record, "root": root}, indent=2, sort_keys=True).encode())
    collect(target, keep=attempt)
    return root


def collect(target: str, keep: str | None = None) -> list[str]:
    """Remove the attempt prefixes of ``target`` other than ``keep``."""
    removed = []
    for name in fs.listdir(fs.join(target, ATTEMPTS)):
        if name != keep:
            fs.remove(fs.join(target, ATTEMPTS, name), recursive=True)
            removed.append(name)
    return removed


def read_json(uri: str | Path) -> dict | None:
    """A JSON file (local or remote) as a dict; None when it does not exist."""
    try:
        return json.loads(fs.read_bytes(uri))
    except (FileNotFoundError, NotADirectoryError):
        return None


def committed(target: str | Path, manifest: str = MANIFEST) -> bool:
    """True when ``target`` holds a committed ``manifest``."""
    return fs.exists(fs.join(target, manifest))


def base(target: str | Path, record: dict) -> str:
    """Where the files a manifest lists are: ``target`` itself, or its committed attempt prefix."""
    return fs.join(target, record["root"]) if record.get("root") else str(target)


def fetch(uri: str) -> Path:
    """A local copy of a published file (cached by content token; the sha256 sidecar comes along)."""
    return fs.fetch(uri)
