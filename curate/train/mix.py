"""Training mixtures: named sources, per-source token targets, repetition caps, one seed.

``curate mix SPEC -o OUT`` decides deterministically *which* documents go into a training
run, *how many times* each one is repeated and *in which order*. Targets come from a weight
(a share of ``total_tokens``) or an explicit token budget; a source that runs out after
``max_epochs`` repetitions is capped and its shortfall is redistributed over the others by
weight (water-filling, as in the Dolma / DoReMi mixture recipes). The unit of sampling is a
document, or a whole ``knn_order`` group when the source has ``group``/``order`` columns, so
related documents stay contiguous (In-Context Pretraining, Shi et al. 2023); units are then
shuffled by a seeded hash, never by ``random``.

Single process (pyarrow); the output is a stage-like directory::

    OUT/data/part-00000.parquet …   columns: position, source, id, text, epoch, group, tokens
    OUT/_manifest.json              spec, per-source tokens/documents/epochs, shard sha256

Sources, the spec, the tokenizer and OUT may be URIs (``s3://…``): sources are read through
:mod:`curate.io.fs` (a ``curate run`` stage through its committed manifest), and OUT is built
locally and published by :mod:`curate.train.store` (on object stores: attempt prefix, manifest last).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import yaml

from curate.core import CurateError
from curate.integrity import sha256_file
from curate.io import fs
from curate.io.jsonl import read_records
from curate.io.shards import LAYER, shard_uris
from curate.train import store
from curate.train.sampling import seeded_hash64

SPEC_KEYS = {"name", "sources", "total_tokens", "seed", "max_epochs", "tokenizer",
             "bytes_per_token", "rows_per_shard"}
SOURCE_KEYS = {"path", "weight", "tokens", "max_epochs", "where", "rehydrate"}
ORDER, GROUP = "order", "group"
COPIES = "_copies"  # rehydration: copies of a document per epoch of its source


@dataclass(frozen=True)
class SourceSpec:
    name: str
    path: str | Path  # a local path or a URI
    weight: float | None = None
    tokens: int | None = None
    max_epochs: float = 1.0
    where: tuple | None = None  # (column, min, max): rows with min <= column <= max, e.g. a quality_bucket
    rehydrate: tuple | None = None  # (column, ((min cluster size, copies), ...)): FineWeb2-style up-weighting


@dataclass(frozen=True)
class MixtureSpec:
    sources: tuple[SourceSpec, ...]
    total_tokens: int | None = None
    seed: int = 0
    tokenizer: str | Path | None = None
    bytes_per_token: float = 4.0
    rows_per_shard: int = 100_000
    name: str = "mixture"


@dataclass
class Unit:
    """What is sampled: one document, or one knn_order group of documents (in order)."""

    key: str
    rows: list[int]
    tokens: int


@dataclass
class Source:
    spec: SourceSpec
    table: Any  # pyarrow.Table with id, text (+ order, group), tokens
    units: list[Unit] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(u.tokens for u in self.units)


# --------------------------------------------------------------------------- spec


def load_spec(path: str | Path) -> MixtureSpec:
    """Parse and validate a mixture YAML (``yaml.safe_load``; a path or a URI); paths resolve against it."""
    path = fs.resolve(path, Path.cwd())
    if not fs.isfile(path):
        raise CurateError(f"mixture spec not found: {path}")
    raw = yaml.safe_load(fs.read_text(path)) or {}
    return parse_spec(raw, base_dir=fs.parent(path))


def parse_spec(raw: dict, base_dir: str | Path = Path(".")) -> MixtureSpec:
    if not isinstance(raw, dict):
        raise CurateError("mixture spec must be a mapping with a 'sources' key")
    _check_keys("mixture spec", raw, SPEC_KEYS)
    sources_raw = raw.get("sources")
    if not isinstance(sources_raw, dict) or not sources_raw:
        raise CurateError("mixture spec needs 'sources': {name: {path: ..., weight: ...}, ...}")
    default_epochs = float(raw.get("max_epochs", 1.0))
    sources = []
    for name, src in sources_raw.items():
        if isinstance(src, str):
            src = {"path": src}
        _check_keys(f"source '{name}'", src, SOURCE_KEYS)
        if "path" not in src:
            raise CurateError(f"source '{name}' needs a 'path'")
        if "weight" in src and "tokens" in src:
            raise CurateError(f"source '{name}': give either 'weight' or 'tokens', not both")
        sources.append(SourceSpec(
            name=str(name), path=_resolve(src["path"], base_dir),
            weight=float(src["weight"]) if "weight" in src else None,
            tokens=int(src["tokens"]) if "tokens" in src else None,
            max_epochs=float(src.get("max_epochs", default_epochs)), where=_where(name, src.get("where")),
            rehydrate=_rehydrate(name, src.get("rehydrate"))))
    total = raw.get("total_tokens")
    if any(s.weight is not None for s in sources) and total is None:
        raise CurateError("mixture spec: sources with a 'weight' need 'total_tokens'")
    if all(s.weight is None and s.tokens is None for s in sources) and total is not None:
        sources = [SourceSpec(s.name, s.path, 1.0, None, s.max_epochs, s.where, s.rehydrate) for s in sources]
    for s in sources:
        if s.max_epochs <= 0 or (s.weight is not None and s.weight < 0):
            raise CurateError(f"source '{s.name}': max_epochs must be > 0 and weight >= 0")
    tok = raw.get("tokenizer")
    return MixtureSpec(
        sources=tuple(sources), total_tokens=int(total) if total is not None else None,
        seed=int(raw.get("seed", 0)), tokenizer=_resolve(tok, base_dir) if tok else None,
        bytes_per_token=float(raw.get("bytes_per_token", 4.0)),
        rows_per_shard=int(raw.get("rows_per_shard", 100_000)), name=str(raw.get("name", "mixture")))


def _where(name: str, raw: dict | None) -> tuple | None:
    """``where: {column: quality_bucket, min: 15, max: 19}`` → (column, min, max), bounds inclusive."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or "column" not in raw or not set(raw) <= {"column", "min", "max"}:
        raise CurateError(f"source '{name}': 'where' must be {{column: NAME, min: LOW, max: HIGH}}")
    return str(raw["column"]), raw.get("min"), raw.get("max")


