"""The stage runner: skip complete stages, refuse changed ones, --from/--only/--force, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tree_digest

from curate.core import CurateError
from curate.engine.runner import run_pipeline
from curate.io.shards import load_manifest, read_stage

QUIET = {"log": lambda m: None}


def write_corpus(path: Path, n: int, dup_every: int = 7) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            body = f"Shared body number {i // (3 * dup_every)}." if i % dup_every == 0 else f"Unique text {i} " * 5
            fh.write(json.dumps({"id": f"d{i:05d}", "text": body, "source": f"s{i % 3}"}) + "\n")
    return path


def pipeline(tmp_path: Path, fraction: float = 0.5, **over) -> dict:
    return {"name": "t", "input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "out"), "seed": 3,
            "stages": ["exact_dedup", {"sample": {"fraction": fraction}}], **over}


@pytest.fixture()
def corpus(tmp_path):
    write_corpus(tmp_path / "in.jsonl", 300)
    return tmp_path


def test_rerun_skips_complete_stages(spark, corpus):
    first = run_pipeline(pipeline(corpus), spark=spark, **QUIET)
    assert [s.status for s in first.steps] == ["ran"] * 4
    before = tree_digest(corpus / "out")
    manifest = load_manifest(corpus / "out" / "02-sample")
    again = run_pipeline(pipeline(corpus), spark=spark, **QUIET)
    assert [s.status for s in again.steps] == ["skipped"] * 4
    assert tree_digest(corpus / "out") == before
    assert load_manifest(corpus / "out" / "02-sample") == manifest
    st = first.stats
    # multiples of 7 below 300 share text in groups of three (0,7,14), (21,28,35)…: 14 full groups
    assert st["01-exact_dedup"]["rejected"] == {"exact_duplicate": 28}
    assert st["02-sample"]["rows_in"] == st["01-exact_dedup"]["rows_out"]
    assert st["02-sample"]["rows_out"] + st["02-sample"]["rejected"]["sample"] == st["02-sample"]["rows_in"]
    for key in ("config_hash", "input_fingerprint", "code_version", "params", "outputs", "timings"):
        assert key in manifest
    assert all(len(s["sha256"]) == 64 for s in manifest["outputs"]["data"]["shards"])


def test_changed_config_is_refused_until_from(spark, corpus):
    run_pipeline(pipeline(corpus), spark=spark, **QUIET)
    with pytest.raises(CurateError, match="--from sample"):
        run_pipeline(pipeline(corpus, fraction=0.9), spark=spark, **QUIET)
    redo = run_pipeline(pipeline(corpus, fraction=0.9), from_stage="sample", spark=spark, **QUIET)
    assert [s.status for s in redo.steps] == ["skipped", "skipped", "ran", "ran"]
    assert redo.stats["02-sample"]["rows_out"] > 0.8 * redo.stats["02-sample"]["rows_in"]


def test_changed_input_is_refused_until_force(spark, corpus):
    run_pipeline(pipeline(corpus), spark=spark, **QUIET)
    write_corpus(corpus / "in.jsonl", 301)
    with pytest.raises(CurateError, match="input of 00-read changed"):
        run_pipeline(pipeline(corpus), spark=spark, **QUIET)
    redo = run_pipeline(pipeline(corpus), force=True, spark=spark, **QUIET)
    assert redo.stats["00-read"]["rows_in"] == 301


def test_only_runs_one_stage_and_needs_its_input(spark, corpus):
    with pytest.raises(CurateError, match="not complete"):
        run_pipeline(pipeline(corpus), only="sample", spark=spark, **QUIET)
    res = run_pipeline(pipeline(corpus), only="read", spark=spark, **QUIET)
    assert [s.dirname for s in res.steps] == ["00-read"]
    assert not (corpus / "out" / "01-exact_dedup").exists()
    res = run_pipeline(pipeline(corpus), only="exact_dedup", spark=spark, **QUIET)
    assert [(s.dirname, s.status) for s in res.steps] == [("01-exact_dedup", "ran")]
    again = run_pipeline(pipeline(corpus), only="exact_dedup", spark=spark, **QUIET)
    assert [(s.dirname, s.status) for s in again.steps] == [("01-exact_dedup", "skipped")]


def test_rejected_rows_are_written_with_reason(spark, corpus):
    res = run_pipeline(pipeline(corpus), spark=spark, **QUIET)
    rejected = read_stage(spark, corpus / "out" / "01-exact_dedup", "rejected").collect()
    assert rejected and all(r.reject_reason == "exact_duplicate" for r in rejected)
    assert all(r.duplicate_of < r.id for r in rejected)  # the smallest id survives
    assert len(rejected) == res.stats["01-exact_dedup"]["rejected"]["exact_duplicate"]


def _curate(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.Popen([sys.executable, "-m", "curate", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun_gives_identical_bytes(tmp_path, spark):
    write_corpus(tmp_path / "in.jsonl", 3000)
    yaml_path = _write_yaml(tmp_path / "p.yaml", pipeline(tmp_path))
    clean = _write_yaml(tmp_path / "clean.yaml", pipeline(tmp_path, output=str(tmp_path / "clean")))
    run_pipeline(clean, spark=spark, **QUIET)  # the uninterrupted reference, in-process

    proc = _curate("run", str(yaml_path), "--master", "local[2]")
    out = tmp_path / "out"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.startswith(".tmp-01") for p in out.glob(".tmp-*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "01-exact_dedup" / "_manifest.json").exists()  # nothing half-written looks complete

    run_pipeline(yaml_path, spark=spark, **QUIET)  # the rerun (in-process: it takes over the dead run's lease)
    assert not list(out.glob(".tmp-*"))
    assert tree_digest(out) == tree_digest(tmp_path / "clean")
