"""The ``score`` and ``select`` stages on a real SparkSession: one pass, struct columns, reasons,
accounting, parity with a plain Python loop, determinism, and the ``curate filter`` command."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import LINES, SENTENCES, UDHR, configured_filters, read_jsonl

import filters
from curate.core import REJECT_REASON, CurateError
from curate.io.shards import read_stage
from curate.quality.score import META_KEY, format_funnel, score, select

CRAFTED = [
    {"id": "good", "text": LINES, "source": "a"},
    {"id": "short", "text": "Too short to keep.", "source": "a"},
    {"id": "lorem", "text": LINES + "\nLorem ipsum dolor sit amet.", "source": "b"},
    {"id": "few", "text": "\n".join(SENTENCES[:4]), "source": "b"},  # 55 words, 4 C4 sentences
    {"id": "null", "text": None, "source": "b"},
]


def frame(spark, rows):
    from pyspark.sql.types import StringType, StructField, StructType

    columns = list(rows[0])
    schema = StructType([StructField(c, StringType()) for c in columns])
    return spark.createDataFrame([tuple(r.get(c) for c in columns) for r in rows], schema)


@pytest.fixture
def ctx(stage_ctx):
    return stage_ctx()


def by_id(df) -> dict[str, dict]:
    return {r["id"]: r.asDict(recursive=True) for r in df.collect()}


def test_score_stores_struct_columns_and_params(spark, ctx):
    out = score(frame(spark, CRAFTED), ctx, filters=["gopher_quality", {"c4": {"min_words_per_line": 2}}])
    df = out.kept
    assert df.columns == ["id", "text", "source", "gopher_quality", "c4"]
    assert df.schema["gopher_quality"].dataType.fieldNames() == list(filters.get("gopher_quality").keys)
    meta = df.schema["c4"].metadata[META_KEY]
    assert meta["name"] == "c4" and meta["params"]["min_words_per_line"] == 2
    rows = by_id(df)
    assert rows["good"]["gopher_quality"]["words"] == 81.0
    assert rows["good"]["c4"]["sentences"] == 6.0
    assert rows["null"]["text"] is None and rows["null"]["gopher_quality"]["words"] == 0.0
    assert out.rejected is None


def test_select_first_reason_accounting_and_funnel(spark, ctx):
    scored = score(frame(spark, CRAFTED), ctx, filters=["gopher_quality", "c4"]).kept
    out = select(scored, ctx, filters={})
    kept, rejected = by_id(out.kept), by_id(out.rejected)
    assert set(kept) == {"good"}
    assert REJECT_REASON not in out.kept.columns
    assert {k: r[REJECT_REASON] for k, r in rejected.items()} == {
        "short": "gopher_quality:word_count", "lorem": "c4:lorem_ipsum",
        "few": "c4:too_few_sentences", "null": "gopher_quality:word_count"}
    assert set(out.rejected.columns) == set(scored.columns) | {REJECT_REASON}
    funnel = out.stats(out.kept, out.rejected)["funnel"]
    assert funnel["kept"] == {"docs": 1, "chars": len(LINES)}
    assert funnel["rejected"]["gopher_quality:word_count"] == {"docs": 2, "chars": len("Too short to keep.")}
    assert funnel["by_source"]["b"]["rejected"]["c4:lorem_ipsum"]["docs"] == 1
    assert funnel["by_source"]["a"]["kept"]["docs"] == 1
    table = format_funnel(funnel)
    assert "gopher_quality:word_count" in table and table.splitlines()[1].split()[:2] == ["input", "5"]


def test_select_overrides_skips_and_errors(spark, ctx):
    scored = score(frame(spark, CRAFTED), ctx, filters=["gopher_quality", "c4"]).kept
    loose = select(scored, ctx, filters={"gopher_quality": {"min_words": 1, "min_stop_words": 0}, "c4": False})
    assert set(by_id(loose.kept)) == {"good", "short", "lorem", "few"}
    strict = select(scored, ctx, filters={"gopher_quality": {"min_words": 82}})
    assert by_id(strict.rejected)["good"][REJECT_REASON] == "gopher_quality:word_count"
    with pytest.raises(CurateError, match="min_words_per_line changes the scores"):
        select(scored, ctx, filters={"c4": {"min_words_per_line": 1}})
    with pytest.raises(CurateError, match="fineweb not scored; scored filters: gopher_quality, c4"):
        select(scored, ctx, filters={"fineweb": {}})
    with pytest.raises(CurateError, match="unknown parameter"):
        select(scored, ctx, filters={"c4": {"min_sentence": 1}})
    with pytest.raises(CurateError, match="run the 'score' stage first"):
        select(frame(spark, CRAFTED), ctx)
    with pytest.raises(CurateError, match="list at least one filter"):
        score(frame(spark, CRAFTED), ctx, filters=[])
    with pytest.raises(CurateError, match="listed twice"):
        score(frame(spark, CRAFTED), ctx, filters=["c4", "c4"])


def test_select_reads_params_back_from_parquet(spark, ctx, tmp_path):
    """Thresholds given at score time survive a write/read (column metadata) and need no rescoring."""
    scored = score(frame(spark, CRAFTED), ctx, filters=[{"gopher_quality": {"min_words": 1, "min_stop_words": 0}}]).kept
    scored.write.parquet(str(tmp_path / "scored"))
    reread = spark.read.parquet(str(tmp_path / "scored"))
    assert "short" in by_id(select(reread, ctx).kept)
    assert "short" not in by_id(select(reread, ctx, filters={"gopher_quality": {"min_words": 50}}).kept)


def parity_docs(shared_data) -> list[dict]:
    docs = read_jsonl(shared_data / "corpora" / "nltk_webtext.jsonl", 40)
    docs += read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", 60)
    docs += read_jsonl(UDHR, 40)
    rows = [{"id": d["id"], "text": d["text"], "source": d["source"],
             "url": f"https://{'bad.example' if i % 7 == 0 else 'ok.example'}/{i}"} for i, d in enumerate(docs)]
    rows[3]["text"] += " Contact me at someone@example.com or 8.8.4.4."
    return rows + [dict(r, id=f"crafted-{r['id']}", url=None) for r in CRAFTED]


def python_reference(configured: list, docs: list[dict]) -> dict[str, dict]:
    """The plain loop: every filter in order, modifiers rewriting text, first failing rule wins."""
    out = {}
    for doc in docs:
        current = dict(doc, text=doc["text"] or "")
        row = {}
        for flt in configured:
            if flt.modifies_text:
                current["text"], row[flt.name] = flt.apply(current["text"])
            else:
                row[flt.name] = flt.score(current)
            current.update({column: row[flt.name][key] for key, column in flt.promote.items()})
        reasons = [f"{f.name}:{f.reject(row[f.name])}" for f in configured if f.reject(row[f.name])]
        row["text"] = current["text"] if doc["text"] is not None else None
        row[REJECT_REASON] = reasons[0] if reasons else None
        out[doc["id"]] = row
    return out


def test_parity_with_python_loop_for_every_filter(spark, ctx, shared_data, tmp_path):
    configured = configured_filters(tmp_path / "lists")
    order = ["pii"] + [n for n in configured if n != "pii"]  # the modifier first: others see redacted text
    instances = [configured[n] for n in order]
    assert set(order) == set(filters.registry())
    specs = [{n: {k: v for k, v in filters.params_of(configured[n]).items()}} for n in order]
    docs = parity_docs(shared_data)
    scored = score(frame(spark, docs).repartition(3, "id"), ctx, filters=specs).kept
    selected = select(scored, ctx, filters={})
    spark_rows = {**by_id(selected.kept), **by_id(selected.rejected)}
    expected = python_reference(instances, docs)
    assert len(spark_rows) == len(docs)
    for doc_id, want in expected.items():
        got = spark_rows[doc_id]
        for name in order:
            assert got[name] == want[name], (doc_id, name)
        assert got["text"] == want["text"], doc_id
        assert got.get(REJECT_REASON) == want[REJECT_REASON], doc_id
        assert got["language"] == want["lang_id"]["language"]
    assert "<EMAIL>" in spark_rows[docs[3]["id"]]["text"]
    reasons = {r.get(REJECT_REASON) for r in spark_rows.values()}
    assert "url_blocklist:domain" in reasons and None in reasons


def test_same_output_whatever_the_partitioning(spark, ctx, shared_data):
    docs = read_jsonl(shared_data / "corpora" / "nltk_abc.jsonl", 150)
    rows = [{"id": d["id"], "text": d["text"]} for d in docs]
    results = []
    for parts in (1, 4):
        df = frame(spark, rows).repartition(parts, "id")
        out = select(score(df, ctx, filters=["gopher_quality", "gopher_repetition", "fineweb"]).kept, ctx)
        results.append((sorted(map(tuple, out.kept.select("id", "fineweb").collect())),
                        sorted(map(tuple, out.rejected.select("id", REJECT_REASON).collect()))))
    assert results[0] == results[1]
    assert results[0][0] and results[0][1]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_curate_filter_command_reuses_scores(spark, tmp_path, monkeypatch):
    from curate.commands.filter import command

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", [r for r in CRAFTED if r["text"] is not None])
    args = ["in.jsonl", "-o", "out", "--filter", "gopher_quality", "--filter", "c4",
            "--set", "c4.min_sentences=1", "--format", "jsonl"]
    first = CliRunner().invoke(command, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "gopher_quality:word_count" in first.output and "c4:lorem_ipsum" in first.output
    kept_line = [line for line in first.output.splitlines() if line.startswith("kept ")][0]
    assert kept_line.split()[1] == "2"  # good + few
    score_manifest = json.loads((tmp_path / "out" / "01-score" / "_manifest.json").read_text())
    from pyspark.sql.types import StructType

    stored = StructType.fromJson(score_manifest["outputs"]["data"]["schema"])["c4"].metadata[META_KEY]
    assert stored["params"]["min_sentences"] == 5  # thresholds go to select; the stored ones are defaults
    select_manifest = json.loads((tmp_path / "out" / "02-select" / "_manifest.json").read_text())
    assert select_manifest["params"] == {"filters": {"c4": {"min_sentences": 1}}}
    assert select_manifest["stats"]["funnel"]["rejected"]["c4:lorem_ipsum"]["docs"] == 1
    rejected = read_stage(spark, tmp_path / "out" / "02-select", "rejected")
    assert rejected.count() == 2

    second = CliRunner().invoke(command, [*args[:-4], "--set", "gopher_quality.min_words=1"],
                                catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "gopher_quality:word_count" not in second.output
    assert json.loads((tmp_path / "out" / "01-score" / "_manifest.json").read_text()) == score_manifest

    bad = CliRunner().invoke(command, ["in.jsonl", "-o", "out", "--filter", "c4", "--set", "gopher_quality.x=1"])
    assert bad.exit_code != 0 and "not one of the --filter names" in str(bad.exception)
