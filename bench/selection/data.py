"""The pool (all shared corpora, cut into pieces, mixed, deduplicated) and the target (benchmark
questions with their correct answers), each split into what selectors may see and what is held out.

Splits are by a seeded hash of the text key, so identical texts always land on the same side.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bench.selection.leak import text_key
from bench.selection.presets import Preset
from curate.core import CurateError
from curate.io.jsonl import read_records
from curate.targeted.benchmarks import stable_hash

DATA = Path(os.environ.get("SHARED_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")).resolve()
MIN_PIECE_CHARS = 100


@dataclass(frozen=True)
class Inputs:
    pool: Path                    # pieces selectors may choose from (id, text, source)
    pool_heldout: Path            # pieces no selector sees: held-out pool loss
    target_visible: Path          # target examples selectors may see (id, benchmark, split, text, ...)
    target_heldout: Path          # held-out target text (id, text): bits-per-byte
    visible_benchmarks: dict      # benchmark name -> multiple-choice file of visible items (the zoo's error)
    heldout_benchmarks: dict      # benchmark name -> multiple-choice file of held-out items (accuracy)
    stats: dict


def unit(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from a seeded hash of ``key``."""
    return stable_hash(key, seed) / 2**64


def pieces(text: str, chunk_chars: int) -> list[str]:
    """``text`` cut at line breaks into consecutive pieces of about ``chunk_chars`` characters."""
    out, current = [], []
    size = 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        size += len(line)
        if size >= chunk_chars:
            out.append("".join(current))
            current, size = [], 0
    if current:
        out.append("".join(current))
    return [p.strip() for p in out if len(p.strip()) >= MIN_PIECE_CHARS]


def corpus_pieces(path: Path, chunk_chars: int) -> list[dict]:
    source = path.name.split(".")[0]
    return [{"id": f"{record['id']}#{k}", "text": piece, "source": source}
            for _, record in read_records(path) for k, piece in enumerate(pieces(record["text"], chunk_chars))]


def build_pool(data: Path, preset: Preset, seed: int) -> tuple[list[dict], list[dict], dict]:
    """(selectable pieces, held-out pieces, stats): up to ``pieces_per_corpus`` per corpus, exact
    duplicates (folded text) removed keeping the smallest id."""
    files = sorted((data / "corpora").glob("*.jsonl*"))
    if not files:
        raise CurateError(f"no corpora in {data / 'corpora'}; set SHARED_DATA_DIR to the shared data folder")
    chosen, per_source = [], {}
    for path in files:
        rows = sorted(corpus_pieces(path, preset.chunk_chars), key=lambda r: (stable_hash(r["id"], seed), r["id"]))
        chosen.extend(rows[:preset.pieces_per_corpus])
        per_source[rows[0]["source"] if rows else path.name] = min(len(rows), preset.pieces_per_corpus)
    unique = {}
    for row in sorted(chosen, key=lambda r: r["id"]):
        unique.setdefault(text_key(row["text"]), row)
    selectable, heldout = [], []
    for key, row in sorted(unique.items(), key=lambda kv: kv[1]["id"]):
        (heldout if unit(key, seed) < preset.pool_heldout_fraction else selectable).append(row)
    stats = {"pieces_per_source": per_source, "duplicates_removed": len(chosen) - len(unique),
             "pool_pieces": len(selectable), "pool_heldout_pieces": len(heldout),
             "pool_chars": sum(len(r["text"]) for r in selectable)}
    return selectable, heldout, stats


def target_text(record: dict) -> str:
    """A benchmark item as target-like text: the question followed by its correct answer."""
    return f"{record['query']} {record['choices'][int(record['gold'])]}"


def split_target(data: Path, preset: Preset, seed: int) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Per benchmark: (visible items, held-out items), duplicates (folded text) removed."""
    visible, heldout = {}, {}
    for name in preset.benchmarks:
        path = data / "benchmarks" / f"{name}.jsonl"
        if not path.is_file():
            raise CurateError(f"benchmark file not found: {path}")
        seen, vis, held = set(), [], []
        for _, record in read_records(path):
            if preset.items_per_benchmark and len(seen) >= preset.items_per_benchmark:
                break
            key = text_key(target_text(record))
            if key in seen:
                continue
            seen.add(key)
            (vis if unit(key, seed) < preset.visible_fraction else held).append(record)
        visible[name], heldout[name] = vis, held
    return visible, heldout


def write_jsonl(rows, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def prepare(out: Path, preset: Preset, seed: int = 0, data: Path = DATA) -> Inputs:
    """Write the pool and target files under ``out/inputs`` and return their paths."""
    if not data.is_dir():
        raise CurateError(f"shared data not found at {data}; set SHARED_DATA_DIR")
    base = out / "inputs"
    pool, pool_heldout, stats = build_pool(data, preset, seed)
    visible, heldout = split_target(data, preset, seed)
    target_rows = [{"id": r["id"], "benchmark": name, "split": "train", "text": target_text(r)}
                   for name, rows in visible.items() for r in rows]
    stats.update(target_visible={k: len(v) for k, v in visible.items()},
                 target_heldout={k: len(v) for k, v in heldout.items()})
    return Inputs(
        pool=write_jsonl(pool, base / "pool.jsonl"),
        pool_heldout=write_jsonl(pool_heldout, base / "pool_heldout.jsonl"),
        target_visible=write_jsonl(target_rows, base / "target_visible.jsonl"),
        target_heldout=write_jsonl(({"id": r["id"], "text": target_text(r)} for rows in heldout.values() for r in rows),
                                   base / "target_heldout.jsonl"),
        visible_benchmarks={k: write_jsonl(v[:preset.zoo_eval_items], base / "visible" / f"{k}.jsonl")
                            for k, v in visible.items()},
        heldout_benchmarks={k: write_jsonl(v[:preset.eval_items], base / "heldout" / f"{k}.jsonl")
                            for k, v in heldout.items()},
        stats=stats)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(id, text) of a JSONL file written here."""
    return [(str(r["id"]), r.get("text") or target_text(r)) for _, r in read_records(path)]
