"""Stage manifests, config hashes and atomic stage directories."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from curate import __version__
from curate.engine.layout import MANIFEST
from curate.io.shards import load_manifest

TMP_PREFIX = ".tmp-"


def stable_hash(value: Any) -> str:
    """sha256 of a canonical JSON rendering (sorted keys, str() for unknown types)."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def config_hash(name: str, params: dict, upstream: str, extra: dict | None = None) -> str:
    return stable_hash({"stage": name, "params": params, "upstream": upstream, **(extra or {})})


def output_fingerprint(manifest: dict) -> str:
    """What downstream stages see as their input: the sha256 of every data shard."""
    shards = manifest["outputs"]["data"]["shards"]
    return stable_hash([(s["file"], s["sha256"]) for s in shards] or manifest["outputs"]["data"]["schema"])


def is_complete(stage_dir: Path) -> bool:
    return load_manifest(stage_dir) is not None


@contextmanager
def atomic_stage_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only if the block succeeds.

    The manifest must be written last inside the block; until the rename nobody sees the
    stage as complete, and a killed run leaves only a ``.tmp-*`` directory behind.
    """
    final = Path(final)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise RuntimeError(f"stage wrote no {MANIFEST}")
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` (old copy removed after)."""
    old = None
    if dst.exists():
        old = dst.parent / f"{TMP_PREFIX}old-{dst.name}-{os.getpid()}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(output_dir: Path) -> list[str]:
    """Remove temporary directories left by killed runs; return their names."""
    removed = []
    if output_dir.is_dir():
        for p in sorted(output_dir.glob(f"{TMP_PREFIX}*")):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def write_manifest(stage_dir: Path, manifest: dict) -> None:
    manifest = {"code_version": __version__, **manifest}
    path = Path(stage_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
