"""The filter contract, checked for every registered filter (new filters are picked up automatically):
never raises on any unicode text, stable score keys and types, deterministic, reasons are strings."""
from __future__ import annotations

import math
import time

import pytest
from helpers import PROSE, UDHR, configured_filters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import filters

NAMES = list(filters.registry())
PATHOLOGICAL = [
    "", " ", "\n\n\n", " \t\r\n\u00a0\u2028 ", "\x00", "\x00" * 50, "!!!???...…", "#" * 1000,
    "- \n" * 500, "{}" * 100, "a@b" * 300, "1.1.1.1." * 200, "::::" * 200, "+1 (555) 123-4567 " * 50,
    "Ελληνικά русский 中文字符 العربية हिन्दी 😀 mixed scripts.", "\ud7ff\ue000\uffff",
    "word " * 200_000,  # a million characters
    "a" * 1_000_000 + "@" + "b" * 1000,
    ("The same line again.\n" * 5000),
]
texts = st.one_of(st.text(max_size=400), st.sampled_from(PATHOLOGICAL[:16]),
                  st.lists(st.sampled_from(["the", "of", "...", "#", "\n", "\n\n", "-", "•", "{", "é", "１",
                                            "lorem ipsum", "x@y.com", "8.8.8.8", " "]), max_size=80).map("".join))
urls = st.one_of(st.none(), st.text(max_size=60), st.sampled_from(["https://www.bad.example/x", "http://[::1]/",
                                                                   "http://[bad", "casino", ""]))
languages = st.one_of(st.none(), st.sampled_from(["en", "de", "", "xx"]))


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    return configured_filters(tmp_path_factory.mktemp("filters"))


def test_every_registered_filter_is_covered(configured):
    expected = set(NAMES) - (set() if UDHR.is_file() else {"lang_id"})
    assert set(configured) == expected


def check_contract(flt: filters.Filter, doc: dict) -> None:
    scores = flt.score(doc)
    assert list(scores) == list(flt.keys)
    for key, value in scores.items():
        if key in flt.string_keys:
            assert isinstance(value, str)
        else:
            assert type(value) is float and math.isfinite(value), (key, value)
    assert flt.score(doc) == scores
    why = flt.reject(scores)
    assert why is None or (isinstance(why, str) and why and ":" not in why)
    assert flt.reject(dict(scores)) == why
    if flt.modifies_text:
        new_text, counts = flt.apply(doc["text"])
        assert isinstance(new_text, str) and counts == scores
        assert why is None


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, url=urls, language=languages)
def test_contract_on_any_text(configured, name, text, url, language):
    if name not in configured:
        pytest.skip("needs shared data")
    check_contract(configured[name], {"text": text, "url": url, "language": language})


@pytest.mark.parametrize("name", NAMES)
def test_contract_on_pathological_text(configured, name):
    if name not in configured:
        pytest.skip("needs shared data")
    for text in PATHOLOGICAL:
        start = time.perf_counter()
        check_contract(configured[name], {"text": text, "url": "https://x.test/" + text[:50]})
        assert time.perf_counter() - start < 20, f"{name} is too slow on {text[:20]!r}…"


@pytest.mark.parametrize("name", NAMES)
def test_missing_fields_and_null_text(configured, name):
    if name not in configured:
        pytest.skip("needs shared data")
    flt = configured[name]
    assert flt.score({"text": None}) == flt.score({"text": ""}) == flt.score({})


@pytest.mark.parametrize("name", NAMES)
def test_thresholds_do_not_change_scores(configured, name):
    """Fields outside ``score_params`` are thresholds: changing them never changes ``score``."""
    if name not in configured:
        pytest.skip("needs shared data")
    flt = configured[name]
    base = filters.params_of(flt)
    for key in filters.threshold_names(type(flt)):
        value = base[key]
        if isinstance(value, bool):
            changed = not value
        elif isinstance(value, (int, float)):
            changed = value + 1
        elif value is None or isinstance(value, list):
            continue
        else:
            changed = value + "x"
        other = filters.build(name, {**base, key: changed})
        for text in (PROSE, PATHOLOGICAL[8], PATHOLOGICAL[-1][:2000]):
            assert other.score({"text": text}) == flt.score({"text": text}), key