def _rehydrate(name: str, raw: dict | None) -> tuple | None:
    """``rehydrate: {column: dedup_cluster_size, copies: {1: 1, 2: 2, 5: 3}}`` → (column, steps):
    a document whose cluster size is at least a key (the largest such key) gets that many copies
    per epoch (rehydration, FineWeb2: up-weight survivors of duplicate clusters by their size)."""
    if raw is None:
        return None
    copies = raw.get("copies") if isinstance(raw, dict) else None
    if (not isinstance(raw, dict) or set(raw) != {"column", "copies"} or not isinstance(copies, dict) or not copies
            or not all(isinstance(k, int) and isinstance(v, int) and k >= 1 and v >= 1 for k, v in copies.items())):
        raise CurateError(f"source '{name}': 'rehydrate' must be {{column: NAME, copies: {{MIN_CLUSTER_SIZE: "
                          "COPIES, ...}}}} with sizes and copies integers >= 1")
    return str(raw["column"]), tuple(sorted(copies.items()))


def copies_for(sizes: list, steps: tuple) -> list[int]:
    """Copies per document: the step of the largest minimum size <= its cluster size (null: size 1;
    sizes below the smallest key: 1 copy)."""
    out = []
    for size in sizes:
        size = 1 if size is None else int(size)
        out.append(next((c for low, c in reversed(steps) if size >= low), 1))
    return out


def _check_keys(what: str, raw: dict, valid: set[str]) -> None:
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise CurateError(f"{what}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")


def _resolve(p: str | Path, base_dir: str | Path) -> str:
    """A URI unchanged; a relative path against the spec's directory (itself maybe a URI)."""
    text = str(p)
    if fs.is_remote(text):
        return text
    if fs.is_remote(base_dir) and not Path(text).expanduser().is_absolute():
        return fs.join(base_dir, text)
    return fs.resolve(text, Path.cwd() if fs.is_remote(base_dir) else base_dir)


# --------------------------------------------------------------------------- reading


def source_files(path: str | Path) -> list[str]:
    """The data files of a source (a path or a URI): the shards a committed manifest lists (a
    ``curate run`` stage or a ``curate mix`` output), else a directory's files, a glob or a file."""
    path = str(path)
    globbed = any(ch in path for ch in "*?[")
    manifest = None if globbed else store.read_json(fs.join(path, store.MANIFEST))
    if manifest and "outputs" in manifest:
        entry = manifest["outputs"]["data"]
        if LAYER in entry:
            raise CurateError(f"mixture source {path} is stored as a layer over {entry[LAYER]['over']} "
                              "(output.layers in the pipeline): use the run's final/ or a later stage, or rerun "
                              "the pipeline with output: {layers: false}")
        files = shard_uris(path, entry)
    elif manifest and manifest.get("kind") == "mixture":
        files = [fs.join(store.base(path, manifest), s["file"]) for s in manifest["shards"]]
    elif globbed or fs.exists(path):
        if manifest is not None and fs.isdir(fs.join(path, "data")):  # a stage-like directory
            path = fs.join(path, "data")
        root, rels = fs.list_files(path)
        files = [fs.join(root, r) for r in rels if _is_data_file(r) and (globbed or "/" not in r)]
    else:
        raise CurateError(f"mixture source not found: {path}")
    if not files:
        raise CurateError(f"mixture source has no .parquet/.jsonl files: {path}")
    return files


