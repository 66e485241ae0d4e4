"""``curate filters``: the listing names every registered filter with the defaults, roles and score
fields the filters really have (checked against the registry and a real ``score`` call)."""
from __future__ import annotations

import dataclasses
import json

from click.testing import CliRunner

import filters
from curate.cli import main

DOC = {"text": "Hello world. This is a short test.\nAnother line here.", "url": "http://x.org/a",
       "language": "en"}


def run(*args):
    return CliRunner().invoke(main, ["filters", *args])


def test_json_lists_every_registered_filter_with_its_real_defaults_and_roles():
    res = run("--json")
    assert res.exit_code == 0, res.output
    entries = json.loads(res.output)
    registry = filters.registry()
    assert [e["name"] for e in entries] == list(registry) and len(entries) >= 10
    for e in entries:
        cls = registry[e["name"]]
        assert {p["name"]: p["default"] for p in e["params"]} == filters.params_of(cls())
        assert [p["name"] for p in e["params"] if p["role"] == "threshold"] == filters.threshold_names(cls)
        assert [p["name"] for p in e["params"] if p["role"] == "score"] == [
            f.name for f in dataclasses.fields(cls) if f.name in cls.score_params]
        assert {p["name"] for p in e["params"] if p["path"]} == set(cls.path_params)
        assert e["reads"] == list(cls.inputs)
        assert e["kind"] == ("modifier" if cls.modifies_text else "filter")
        assert e["summary"] and "\n" not in e["summary"]
    by_name = {e["name"]: e for e in entries}
    assert by_name["lang_id"]["promotes"] == {"lang_id.language": "language", "lang_id.score": "language_score"}
    assert by_name["pii"]["kind"] == "modifier"


def test_listed_score_fields_are_what_score_returns():
    """The ``writes`` fields are the keys a real ``score`` call returns (lang_id needs a model: keys only)."""
    entries = {e["name"]: e for e in json.loads(run("--json").output)}
    for name, entry in entries.items():
        fields = [w.removeprefix(f"{name}.") for w in entry["writes"]]
        if name == "lang_id":
            assert fields == ["language", "score"]
            continue
        flt = filters.build(name)
        flt.setup()
        assert sorted(flt.score(DOC)) == sorted(fields), name


def test_text_listing_shows_thresholds_and_score_parameters():
    res = run()
    assert res.exit_code == 0, res.output
    blocks = {b.split(" ", 1)[0]: b for b in res.output.strip().split("\n\n")}
    assert list(blocks) == list(filters.registry())
    gopher = blocks["gopher_quality"]
    assert gopher.startswith("gopher_quality (filter): Gopher quality rules (Rae et al. 2021")
    thresholds, score_params = gopher.split("    score parameters (re-run score):\n")
    assert "    thresholds (select):\n        min_words = 50\n        max_words = 100000\n" in thresholds
    assert score_params.strip() == "stop_words_file = None  [path]"
    assert "    writes: gopher_quality.words, gopher_quality.mean_word_length," in gopher
    assert "max_ratio = 0.01" in blocks["bad_words"] and "reads:  text, language" in blocks["bad_words"]


def test_names_select_filters_and_an_unknown_name_is_a_one_line_error():
    res = run("length", "c4", "--json")
    assert res.exit_code == 0 and [e["name"] for e in json.loads(res.output)] == ["c4", "length"]
    res = run("gopher")
    assert res.exit_code == 2
    assert res.output.startswith("error: unknown filter 'gopher'; valid filters: bad_words, c4,")
    assert len(res.output.strip().splitlines()) == 1
