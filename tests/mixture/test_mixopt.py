"""`curate mixopt` at toy scale on real text: four shared corpora as domains, held-out wikitext
as the target, six 1-layer proxies; the results table, the regression's out-of-fold rank
correlation, a proposal within the caps and the KL bound, resume, and the one-line refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import read_jsonl

from curate.core import CurateError
from curate.mixture import search
from curate.mixture.mixopt import run_mixopt
from curate.mixture.spec import parse_mixopt

CORPORA = {"news": ("reuters21578.jsonl.gz", 30), "wiki": ("wikitext2.jsonl", 6),
           "code": ("python_docs.jsonl", 8), "reviews": ("nltk_movie_reviews.jsonl", 10)}
TRAIN = {"device": "cpu", "cpu_threads": 1, "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "context": 32},
         "optim": {"lr": 0.01, "min_lr": 0.001, "warmup_steps": 2}, "batch": {"micro_batch": 8},
         "eval": {"heldout_batches": 4}, "log": {"every": 10, "progress": False, "tensorboard": False}}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixopt")
    pool = [{"id": r["id"], "text": r["text"][:1500], "domain": d}
            for d, (name, n) in CORPORA.items() for r in read_jsonl(shared_data / "corpora" / name, limit=n)]
    held = [{"id": r["id"], "text": r["text"][:1500]}
            for r in read_jsonl(shared_data / "corpora" / "wikitext2.jsonl", limit=12)[6:]]
    return {"root": root, "pool": write_jsonl(root / "pool.jsonl", pool),
            "held": write_jsonl(root / "held.jsonl", held)}


def raw_spec(inputs, **over) -> dict:
    return {"seed": 0, "pool": str(inputs["pool"]), "token_budget": 5120, "max_epochs": 4, "caps": {"wiki": 2},
            "kl_bound": 0.3, "mixtures": 6, "target": {"documents": [str(inputs["held"])]},
            "tokenizer": {"vocab_size": 400}, "train": TRAIN, "search": {"candidates": 20000, "top_k": 50}, **over}


@pytest.fixture(scope="module")
def searched(inputs):
    from curate.cli import main

    path = inputs["root"] / "mixopt.yaml"
    path.write_text(yaml.safe_dump(raw_spec(inputs)), encoding="utf-8")
    out = inputs["root"] / "out"
    result = CliRunner().invoke(main, ["mixopt", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return {"out": out, "spec": path, "output": result.output,
            "summary": json.loads((out / "summary.json").read_text())}


def test_results_table_has_one_row_per_proxy_with_realised_weights(searched):
    rows = json.loads((searched["out"] / "results.json").read_text())
    assert [r["selection"] for r in rows] == [f"p{i:03d}" for i in range(6)]
    for r in rows:
        weights = [v for k, v in r.items() if k.startswith("w_")]
        assert len(weights) == 4 and abs(sum(weights) - 1) < 1e-3
        assert 3.0 < r["target_loss"] < 7.0 and np.isfinite(r["predicted_cv"])
    assert len({r["target_loss"] for r in rows}) == 6  # the mixtures differ, so do the losses
    assert "| p000 |" in (searched["out"] / "results.md").read_text()
    for png in ("predicted_vs_actual.png", "weights.png"):
        assert (searched["out"] / png).stat().st_size > 1000


def test_regression_is_chosen_by_cross_validation_and_reports_rank_correlation(searched):
    reg = searched["summary"]["regression"]
    assert set(reg["models"]) == {"linear", "lightgbm"}
    assert reg["chosen"] == min(reg["models"], key=lambda m: reg["models"][m]["cv_mse"])
    assert -1 <= reg["models"][reg["chosen"]]["cv_spearman"] <= 1
    assert all(m["cv_spearman"] is None or -1 <= m["cv_spearman"] <= 1 for m in reg["models"].values())
    assert "out-of-fold Spearman" in searched["output"]


def test_proposal_respects_caps_and_kl_bound_and_is_a_mix_spec(searched):
    from curate.train.mix import build_mixture, load_spec

    s = searched["summary"]
    domains = s["domains"]
    proposed = np.array([s["proposed"][d] for d in domains])
    natural = np.array([s["natural"][d] for d in domains])
    assert abs(proposed.sum() - 1) < 1e-6
    mix = load_spec(s["mix_spec"])
    for src, d in zip(mix.sources, domains):
        assert src.name == d and src.where == ("domain", d, d) and src.max_epochs == s["caps"][d]
        assert src.weight * mix.total_tokens <= s["caps"][d] * s["available_tokens"][d] + 1
    assert s["caps"]["wiki"] == 2
    assert search.kl_divergence(proposed, natural)[0] <= 0.3 + 1e-9
    manifest = build_mixture(mix, searched["out"] / "proposed_mix")
    assert manifest["total_tokens"] >= mix.total_tokens  # each source overshoots by less than one document
    assert all(src["tokens"] >= src["target_tokens"] and not src["capped"] for src in manifest["sources"].values())
    assert [v["mixture"] for v in s["validation"]] == ["proposed", "natural", "uniform"]
    assert all(3.0 < v["target_loss"] < 7.0 for v in s["validation"])


def test_rerun_reuses_finished_proxies_and_refuses_another_spec(searched, inputs):
    from curate.cli import main

    done = searched["out"] / "proxies" / "p003" / "proxy.json"
    stamp = done.stat().st_mtime_ns
    again = CliRunner().invoke(main, ["mixopt", str(searched["spec"]), "-o", str(searched["out"]), "--no-plot"])
    assert again.exit_code == 0, again.output
    assert done.stat().st_mtime_ns == stamp
    assert json.loads((searched["out"] / "summary.json").read_text()) == searched["summary"]
    with pytest.raises(CurateError, match="caps name domain"):
        run_mixopt(parse_mixopt(raw_spec(inputs, caps={"poetry": 1})), inputs["root"] / "other", log=lambda _m: None)
    with pytest.raises(CurateError, match="another mixopt spec"):
        run_mixopt(parse_mixopt(raw_spec(inputs, mixtures=7)), searched["out"], log=lambda _m: None)


@pytest.mark.parametrize("case, message", [
    ("empty_domain", "domain 'blank' has no tokens"),
    ("budget", "no mixture reaches"),
    ("empty_target", "the target has no documents"),
    ("short_target", "fewer than one context"),
])
def test_bad_input_fails_in_one_line_before_any_training(inputs, tmp_path, case, message):
    over = {}
    if case == "empty_domain":
        pool = [json.loads(line) for line in inputs["pool"].read_text().splitlines()]
        pool += [{"id": f"blank-{i}", "text": " ", "domain": "blank"} for i in range(3)]
        over["pool"] = str(write_jsonl(tmp_path / "pool.jsonl", pool))
    elif case == "budget":
        over.update(token_budget=500_000, max_epochs=1, caps={})
    else:
        text = "" if case == "empty_target" else "a short target"
        over["target"] = {"documents": [str(write_jsonl(tmp_path / "held.jsonl", [{"id": "x", "text": text}]))]}
    with pytest.raises(CurateError, match=message) as err:
        run_mixopt(parse_mixopt(raw_spec(inputs, **over)), tmp_path / "out", log=lambda _m: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "proxies").exists()


def test_spec_errors_are_one_line():
    with pytest.raises(CurateError, match="unknown key"):
        parse_mixopt({"pool": "p", "token_budget": 1, "target": "t", "typo": 1})
    with pytest.raises(CurateError, match="target needs"):
        parse_mixopt({"pool": "p", "token_budget": 1, "target": {}})
    with pytest.raises(CurateError, match="subset of linear, lightgbm"):
        parse_mixopt({"pool": "p", "token_budget": 1, "target": "t", "regression": {"models": ["svm"]}})
