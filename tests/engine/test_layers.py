"""Layers: score and select store only ids and what they add or decide, and every result stays the same."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import shard_hashes

from curate.core import CurateError
from curate.engine.runner import run_pipeline
from curate.io import shards
from curate.io.shards import LAYER, layer_group, read_stage
from curate.report.data import load_steps, source_funnel

STAGES = [{"score": ["gopher_quality", "gopher_repetition"]}, {"domain_label": {"column": "source"}}, {"select": {}},
          "exact_dedup"]
WORDS = ("the and of to is in that it was for on are with as his they be at one have this from or had by "
         "river stone garden window market letter winter kitchen silver engine harbour meadow").split()


def _docs(n: int = 700) -> list[dict]:
    rng = random.Random(3)
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 140))) + "."
        docs.append({"id": f"d{i:04d}", "text": text if i % 9 else "the same text, copied",
                     "source": ["web", "books"][i % 2]})
    return docs


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """The same pipeline stored with layers (the default) and written in full."""
    tmp = tmp_path_factory.mktemp("layers")
    (tmp / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in _docs()))
    out = {}
    for name, layers in (("layered", True), ("full", False)):
        pipeline = {"name": name, "input": str(tmp / "in.jsonl"), "seed": 1, "stages": STAGES,
                    "output": {"path": str(tmp / name), "rows_per_shard": 250, "layers": layers}}
        out[name] = run_pipeline(pipeline, spark=spark)
    return out


def _manifest(result, step: str) -> dict:
    return json.loads((result.output_dir / step / "_manifest.json").read_text())


def test_layers_give_the_same_shards_and_stats_as_full_writes(runs):
    layered, full = runs["layered"], runs["full"]
    for step in ("04-exact_dedup", "final"):
        assert shard_hashes(_manifest(layered, step)) == shard_hashes(_manifest(full, step))
    for step in ("01-score", "02-domain_label", "03-select", "04-exact_dedup"):
        assert _manifest(layered, step)["stats"] == _manifest(full, step)["stats"]
    select = _manifest(layered, "03-select")["stats"]
    assert select["rows_out"] > 100 and sum(select["rejected"].values()) > 100  # both sides are exercised


def test_score_and_select_store_only_ids_and_what_they_add(runs):
    out = runs["layered"].output_dir
    score, label, select = (_manifest(runs["layered"], s) for s in ("01-score", "02-domain_label", "03-select"))
    assert score["outputs"]["data"][LAYER]["over"] == "00-read"
    assert label["outputs"]["data"][LAYER]["over"] == "01-score"  # layers stack
    assert select["outputs"]["rejected"][LAYER]["rows_where"] == "rejected"
    stored = {"01-score": ["id", "gopher_quality", "gopher_repetition"], "02-domain_label": ["id", "domain"],
              "03-select": ["id", "reject_reason"]}
    for step, columns in stored.items():
        for shard in _manifest(runs["layered"], step)["outputs"]["data"]["shards"]:
            assert pq.read_schema(out / step / shard["file"]).names == columns
    written = sum(s["bytes"] for step in (score, label, select) for s in step["outputs"]["data"]["shards"])
    full = sum(s["bytes"] for step in stored for output in ("data", "rejected")
               for s in _manifest(runs["full"], step)["outputs"].get(output, {}).get("shards", []))
    assert written * 5 < full


@pytest.mark.parametrize("reader", ["join", "row groups"])
def test_both_layer_readers_give_the_full_rows(spark, runs, monkeypatch, reader):
    if reader == "row groups":  # the reader object stores use: one task per row group, ids checked
        monkeypatch.setattr(shards, "BROADCAST_LAYER_BYTES", -1)
    for step, output in (("01-score", "data"), ("02-domain_label", "data"), ("03-select", "data"),
                         ("03-select", "rejected")):
        got = read_stage(spark, runs["layered"].output_dir / step, output)
        want = read_stage(spark, runs["full"].output_dir / step, output)
        assert got.schema == want.schema
        assert sorted(got.collect()) == sorted(want.collect())


def test_report_reads_layers_like_full_outputs(runs):
    layered, full = (source_funnel(load_steps(runs[name].output_dir)) for name in ("layered", "full"))
    assert layered == full and sum(layered["kept"]["03-select"].values()) == runs["full"].stats["03-select"]["rows_out"]


def test_a_changed_base_or_misaligned_layer_is_an_error(spark, runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["layered"].output_dir, copy)
    manifest = copy / "01-score" / "_manifest.json"
    m = json.loads(manifest.read_text())
    m["outputs"]["data"][LAYER]["over_fingerprint"] = "0" * 64
    manifest.write_text(json.dumps(m))
    with pytest.raises(CurateError, match="00-read changed after 01-score was built over it"):
        read_stage(spark, copy / "01-score")

    base, top = tmp_path / "base.parquet", tmp_path / "top.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"]}), base)
    pq.write_table(pa.table({"id": ["b", "a"], "score": [1.0, 2.0]}), top)
    with pytest.raises(CurateError, match="does not hold the ids"):
        layer_group([([str(base)], None, {}), ([str(top)], ["score"], {})], 0, 0, ["id", "text", "score"])


def test_mixing_from_a_layer_names_the_way_out(runs):
    from curate.train.mix import source_files

    with pytest.raises(CurateError, match="final/"):
        source_files(str(Path(runs["layered"].output_dir) / "03-select"))