def _is_data_file(name: str) -> bool:
    return fs.name(name).endswith((".parquet", ".jsonl", ".jsonl.gz", ".json")) and not fs.name(name).startswith("_")


def _read_parquet(uri: str, **kwargs):
    import pyarrow.parquet as pq

    if not fs.is_remote(uri):
        return pq.read_table(fs.strip_file_scheme(uri), **kwargs)
    with fs.open_file(uri, "rb") as fh:
        return pq.read_table(fh, **kwargs)


def read_source_table(path: str | Path, where: tuple | None = None, rehydrate: tuple | None = None):
    """Read ``id``, ``text`` and, when present, ``order``/``group`` into one pyarrow Table
    (only rows with ``min <= column <= max`` when ``where = (column, min, max)``; with
    ``rehydrate`` also each document's copies per epoch, column ``_copies``)."""
    import pyarrow as pa

    tables = []
    for f in source_files(path):
        if f.endswith(".parquet"):
            t = _read_parquet(f)
        else:
            t = pa.Table.from_pylist(list(_jsonl_rows(f, where[0] if where else None,
                                                      rehydrate[0] if rehydrate else None)))
        missing = {"id", "text"} - set(t.column_names)
        if missing:
            raise CurateError(f"{f}: missing column(s) {', '.join(sorted(missing))}")
        if where is not None:
            t = _filter_where(t, where, f)
        if rehydrate is not None:
            t = _with_copies(t, rehydrate, f)
        keep = [c for c in ("id", "text", ORDER, GROUP) if c in t.column_names] + ([COPIES] if rehydrate else [])
        t = t.select(keep).cast(pa.schema([_field(t, c) for c in keep]))
        tables.append(t)
    names = {tuple(t.column_names) for t in tables}
    if len(names) > 1:
        raise CurateError(f"{path}: files disagree on columns {sorted(names)}")
    return pa.concat_tables(tables)


def _with_copies(t, rehydrate: tuple, f: str):
    import pyarrow as pa

    column, steps = rehydrate
    if column not in t.column_names:
        raise CurateError(f"{f}: 'rehydrate' column '{column}' not found; columns: {', '.join(t.column_names)} "
                          "(write it with minhash_dedup's cluster_size_column)")
    return t.append_column(COPIES, pa.array(copies_for(t.column(column).to_pylist(), steps), pa.int64()))


def _filter_where(t, where: tuple, f: str):
    """Rows of ``t`` whose ``where`` column lies in [min, max] (nulls never match)."""
    import pyarrow.compute as pc

    column, low, high = where
    if column not in t.column_names:
        raise CurateError(f"{f}: 'where' column '{column}' not found; columns: {', '.join(t.column_names)}")
    mask = pc.is_valid(t.column(column))
    if low is not None:
        mask = pc.and_(mask, pc.greater_equal(t.column(column), low))
    if high is not None:
        mask = pc.and_(mask, pc.less_equal(t.column(column), high))
    return t.filter(pc.fill_null(mask, False))


def _field(t, name: str):
    import pyarrow as pa

    kind = {"id": pa.string(), "text": pa.string(), ORDER: pa.int64(), GROUP: pa.string(), COPIES: pa.int64()}[name]
    return pa.field(name, kind)


def _jsonl_rows(path: str, *extra: str | None) -> Iterator[dict]:
    for _, row in read_records(path, hint="; clean it with `curate run` first"):
        yield {k: row.get(k) for k in ("id", "text", ORDER, GROUP, *extra) if k in row}


# --------------------------------------------------------------------------- tokens


def token_counter(spec: MixtureSpec) -> Callable[[list[str]], np.ndarray]:
    """Exact counts with the spec's tokenizer (+1 for EOS), else ceil(UTF-8 bytes / bytes_per_token)."""
    if spec.tokenizer is not None:
        from curate.integrity import load_tokenizer
        from curate.train.tokenizer import EOS

        tok = load_tokenizer(spec.tokenizer, required_token=EOS)

        def exact(texts: list[str]) -> np.ndarray:
            return np.array([len(e.ids) + 1 for e in tok.encode_batch(texts)], dtype=np.int64)

        return exact

    def estimate(texts: list[str]) -> np.ndarray:
        nbytes = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.float64)
        return np.ceil(nbytes / spec.bytes_per_token).astype(np.int64) + 1

    return estimate


