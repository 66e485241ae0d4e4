"""Pipeline validation happens before any work and names what is valid."""
from __future__ import annotations

import pytest

from curate.config import load_pipeline
from curate.core import CurateError


def write(tmp_path, text: str):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_relative_paths_resolve_against_the_yaml(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    p = load_pipeline(write(sub, "name: x\ninput: ../raw\noutput: out\nstages: [exact_dedup]\n"))
    assert p.input.path == str((sub / "../raw").resolve())
    assert p.output.path == str((sub / "out").resolve())
    uris = load_pipeline(write(sub, "input: s3://b/raw/\noutput: gs://c/out\nstages: [exact_dedup]\n"))
    assert (uris.input.path, uris.output.path) == ("s3://b/raw", "gs://c/out")
    assert [s.dirname for s in p.stages] == ["01-exact_dedup"]


def test_defaults_are_filled_in(tmp_path):
    p = load_pipeline(write(tmp_path, "input: a\noutput: b\nstages:\n  - sample: {fraction: 0.1}\n"))
    assert p.stages[0].params == {"fraction": 0.1, "seed": None}


@pytest.mark.parametrize("body, message", [
    ("input: a\noutput: b\nstages: [nope]\n", r"unknown stage 'nope'; valid stages: .*exact_dedup"),
    ("input: a\noutput: b\nstages:\n  - sample: {fraction: 0.1, bogus: 1}\n",
     r"unknown parameter\(s\) bogus; valid: fraction, seed"),
    ("input: a\noutput: b\nstages:\n  - sample: {}\n", r"missing required parameter\(s\) fraction"),
    ("input: a\noutput: b\nstages: []\n", "no stages"),
    ("output: b\nstages: [head]\n", "missing 'input'"),
    ("input: a\noutput: b\nstages: [head]\nextra: 1\n", r"unknown pipeline key\(s\) extra"),
    ("input: {path: a, colour: red}\noutput: b\nstages: [head]\n", r"input: unknown key\(s\) colour"),
    ("input: a\noutput: {path: b, format: csv}\nstages: [head]\n", "output.format"),
    ("input: a\noutput: b\nstages: [head]\nseed: x\n", "seed must be an integer"),
    ("input: [a\n", "invalid YAML"),
    ("- just a list\n", "a pipeline is a mapping"),
])
def test_invalid_pipelines_fail_with_a_clear_message(tmp_path, body, message):
    with pytest.raises(CurateError, match=message):
        load_pipeline(write(tmp_path, body))


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(CurateError, match="invalid YAML"):
        load_pipeline(write(tmp_path, "input: !!python/object/apply:os.system ['echo hi']\n"
                                      "output: b\nstages: [head]\n"))


def test_stage_lookup_by_name_dirname_or_index(tmp_path):
    p = load_pipeline(write(tmp_path, "input: a\noutput: b\nstages: [exact_dedup, head, {sample: {fraction: 1}}]\n"))
    assert p.find("head").index == 2 and p.find("03-sample").name == "sample" and p.find("1").name == "exact_dedup"
    with pytest.raises(CurateError, match="no stage 'zzz'"):
        p.find("zzz")


def test_single_mapping_parameter_can_be_given_directly(tmp_path):
    p = load_pipeline(write(tmp_path, "input: a\noutput: b\nstages:\n  - score: [gopher_quality]\n"
                                      "  - select: {gopher_quality: {min_words: 80}}\n"))
    assert p.stages[0].params == {"filters": ["gopher_quality"]}
    assert p.stages[1].params == {"filters": {"gopher_quality": {"min_words": 80}}}
