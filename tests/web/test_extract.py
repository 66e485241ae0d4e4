"""The extract stage: each extractor finds the page's text; a pathological page runs over the
time limit and is rejected while the task goes on. Pages: real ones, see warc_fixture.py."""
from __future__ import annotations

import re

import pytest
from warc_fixture import PASSWD, PASSWD_SENTENCE, PASSWD_TITLE, libffi_pages, pathological_page, require

from curate.core import CurateError, get_stage
from curate.web.extract import FACTORY
from curate.web.sandbox import Sandbox

LIMIT_S = 2.0  # the pathological page needs ~9 s at 2,000 copies on a quiet core; 3,000 copies here


@pytest.fixture(scope="module")
def pages():
    require(PASSWD)
    ffi = [p.read_text(encoding="utf-8") for p in libffi_pages(2)]
    passwd = PASSWD.read_text(encoding="utf-8")
    blank = re.sub(r"(<BODY\b[^>]*>).*(</BODY\s*>)", r"\1\2", passwd, flags=re.S | re.I)  # its head only
    return [("passwd", passwd), ("ffi-0", ffi[0]), ("patho", pathological_page()), ("ffi-1", ffi[1]),
            ("blank", blank)]


def _run(spark, stage_ctx, rows, **params):
    df = spark.createDataFrame([(i, t, f"http://example.org/{i}") for i, t in rows],
                               "id string, text string, url string")
    out = get_stage("extract").fn(df.coalesce(1), stage_ctx(), **params)  # one task sees every page
    return {r["id"]: r.asDict() for r in out.kept.collect()}, {r["id"]: r.asDict() for r in out.rejected.collect()}


@pytest.fixture(scope="module")
def resiliparse_run(spark, stage_ctx, pages):
    return _run(spark, stage_ctx, pages, extractor="resiliparse", time_limit_s=LIMIT_S)


def test_the_time_limit_rejects_the_pathological_page_and_the_task_goes_on(resiliparse_run, pages):
    kept, rejected = resiliparse_run
    assert set(kept) == {"passwd", "ffi-0", "ffi-1"}  # pages after the killed one in the same task too
    assert {i: r["reject_reason"] for i, r in rejected.items()} == {
        "patho": "extractor_timeout", "blank": "empty_after_extraction"}
    assert rejected["patho"]["text"] == dict(pages)["patho"]  # the HTML is kept in rejected/
    assert rejected["patho"]["reject_detail"].startswith(f"over {LIMIT_S:g} s")


@pytest.mark.parametrize("extractor", ["trafilatura", "justext"])
def test_each_extractor_finds_the_text_and_title(spark, stage_ctx, pages, resiliparse_run, extractor):
    """trafilatura and justext run in the Spark worker itself here (time_limit_s: 0)."""
    runs = {"resiliparse": resiliparse_run[0]}
    runs[extractor], _ = _run(spark, stage_ctx, pages[:2], extractor=extractor, time_limit_s=0)
    for name, kept in runs.items():
        passwd = kept["passwd"]
        assert PASSWD_SENTENCE in passwd["text"] and "<" not in passwd["text"][:200], name
        assert passwd["page_title"] == PASSWD_TITLE, name
        assert len(passwd["text"]) < len(dict(pages)["passwd"]) / 1.2, name


def test_sandbox_outcomes_in_order_with_a_restart_after_a_timeout(pages):
    """Without Spark: ok / timeout / error per item, the child replaced after the timeout."""
    html = dict(pages)
    config = {"extractor": "resiliparse", "main_content": True}
    with Sandbox(FACTORY, config, LIMIT_S, size=lambda item: len(item[0] or "")) as box:
        out = box.map([(html["ffi-0"], None), (html["patho"], None), (None, None), (html["ffi-1"], None)])
        assert [o[0] for o in out] == ["ok", "timeout", "error", "ok"]
        assert out[2][1].startswith("TypeError")
        assert box.restarts == 1


def test_bad_parameters_fail_before_any_work(spark, stage_ctx):
    df = spark.createDataFrame([("a", "<p>x</p>")], "id string, text string")
    with pytest.raises(CurateError, match="extractor must be one of"):
        get_stage("extract").fn(df, stage_ctx(), extractor="readability")
    with pytest.raises(CurateError, match="stop-word list"):
        get_stage("extract").fn(df, stage_ctx(), extractor="justext", language="Klingon")
