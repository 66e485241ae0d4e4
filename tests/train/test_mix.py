"""Mixtures: token targets, repetition caps, determinism, knn_order groups kept contiguous."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.train.mix import MixtureSpec, SourceSpec, build_mixture, load_spec, parse_spec, token_targets


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_mixture(out: Path) -> list[dict]:
    return pa.concat_tables(pq.read_table(p) for p in sorted((out / "data").glob("part-*.parquet"))).to_pylist()


@pytest.fixture(scope="module")
def corpora(shared_data, tmp_path_factory) -> dict[str, Path]:
    """Two real sources (copied to tmp at run time, trimmed to keep the test fast)."""
    tmp = tmp_path_factory.mktemp("mix-src")
    news = read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", limit=400)
    speeches = read_jsonl(shared_data / "corpora" / "nltk_inaugural.jsonl")
    return {"news": write_jsonl(tmp / "news.jsonl", [{"id": r["id"], "text": r["text"]} for r in news]),
            "speeches": write_jsonl(tmp / "speeches.jsonl", [{"id": r["id"], "text": r["text"]} for r in speeches])}


def test_targets_follow_weights_and_redistribute_capped_shortfall():
    spec = MixtureSpec(sources=(SourceSpec("a", Path("a"), weight=1.0), SourceSpec("b", Path("b"), weight=1.0),
                                SourceSpec("c", Path("c"), weight=2.0, max_epochs=2.0)), total_tokens=1000)
    # b can give at most 100 tokens; its shortfall goes to a and c in ratio 1:2
    assert token_targets(spec, {"a": 10_000, "b": 100, "c": 10_000}) == {"a": 300, "b": 100, "c": 600}
    # c capped at 2 epochs of 150 tokens
    assert token_targets(spec, {"a": 10_000, "b": 10_000, "c": 150}) == {"a": 350, "b": 350, "c": 300}
    explicit = MixtureSpec(sources=(SourceSpec("a", Path("a"), tokens=50), SourceSpec("b", Path("b"), weight=1.0)),
                           total_tokens=500)
    assert token_targets(explicit, {"a": 1000, "b": 1000}) == {"a": 50, "b": 450}


def test_mixture_is_deterministic_and_meets_budget(corpora, tmp_path):
    raw = {"sources": {"news": {"path": str(corpora["news"]), "weight": 3},
                       "speeches": {"path": str(corpora["speeches"]), "weight": 1}},
           "total_tokens": 100_000, "seed": 7, "rows_per_shard": 150}
    m1 = build_mixture(parse_spec(raw), tmp_path / "m1")
    m2 = build_mixture(parse_spec(raw), tmp_path / "m2")
    m3 = build_mixture(parse_spec({**raw, "seed": 8}), tmp_path / "m3")
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    assert [s["sha256"] for s in m3["shards"]] != [s["sha256"] for s in m1["shards"]]  # the seed matters
    assert len(m1["shards"]) > 1
    rows = read_mixture(tmp_path / "m1")
    assert [r["position"] for r in rows] == list(range(len(rows)))
    assert [r["id"] for r in rows] != [r["id"] for r in read_mixture(tmp_path / "m3")]
    news, speeches = m1["sources"]["news"], m1["sources"]["speeches"]
    assert news["target_tokens"] == 75_000 and speeches["target_tokens"] == 25_000
    # a source overshoots its target by less than one document
    longest = max(r["tokens"] for r in rows)
    for s in (news, speeches):
        assert s["target_tokens"] <= s["tokens"] < s["target_tokens"] + longest
    assert m1["total_tokens"] == sum(r["tokens"] for r in rows) == news["tokens"] + speeches["tokens"]
    # shuffled: the two sources are interleaved, not concatenated
    first_half = Counter(r["source"] for r in rows[: len(rows) // 2])
    assert first_half["news"] > 0 and first_half["speeches"] > 0


def test_repetitions_are_capped_by_max_epochs(corpora, tmp_path):
    spec = parse_spec({"sources": {"speeches": {"path": str(corpora["speeches"]), "weight": 1, "max_epochs": 2.5}},
                       "total_tokens": 10**9, "seed": 1})
    m = build_mixture(spec, tmp_path / "m")
    counts = Counter(r["id"] for r in read_mixture(tmp_path / "m"))
    assert max(counts.values()) == 3 and min(counts.values()) == 2
    src = m["sources"]["speeches"]
    assert src["capped"] and 2.5 <= src["epochs"] < 2.6
    rows = read_mixture(tmp_path / "m")
    assert {r["epoch"] for r in rows} == {0, 1, 2}


def test_knn_groups_stay_contiguous_and_in_order(tmp_path, shared_data):
    docs = read_jsonl(shared_data / "corpora" / "nltk_abc.jsonl", limit=120)
    stage = tmp_path / "03-knn_order"
    (stage / "data").mkdir(parents=True)
    (stage / "_manifest.json").write_text("{}")
    rows = [{"id": d["id"], "text": d["text"], "order": i, "group": f"g{i // 10}"} for i, d in enumerate(docs)]
    half = len(rows) // 2
    pq.write_table(pa.Table.from_pylist(rows[half:]), stage / "data" / "part-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:half]), stage / "data" / "part-00000.parquet")
    spec = parse_spec({"sources": {"abc": {"path": str(stage)}}, "seed": 3})
    m = build_mixture(spec, tmp_path / "m")
    out = read_mixture(tmp_path / "m")
    assert len(out) == len(rows) and m["sources"]["abc"]["grouped"]
    groups = [r["group"] for r in out]
    runs = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert len(runs) == len(set(groups)) == 12  # each group appears as one run
    assert runs != sorted(runs, key=lambda g: int(g[1:]))  # groups are shuffled by seed
    order_of = {r["id"]: r["order"] for r in rows}
    for g in set(groups):
        orders = [order_of[r["id"]] for r in out if r["group"] == g]
        assert orders == sorted(orders)


def test_spec_errors_are_clear(tmp_path, corpora):
    with pytest.raises(CurateError, match="unknown key"):
        parse_spec({"sources": {"a": {"path": "x", "wieght": 1}}})
    with pytest.raises(CurateError, match="total_tokens"):
        parse_spec({"sources": {"a": {"path": "x", "weight": 1}}})
    with pytest.raises(CurateError, match="not found"):
        build_mixture(parse_spec({"sources": {"a": str(tmp_path / "missing.jsonl")}}), tmp_path / "o")
    spec_file = tmp_path / "mix.yaml"
    spec_file.write_text(f"sources:\n  s: {{path: {corpora['speeches']}, tokens: 1000}}\nseed: 2\n")
    build_mixture(load_spec(spec_file), tmp_path / "o")
    with pytest.raises(CurateError, match="exists"):
        build_mixture(load_spec(spec_file), tmp_path / "o")


def test_example_mixture_spec_parses():
    spec = load_spec(Path(__file__).resolve().parents[2] / "pipelines" / "mixture_example.yaml")
    assert spec.total_tokens and {s.name for s in spec.sources}