def build_units(table, tokens: np.ndarray) -> list[Unit]:
    """Documents as units; whole groups (rows sorted by ``order``) when ``group`` is present."""
    ids = table.column("id").to_pylist()
    if GROUP not in table.column_names:
        return _rehydrated(table, [Unit(ids[i], [i], int(tokens[i])) for i in range(len(ids))])
    groups = table.column(GROUP).to_pylist()
    order = table.column(ORDER).to_pylist() if ORDER in table.column_names else [0] * len(ids)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    units = []
    for g, rows in members.items():
        rows.sort(key=lambda i: (order[i] if order[i] is not None else 0, ids[i]))
        units.append(Unit(f"group:{g}", rows, int(tokens[rows].sum())))
    return _rehydrated(table, units)


def _rehydrated(table, units: list[Unit]) -> list[Unit]:
    """Each unit and its extra copies (``<key>#copy<k>``; a group takes its most-copied document's count)."""
    if COPIES not in table.column_names:
        return units
    copies = table.column(COPIES).to_pylist()
    out = []
    for u in units:
        out.append(u)
        out += [Unit(f"{u.key}#copy{k}", u.rows, u.tokens) for k in range(1, max(copies[r] for r in u.rows))]
    return out


# --------------------------------------------------------------------------- targets


def token_targets(spec: MixtureSpec, available: dict[str, int]) -> dict[str, int]:
    """Per-source token targets after capping each at ``max_epochs × available``.

    Explicit ``tokens`` are taken as given (capped). Weighted sources share what is left of
    ``total_tokens``; the shortfall of a capped source goes to the uncapped ones by weight.
    """
    caps = {s.name: int(available[s.name] * s.max_epochs) for s in spec.sources}
    targets = {s.name: min(s.tokens, caps[s.name]) for s in spec.sources if s.tokens is not None}
    if spec.total_tokens is None:
        return {s.name: targets.get(s.name, caps[s.name]) for s in spec.sources}
    weighted = {s.name: s.weight for s in spec.sources if s.weight is not None}
    remaining = max(spec.total_tokens - sum(targets.values()), 0)
    while weighted:
        total_w = sum(weighted.values())
        if total_w <= 0:
            break
        share = {n: remaining * w / total_w for n, w in weighted.items()}
        capped = {n for n in weighted if share[n] >= caps[n]}
        if not capped:
            targets.update({n: int(round(share[n])) for n in weighted})
            break
        for n in sorted(capped):
            targets[n] = caps[n]
            remaining -= caps[n]
            del weighted[n]
        remaining = max(remaining, 0)
    for s in spec.sources:
        targets.setdefault(s.name, 0)
    return targets


def choose_units(units: list[Unit], target: int, seed: int, source: str) -> list[tuple[int, Unit]]:
    """Whole epochs while they fit, then a seeded prefix of units until ``target`` is reached.

    Returns ``(epoch, unit)`` pairs. The partial epoch stops at the first unit that reaches
    the target, so a source overshoots by less than one unit.
    """
    total = sum(u.tokens for u in units)
    if total == 0 or target <= 0:
        return []
    full, rest = divmod(target, total)
    chosen = [(e, u) for e in range(full) for u in units]
    if rest:
        ranked = sorted(units, key=lambda u: (seeded_hash64(seed, "pick", source, full, u.key), u.key))
        got = 0
        for u in ranked:
            if got >= rest:
                break
            chosen.append((full, u))
            got += u.tokens
    return chosen


# --------------------------------------------------------------------------- build


