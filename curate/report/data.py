"""What a run report shows, read from the stage manifests and (column-projected) shards.

Only small aggregates are built: counts per (source, reason) are streamed batch by batch,
and score histograms use at most ``max_rows`` values per column (the first shards of a
stage, which are hash-partitioned by id, so a pseudo-random sample of the corpus).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from curate.core import REJECT_REASON, CurateError
from curate.io.layout import DATA_DIR, FINAL_DIR, MANIFEST, QUARANTINE_DIR, READ_DIR, REJECTED_DIR
from curate.io.shards import LAYER, layer_tables

FILTER_META = "curate_filter"
NUMERIC = {"double", "float", "integer", "long", "short", "byte"}
BYTES_PER_TOKEN = 4.0  # the estimate `curate mix` uses without a tokenizer


@dataclass
class Step:
    dirname: str
    path: Path
    manifest: dict

    @property
    def stage(self) -> str:
        return self.manifest.get("stage", self.dirname)

    @property
    def stats(self) -> dict:
        return self.manifest.get("stats", {})

    @property
    def params(self) -> dict:
        return self.manifest.get("params", {})

    def schema_fields(self, output: str = DATA_DIR) -> list[dict]:
        return (self.manifest.get("outputs", {}).get(output, {}).get("schema") or {}).get("fields", [])

    def shard_files(self, output: str = DATA_DIR) -> list[Path]:
        shards = self.manifest.get("outputs", {}).get(output, {}).get("shards", [])
        return [self.path / s["file"] for s in shards if (self.path / s["file"]).is_file()]

    def batches(self, output: str, columns: list[str]) -> Iterator:
        """Record batches of those of ``columns`` that ``output`` has (a layer read together with
        the stages it lies over); nothing when it has none of them."""
        import pyarrow.parquet as pq

        entry = self.manifest.get("outputs", {}).get(output) or {}
        names = {f["name"] for f in (entry.get("schema") or {}).get("fields", [])}
        present = [c for c in columns if c in names]
        if not present:
            return
        if LAYER in entry:
            for table in layer_tables(self.path, entry, present):
                yield from table.to_batches()
            return
        for f in self.shard_files(output):
            yield from pq.ParquetFile(f).iter_batches(columns=present, batch_size=65_536)


@dataclass
class ScoreColumn:
    """One numeric score: ``column.field`` (or a top-level ``column``), first added at ``step``."""

    column: str
    field: str | None
    step: str
    thresholds: dict[str, float] = field(default_factory=dict)  # label -> value

    @property
    def name(self) -> str:
        return f"{self.column}.{self.field}" if self.field else self.column


def load_steps(output: Path) -> list[Step]:
    """Complete steps of a run (00-read, NN-stage…, final) in order."""
    output = Path(output)
    if not output.is_dir():
        raise CurateError(f"not a directory: {output}")
    steps = []
    for d in sorted(p for p in output.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if (d / MANIFEST).is_file():
            steps.append(Step(d.name, d, json.loads((d / MANIFEST).read_text(encoding="utf-8"))))
    if not steps:
        raise CurateError(f"no complete stages under {output}; run `curate run PIPELINE` first")
    return steps


def load_mixture(path: Path) -> dict:
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        raise CurateError(f"no mixture manifest at {manifest}; pass a `curate mix` output directory")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    if data.get("kind") != "mixture":
        raise CurateError(f"{path} is not a `curate mix` output (its manifest has no kind: mixture)")
    return data


# ---------------------------------------------------------------------------- funnel


def funnel(steps: list[Step]) -> list[dict[str, Any]]:
    """Per step: documents and characters in/out, removed by reason (quarantine included)."""
    rows = []
    for s in steps:
        st = s.stats
        removed = dict(st.get("rejected") or {})
        for reason, n in (st.get("quarantine_reasons") or {}).items():
            removed[f"quarantine:{reason}"] = n
        if st.get("quarantined") and not st.get("quarantine_reasons"):
            removed["quarantine"] = st["quarantined"]
        chars = st.get("chars_out")
        rows.append({"step": s.dirname, "stage": s.stage, "rows_in": st.get("rows_in", 0),
                     "rows_out": st.get("rows_out", 0), "removed": removed,
                     "chars_out": chars, "tokens_out": round(chars / BYTES_PER_TOKEN) if chars else None,
                     "seconds": (s.manifest.get("timings") or {}).get("seconds")})
    for row, prev in zip(rows[1:], rows):  # final copies the last stage: carry its char count
        if row["chars_out"] is None and row["rows_out"] == prev["rows_out"]:
            row["chars_out"], row["tokens_out"] = prev["chars_out"], prev["tokens_out"]
    return rows


def _count_by(step: Step, output: str, columns: list[str]) -> Counter:
    counts: Counter = Counter()
    for batch in step.batches(output, columns):
        if not all(c in batch.schema.names for c in columns):
            continue
        table = batch.select(columns).to_pydict()
        counts.update(zip(*(table[c] for c in columns)))
    return counts


def source_funnel(steps: list[Step], column: str = "source") -> dict[str, Any] | None:
    """Documents kept per source after each step, and removed per (source, reason)."""
    if not any(f.get("name") == column for f in steps[0].schema_fields()):
        return None
    kept: dict[str, dict[str, int]] = {}
    removed: Counter = Counter()
    for s in steps:
        kept[s.dirname] = {k[0] if k[0] is not None else "(none)": n
                           for k, n in _count_by(s, DATA_DIR, [column]).items()}
        for (src, reason), n in _count_by(s, REJECTED_DIR, [column, REJECT_REASON]).items():
            removed[(src if src is not None else "(none)", reason)] += n
    sources = sorted({src for counts in kept.values() for src in counts} | {src for src, _ in removed})
    return {"column": column, "sources": sources, "kept": kept,
            "removed": {f"{src}\t{reason}": n for (src, reason), n in sorted(removed.items())}}


# ---------------------------------------------------------------------------- scores


def score_columns(steps: list[Step]) -> list[ScoreColumn]:
    """Numeric struct fields (and top-level float columns) added by stages, with known thresholds."""
    seen: set[str] = set()
    out: list[ScoreColumn] = []
    for s in steps:
        if s.dirname in (READ_DIR, FINAL_DIR):
            seen |= {f["name"] for f in s.schema_fields()}
            continue
        for f in s.schema_fields():
            if f["name"] in seen:
                continue
            seen.add(f["name"])
            ftype = f["type"]
            if isinstance(ftype, dict) and ftype.get("type") == "struct":
                params = ((f.get("metadata") or {}).get(FILTER_META) or {}).get("params") or {}
                for sub in ftype["fields"]:
                    if sub["type"] in NUMERIC:
                        out.append(ScoreColumn(f["name"], sub["name"], s.dirname, _thresholds(params, sub["name"])))
            elif ftype in ("double", "float"):
                out.append(ScoreColumn(f["name"], None, s.dirname))
    _apply_selections(out, steps)
    return out


def _thresholds(params: dict, key: str) -> dict[str, float]:
    """A filter's ``min_<key>``/``max_<key>`` parameters (the naming every filter follows)."""
    return {name: float(params[name]) for name in (f"min_{key}", f"max_{key}")
            if isinstance(params.get(name), (int, float)) and not isinstance(params.get(name), bool)}


