"""Every example under pipelines/ is valid, and those that run offline on small data do run.

The quickstart run is the session fixture ``quickstart`` (conftest.py), shared with
tests/airflow_dags/test_airflow.py (its DAG output must equal it) and tests/report/test_report.py (its report).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import PIPELINES, manifests, shard_hashes

from curate.config import load_pipeline, parse_pipeline
from curate.core import CurateError

ALL_YAML = sorted(PIPELINES.glob("*.yaml"))

def kind(path: Path) -> str:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict) and "stages" in raw:
        return "pipeline"
    if isinstance(raw, dict) and "sources" in raw:
        return "mixture"
    if isinstance(raw, dict) and "model" in raw and "optim" in raw:
        return "train"
    return "unknown"


@pytest.mark.parametrize("path", ALL_YAML, ids=[p.name for p in ALL_YAML])
def test_every_example_validates(path):
    """Pipelines validate with curate.config; mixture specs and training configs with theirs."""
    what = kind(path)
    assert what != "unknown", f"{path.name} is neither a pipeline, a mixture spec nor a training config"
    if what == "pipeline":
        p = load_pipeline(path)
        assert p.stages and p.name == path.stem
    elif what == "mixture":
        from curate.train.mix import load_spec

        assert load_spec(path).sources
    else:
        from curate.train.config import load_config, validate

        validate(load_config(path))


def test_the_issue_pipelines_exist():
    names = {p.stem for p in ALL_YAML if kind(p) == "pipeline"}
    assert {"quickstart", "web_quality", "benchmark_targeted", "perplexity_correlation", "iclm_order",
            "full"} <= names
    stages = {s.name for s in load_pipeline(PIPELINES / "full.yaml").stages}
    assert {"score", "select", "exact_dedup", "minhash_dedup", "decontaminate", "fasttext_score",
            "select_budget", "embed", "knn_order"} <= stages


def test_a_broken_stage_parameter_fails_validation():
    raw = yaml.safe_load((PIPELINES / "quickstart.yaml").read_text())
    raw["stages"][-1] = {"minhash_dedup": {"treshold": 0.8}}
    with pytest.raises(CurateError, match="unknown parameter.*treshold"):
        parse_pipeline(raw, PIPELINES)


def test_quickstart_runs_offline_with_full_accounting(quickstart):
    """Every read document is kept, rejected with a reason, or quarantined; final = last stage."""
    out = quickstart.output_dir
    m = manifests(out)
    steps = ["00-read", "01-exact_dedup", "02-score", "03-select", "04-minhash_dedup", "final"]
    assert list(m) == steps
    read = m["00-read"]["stats"]
    assert read["rows_in"] == read["rows_out"] + read["quarantined"]
    assert read["rows_out"] > 500  # the harvested corpus is never tiny
    previous = read["rows_out"]
    for step in steps[1:-1]:
        st = m[step]["stats"]
        assert st["rows_in"] == previous
        assert st["rows_in"] == st["rows_out"] + sum(st["rejected"].values())
        previous = st["rows_out"]
    assert m["01-exact_dedup"]["stats"]["rejected"].get("exact_duplicate", 0) > 0  # licence copies
    assert m["04-minhash_dedup"]["stats"]["rejected"].get("near_duplicate", 0) > 0
    assert any(r.startswith("gopher_quality:") for r in m["03-select"]["stats"]["rejected"])
    assert m["final"]["stats"]["rows_out"] == previous > 0
    assert shard_hashes(m["final"])["data"] == shard_hashes(m["04-minhash_dedup"])["data"]


def _slice(shared: Path, name: str, n: int, out: Path) -> Path:
    """The first ``n`` records of a shared corpus, written to ``out`` (never into the repo)."""
    import gzip

    opener = gzip.open if name.endswith(".gz") else open
    out.parent.mkdir(parents=True, exist_ok=True)
    with opener(shared / "corpora" / name, "rt", encoding="utf-8") as fh, open(out, "w", encoding="utf-8") as dst:
        for i, line in enumerate(fh):
            if i >= n:
                break
            dst.write(line)
    return out


def run_example(name: str, spark, tmp_path: Path, input_path: Path, params: dict | None = None):
    """Run pipelines/<name>.yaml on ``input_path`` with some stage parameters replaced.

    Relative paths keep resolving against pipelines/, exactly as ``curate run`` would.
    """
    from curate.engine.runner import run_pipeline

    raw = yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())
    for entry in raw["stages"]:
        stage = next(iter(entry)) if isinstance(entry, dict) else entry
        if stage in (params or {}):
            entry[stage] = {**(entry[stage] or {}), **params[stage]}
    p = parse_pipeline(raw, PIPELINES, input_override=str(input_path), output_override=str(tmp_path / "out"))
    run_pipeline(p, spark=spark, log=lambda _msg: None)
    return manifests(tmp_path / "out")


def test_web_quality_runs_with_a_classifier_trained_here(spark, tmp_path, shared_data):
    """Heuristics -> exact + fuzzy dedup -> fastText (trained on real text) -> token budget."""
    from click.testing import CliRunner

    from curate.cli import main

    model = tmp_path / "quality.bin"
    wiki = _slice(shared_data, "wikitext2.jsonl", 60, tmp_path / "wiki.jsonl")
    web = _slice(shared_data, "nltk_webtext.jsonl", 200, tmp_path / "web.jsonl")
    result = CliRunner().invoke(main, ["classifier", "train", "--positive", str(wiki), "--negative",
                                       f"{web}:100", "-o", str(model), "--epoch", "3", "--bucket", "20000"])
    assert result.exit_code == 0, result.output
    m = run_example("web_quality", spark, tmp_path, web, {"fasttext_score": {"model": str(model)}})
    assert list(m)[-3:] == ["05-fasttext_score", "06-select_budget", "final"]
    assert any(r.startswith(("gopher", "c4", "fineweb")) for r in m["02-select"]["stats"]["rejected"])
    budget = m["06-select_budget"]["stats"]
    assert budget["rows_in"] == budget["rows_out"] + budget["rejected"]["budget"]
    assert 0 < budget["rows_out"] < budget["rows_in"]
    assert m["final"]["stats"]["rows_out"] == budget["rows_out"]


def test_iclm_order_runs_on_a_small_slice(spark, tmp_path, shared_data):
    """Embed + FAISS kNN order on 60 real Wikipedia articles: adjacent documents are more alike than at random."""
    m = run_example("iclm_order", spark, tmp_path, _slice(shared_data, "wikitext2.jsonl", 60, tmp_path / "w.jsonl"),
                    {"knn_order": {"k": 5}})
    st = m["03-knn_order"]["stats"]
    assert st["rows_out"] == m["00-read"]["stats"]["rows_out"] - sum(m["01-exact_dedup"]["stats"]["rejected"].values())
    assert st["mean_adjacent_similarity"] > st["random_mean_adjacent_similarity"]
    # the report's ordering section shows both numbers
    from curate.report import write_report

    page = write_report(tmp_path / "out", tmp_path / "report.html").read_text()
    ordering = page.split('id="order-03-knn_order"')[1].split("</table>")[0]
    assert f"{st['mean_adjacent_similarity']:,.4g}" in ordering
    assert f"{st['random_mean_adjacent_similarity']:,.4g}" in ordering


@pytest.mark.slow
def test_benchmark_targeted_runs_on_a_small_slice(spark, tmp_path, shared_data):
    """Decontamination + BETR (embeddings, FAISS, fastText) on 80 real ABC science/news stories."""
    m = run_example("benchmark_targeted", spark, tmp_path,
                    _slice(shared_data, "nltk_abc.jsonl", 80, tmp_path / "abc.jsonl"),
                    {"decontaminate": {"benchmarks": [{"path": "../../shared/data/benchmarks/arc_challenge.jsonl",
                                                       "template": "{query}", "split": "test"}]},
                     "benchmark_similarity": {"examples_per_benchmark": 50, "sample_size": 80,
                                              "keep_tokens_fraction": 0.3}})
    decon, betr = m["02-decontaminate"]["stats"], m["03-benchmark_similarity"]["stats"]
    assert decon["rows_in"] == decon["rows_out"] + sum(decon["rejected"].values())
    assert betr["rows_in"] == betr["rows_out"] + betr["rejected"]["budget"]
    assert 0 < betr["rows_out"] < betr["rows_in"]
    assert m["final"]["stats"]["rows_out"] == betr["rows_out"]