def build_mixture(spec: MixtureSpec, out_dir: str | Path, *, overwrite: bool = False) -> dict:
    """Materialise ``spec`` into ``out_dir`` atomically; return the manifest."""
    import pyarrow as pa

    out_dir = fs.resolve(out_dir, Path.cwd())
    if (store.committed(out_dir) if fs.is_remote(out_dir) else Path(out_dir).exists()) and not overwrite:
        raise CurateError(f"{out_dir} exists; pass --force to rebuild the mixture")
    count = token_counter(spec)
    sources = []
    for s in spec.sources:
        table = read_source_table(s.path, s.where, s.rehydrate)
        tokens = count(table.column("text").to_pylist()) if table.num_rows else np.zeros(0, np.int64)
        sources.append(Source(s, table.append_column("tokens", pa.array(tokens, pa.int64())),
                              build_units(table, tokens)))
    available = {src.spec.name: src.tokens for src in sources}
    targets = token_targets(spec, available)

    picks = []  # (sort key, source index, epoch, unit)
    for si, src in enumerate(sources):
        for epoch, unit in choose_units(src.units, targets[src.spec.name], spec.seed, src.spec.name):
            picks.append((seeded_hash64(spec.seed, "order", src.spec.name, epoch, unit.key),
                          src.spec.name, epoch, unit.key, si, unit))
    picks.sort(key=lambda p: p[:4])

    with store.building(out_dir) as tmp:
        (tmp / "data").mkdir()
        shards = _write_shards(tmp / "data", _rows(picks, sources), spec.rows_per_shard)
        manifest = _manifest(spec, sources, targets, picks, shards)
        (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def _manifest(spec: MixtureSpec, sources: list[Source], targets: dict[str, int], picks: list,
              shards: list[dict]) -> dict:
    return {
        "kind": "mixture", "name": spec.name, "seed": spec.seed,
        "token_count": "tokenizer" if spec.tokenizer else f"estimate: utf-8 bytes / {spec.bytes_per_token}",
        "total_tokens_requested": spec.total_tokens,
        "total_tokens": int(sum(u.tokens for *_, u in picks)),
        "documents": int(sum(len(u.rows) for *_, u in picks)),
        "sources": {src.spec.name: _source_stats(src, targets[src.spec.name], picks) for src in sources},
        "shards": shards,
    }


def _rows(picks: list, sources: list[Source]) -> Iterator[dict]:
    columns = [{c: src.table.column(c).to_pylist() for c in ("id", "text", "tokens")} for src in sources]
    position = 0
    for _, name, epoch, key, si, unit in picks:
        col = columns[si]
        for r in unit.rows:
            yield {"position": position, "source": name, "id": col["id"][r], "text": col["text"][r],
                   "epoch": epoch, "group": key[len("group:"):] if key.startswith("group:") else None,
                   "tokens": col["tokens"][r]}
            position += 1


def _write_shards(data_dir: Path, rows: Iterable[dict], rows_per_shard: int) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("position", pa.int64()), ("source", pa.string()), ("id", pa.string()),
                        ("text", pa.string()), ("epoch", pa.int32()), ("group", pa.string()),
                        ("tokens", pa.int64())])
    shards, buf = [], []

    def flush() -> None:
        path = data_dir / f"part-{len(shards):05d}.parquet"
        pq.write_table(pa.Table.from_pylist(buf, schema=schema), path, compression="zstd")
        shards.append({"file": f"data/{path.name}", "rows": len(buf), "sha256": sha256_file(path)})
        buf.clear()

    for row in rows:
        buf.append(row)
        if len(buf) >= rows_per_shard:
            flush()
    if buf or not shards:
        flush()
    return shards


def _source_stats(src: Source, target: int, picks: list) -> dict:
    mine = [(e, u) for _, name, e, _, _, u in picks if name == src.spec.name]
    selected = sum(u.tokens for _, u in mine)
    available = src.tokens
    rehydration = {} if src.spec.rehydrate is None else {
        "rehydrate": {"column": src.spec.rehydrate[0], "copies": dict(src.spec.rehydrate[1]),
                      "extra_copies": len(src.units) - len({u.key.split("#copy")[0] for u in src.units})}}
    return {
        **rehydration,
        "path": str(src.spec.path), "available_tokens": available, "available_documents": src.table.num_rows,
        "target_tokens": target, "tokens": selected, "documents": sum(len(u.rows) for _, u in mine),
        "epochs": round(selected / available, 4) if available else 0.0,
        "max_epochs": src.spec.max_epochs, "capped": target >= int(available * src.spec.max_epochs),
        "weight": src.spec.weight, "requested_tokens": src.spec.tokens,
        "where": list(src.spec.where) if src.spec.where else None,
        "grouped": GROUP in src.table.column_names,
    }


def iter_mixture_texts(path: str | Path, batch_rows: int = 1024) -> Iterator[list[str]]:
    """Texts of a mixture (or any source; a path or a URI) in order, in batches: the input of ``curate tokenize``."""
    import pyarrow.parquet as pq

    for f in source_files(path):
        if f.endswith(".parquet"):
            with fs.open_file(f, "rb") as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_rows, columns=["text"]):
                    yield batch.column(0).to_pylist()
        else:
            rows = [r["text"] for r in _jsonl_rows(f)]
            for i in range(0, len(rows), batch_rows):
                yield rows[i:i + batch_rows]
