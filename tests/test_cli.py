"""The command line: validation, listing, stats, one-line errors and exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from curate.cli import main
from curate.engine.spark import java_problem, parse_conf


def test_validate_ok_and_unknown_stage(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: g\ninput: in\noutput: out\nstages: [exact_dedup, {head: {n: 5}}]\n")
    res = CliRunner().invoke(main, ["validate", str(good)])
    assert res.exit_code == 0 and "01-exact_dedup, 02-head" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: in\noutput: out\nstages: [exact_dedupe]\n")
    res = CliRunner().invoke(main, ["validate", str(bad)])
    assert res.exit_code == 2
    assert res.output.startswith("error: unknown stage 'exact_dedupe'; valid stages:")
    assert "Traceback" not in res.output


def test_stages_lists_parameters_with_defaults():
    res = CliRunner().invoke(main, ["stages"])
    assert res.exit_code == 0
    assert "sample: Keep a deterministic" in res.output
    assert "    fraction = (required)" in res.output and "    n = 1000" in res.output


def test_stats_reads_manifests(tmp_path):
    stage = tmp_path / "01-exact_dedup"
    stage.mkdir()
    (stage / "_manifest.json").write_text(json.dumps({"stats": {
        "rows_in": 10, "rows_out": 7, "rejected": {"exact_duplicate": 3}}}))
    res = CliRunner().invoke(main, ["stats", str(tmp_path)])
    assert res.exit_code == 0
    assert res.output.split("\n")[1].split() == ["01-exact_dedup", "10", "7", "3", "exact_duplicate=3"]
    res = CliRunner().invoke(main, ["stats", str(tmp_path / "01-exact_dedup")])
    assert res.exit_code == 2 and "no complete stages" in res.output


def test_help_everywhere():
    for args in (["--help"], ["run", "--help"], ["corpus", "local-docs", "--help"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0 and "Usage:" in res.output


def test_bad_conf_is_a_one_line_error():
    import pytest

    from curate.core import CurateError

    assert parse_conf(["spark.a=1", "b = x=y"]) == {"spark.a": "1", "b": "x=y"}
    with pytest.raises(CurateError, match="key=value"):
        parse_conf(["nonsense"])


def test_missing_java_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert "apt-get install -y openjdk-17-jre-headless" in java_problem()
    env = {**os.environ, "PATH": str(tmp_path)}
    env.pop("JAVA_HOME", None)
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    (tmp_path / "p.yaml").write_text("input: in.jsonl\noutput: out\nstages: [exact_dedup]\n")
    out = subprocess.run([sys.executable, "-m", "curate", "run", "p.yaml"], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: Java not found") and "openjdk-17-jre-headless" in out.stderr
    assert "Traceback" not in out.stderr