def _apply_selections(columns: list[ScoreColumn], steps: list[Step]) -> None:
    """Thresholds as the selection stages actually applied them (overrides, budgets)."""
    by_column: dict[str, list[ScoreColumn]] = {}
    for c in columns:
        by_column.setdefault(c.column, []).append(c)
    for s in steps:
        if s.stage == "select":
            for name, override in ((s.params or {}).get("filters") or {}).items():
                for c in by_column.get(name, []):
                    if override is False:
                        c.thresholds = {}
                    elif isinstance(override, dict):
                        c.thresholds.update(_thresholds(override, c.field or ""))
        elif s.stage == "select_budget":
            cut = s.stats.get("effective_threshold")
            target = s.params.get("score")
            for c in columns:
                if isinstance(cut, (int, float)) and c.name == target:
                    c.thresholds[f"{s.dirname} cut"] = float(cut)


def score_values(steps: list[Step], col: ScoreColumn, max_rows: int) -> list[float]:
    """Up to ``max_rows`` non-null values of ``col`` where it was added (before any selection)."""
    import pyarrow.compute as pc

    step = next(s for s in steps if s.dirname == col.step)
    values: list[float] = []
    for batch in step.batches(DATA_DIR, [col.column]):
        array = batch.column(0)
        if col.field is not None:
            array = pc.struct_field(array, col.field)
        values.extend(v for v in array.drop_null().to_pylist() if v == v)  # drop NaN
        if len(values) >= max_rows:
            return values[:max_rows]
    return values


# ---------------------------------------------------------------------------- the rest


def quarantine_summary(output: Path, steps: list[Step], limit: int = 20) -> dict[str, Any]:
    read = next((s for s in steps if s.stage == "read"), None)
    st = read.stats if read else {}
    samples = []
    for f in sorted((Path(output) / QUARANTINE_DIR / DATA_DIR).glob("part-*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if len(samples) >= limit:
                    break
                samples.append(json.loads(line))
    return {"records": st.get("quarantined", 0), "reasons": st.get("quarantine_reasons") or {},
            "file_problems": st.get("file_problems") or [], "repairs": st.get("repairs") or {},
            "skipped_records": st.get("skipped_records") or {}, "samples": samples}


def dedup_summaries(steps: list[Step]) -> list[dict[str, Any]]:
    out = []
    for s in steps:
        st = s.stats
        if s.stage in ("minhash_dedup", "dedup_against", "exact_dedup"):
            out.append({"step": s.dirname, "stage": s.stage, "removed": sum((st.get("rejected") or {}).values()),
                        "component_sizes": st.get("component_sizes") or {},
                        "details": {k: st[k] for k in ("duplicate_groups", "components", "docs_in_components",
                                                       "candidate_pairs", "verified_pairs",
                                                       "false_positives_removed", "bands", "rows")
                                    if st.get(k) is not None}})
    return out


def domain_summaries(steps: list[Step]) -> list[dict[str, Any]]:
    """Each ``domain_label`` step: its column, how domains were assigned, and per domain the
    documents, tokens and (for embedding clusters) top terms."""
    return [{"step": s.dirname, "column": s.stats.get("column"), "source": s.stats.get("source"),
             "token_count": s.stats.get("token_count"), "domains": s.stats.get("domains") or {}}
            for s in steps if s.stage == "domain_label"]


def ordering_summaries(steps: list[Step]) -> list[dict[str, Any]]:
    out = []
    for s in steps:
        st = s.stats
        if "mean_adjacent_similarity" in st:
            out.append({"step": s.dirname, "similarity": st.get("mean_adjacent_similarity"),
                        "random_similarity": st.get("random_mean_adjacent_similarity"),
                        "same_label": st.get("adjacent_same_label"),
                        "random_same_label": st.get("random_adjacent_same_label"),
                        "details": {k: st[k] for k in ("rows_in", "k", "clusters", "groups", "adjacent_pairs",
                                                       "near_duplicate_adjacent", "random_sample")
                                    if st.get(k) is not None}})
    return out
