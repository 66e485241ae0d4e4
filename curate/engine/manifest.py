"""Stage manifests, config hashes, and the commit protocol of a stage directory.

A stage is committed by writing its ``_manifest.json`` last; the manifest lists every shard
with its sha256 — data, rejected and the shards of each artifact table (``artifact_tables``,
written by ``ctx.artifact_table``) — and readers read only what a committed manifest lists.

- Local disks keep the rename: an attempt writes into ``<output>/.tmp-<NN-stage>-<attempt>/``,
  which replaces ``<NN-stage>/`` once its manifest is written.
- Object stores have no rename: an attempt writes under ``<NN-stage>/_attempts/<attempt>/``
  and commits by one PUT of ``<NN-stage>/_manifest.json`` whose outputs carry that prefix
  as their ``root``. Attempts no committed manifest lists are leftovers, removed only by a
  run that holds the output's lease (:mod:`curate.engine.lease`).

Either way a killed attempt leaves nothing that looks complete, and its rerun writes the same
shard bytes.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from curate import __version__
from curate.integrity import stable_hash, swap_in, temp_sibling
from curate.io import fs
from curate.io.layout import ARTIFACTS_DIR, MANIFEST, TMP_PREFIX
from curate.io.shards import entry_fingerprint, load_manifest, read_shards, shard_dicts

ATTEMPTS_DIR = "_attempts"


def config_hash(name: str, params: dict, upstream: str, extra: dict | None = None) -> str:
    return stable_hash({"stage": name, "params": params, "upstream": upstream, **(extra or {})})


def output_fingerprint(manifest: dict) -> str:
    """What downstream stages see as their input: the name and sha256 of every data shard
    (and, for a layer, what it lies over)."""
    return entry_fingerprint(manifest["outputs"]["data"])


def new_attempt_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class StageAttempt:
    """One attempt at writing a stage: shards go to ``workdir`` (a path or URI), side artifacts
    to the local ``scratch`` directory (uploaded at commit when the output is remote)."""

    target: str
    attempt: str
    workdir: str
    scratch: Path
    root: str = ""  # workdir relative to target ("" once renamed into place)
    committed: bool = field(default=False, init=False)
    tables: dict[str, dict] = field(default_factory=dict, init=False)  # artifact tables, listed at commit

    def path(self, *parts: str) -> str:
        return fs.join(self.workdir, *parts)

    def entry(self, shards, schema, fmt: str) -> dict:
        """A manifest output entry for ``shards`` written under this attempt."""
        entry = {"format": fmt, "schema": schema.jsonValue(), "shards": shard_dicts(shards),
                 "rows": sum(s.rows for s in shards)}
        return {**entry, "root": self.root} if self.root else entry

    def artifact_table(self, name: str, shards, schema, fmt: str = "parquet") -> dict:
        """The entry of artifact table ``name`` (shards written under ``artifacts/<name>`` of this
        attempt), recorded so that :meth:`commit` lists its shards, sha256 and rows."""
        entry = self.entry(shards, schema, fmt)
        entry["shards"] = [{**s, "file": f"{ARTIFACTS_DIR}/{s['file']}"} for s in entry["shards"]]
        self.tables[name] = entry
        return entry

    def read(self, spark, entry: dict):
        """Read back shards this attempt wrote (before it is committed)."""
        return read_shards(spark, self.workdir, {**entry, "root": ""}, output_dir=fs.parent(self.target))

    def commit(self, manifest: dict) -> None:
        """Write the manifest last: the stage becomes visible, complete, in one step."""
        manifest = {"code_version": __version__, **manifest}
        if self.tables:
            manifest["artifact_tables"] = dict(sorted(self.tables.items()))
        blob = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        if fs.is_remote(self.target):
            _upload_tree(self.scratch / ARTIFACTS_DIR, self.path(ARTIFACTS_DIR))
            fs.write_bytes(fs.join(self.target, MANIFEST), blob)
        else:
            fs.write_bytes(fs.join(self.workdir, MANIFEST), blob)
            swap_in(Path(self.workdir), Path(self.target))
        self.committed = True


def _upload_tree(local: Path, uri: str) -> None:
    if not local.is_dir():
        return
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        with open(path, "rb") as src, fs.open_file(fs.join(uri, *path.relative_to(local).parts), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)


@contextmanager
def stage_attempt(target: str | Path) -> Iterator[StageAttempt]:
    """Yield a fresh :class:`StageAttempt` for ``target``; call ``commit(manifest)`` inside the block.

    Without a commit (an error, a kill) nothing is visible as complete: the local temporary
    directory is removed, a remote attempt prefix is left for garbage collection.
    """
    target, attempt = str(target), new_attempt_id()
    if fs.is_remote(target):
        scratch = Path(tempfile.mkdtemp(prefix=f"curate-{fs.name(target)}-"))
        work = StageAttempt(target, attempt, fs.join(target, ATTEMPTS_DIR, attempt), scratch,
                            root=f"{ATTEMPTS_DIR}/{attempt}")
    else:
        tmp = temp_sibling(target, attempt)
        tmp.mkdir(parents=True)
        work = StageAttempt(target, attempt, str(tmp), tmp)
    try:
        yield work
        if not work.committed:
            raise RuntimeError(f"stage {fs.name(target)} was not committed (no {MANIFEST} written)")
        if fs.is_remote(target):
            collect_attempts(target, keep=attempt)
    finally:
        if fs.is_remote(target):
            shutil.rmtree(work.scratch, ignore_errors=True)
        elif Path(work.workdir).exists():
            shutil.rmtree(work.workdir, ignore_errors=True)


def collect_attempts(target: str, keep: str | None = None) -> list[str]:
    """Remove the attempt prefixes of ``target`` that its committed manifest does not list."""
    manifest = load_manifest(target)
    listed = {e.get("root") for e in (manifest or {}).get("outputs", {}).values()}
    removed = []
    for attempt in fs.listdir(fs.join(target, ATTEMPTS_DIR)):
        if attempt != keep and f"{ATTEMPTS_DIR}/{attempt}" not in listed:
            fs.remove(fs.join(target, ATTEMPTS_DIR, attempt), recursive=True)
            removed.append(f"{fs.name(target)}/{ATTEMPTS_DIR}/{attempt}")
    return removed


def clean_leftovers(output_dir: str | Path) -> list[str]:
    """Remove what killed attempts left behind; call only while holding the output's lease.

    Locally the ``.tmp-*`` directories; on object stores the attempt prefixes that no
    committed manifest lists.
    """
    output_dir = str(output_dir)
    removed = []
    for entry in fs.listdir(output_dir):
        path = fs.join(output_dir, entry)
        if not fs.is_remote(output_dir):
            if entry.startswith(TMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(entry)
        elif fs.exists(fs.join(path, ATTEMPTS_DIR)):
            removed += collect_attempts(path)
    return removed
