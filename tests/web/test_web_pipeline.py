"""pipelines/web_crawl.yaml end to end on a WARC of real pages (see warc_fixture.py), in-process
on the session's Spark: every record and every row is accounted for at every step."""
from __future__ import annotations

import pytest
import yaml
from helpers import PIPELINES, lid_model, manifests, read_jsonl
from warc_fixture import PASSWD, POLICY, Record, libffi_pages, require, write_warc

pytestmark = pytest.mark.slow  # nine steps on the session Spark (the quickstart run is of this size)


@pytest.fixture(scope="module")
def web_run(spark, shared_data, tmp_path_factory):
    """The pipeline with its two model paths pointed at small models trained here (the UDHR
    language-ID model of the test helpers; a Python-docs vs movie-review quality classifier)."""
    from curate.engine.runner import run_pipeline
    from curate.quality.classifier import train_classifier

    require(PASSWD, POLICY)
    root = tmp_path_factory.mktemp("web_crawl")
    crawl = root / "crawl"
    crawl.mkdir()
    pages = [p.read_bytes() for p in libffi_pages(20)]
    records = [Record(f"http://www.example.org/libffi/{p.name}", b) for p, b in zip(libffi_pages(20), pages)]
    records += [Record("http://example.org/policy.html", POLICY.read_bytes()),
                Record("http://example.org/users-and-groups.html", PASSWD.read_bytes()),
                Record("HTTP://Example.ORG:80/users-and-groups.html#top", PASSWD.read_bytes()),  # the same URL
                Record("http://example.org/missing", pages[0], status="404 Not Found")]
    write_warc(crawl / "CC-TEST-00000.warc.gz", records)

    def texts(name: str) -> list[str]:
        return [d["text"] for d in read_jsonl(shared_data / "corpora" / name, limit=60)]

    quality = root / "quality.bin"
    train_classifier(texts("python_docs.jsonl"), texts("nltk_movie_reviews.jsonl"), quality,
                     epoch=2, dim=16, bucket=50_000, holdout=0.0)
    raw = yaml.safe_load((PIPELINES / "web_crawl.yaml").read_text(encoding="utf-8"))
    raw["input"]["path"] = str(crawl)
    stages = raw["stages"]
    stages[2]["score"][0]["lang_id"]["model"] = str(lid_model(root)[0])
    stages[-1]["fasttext_score"]["model"] = str(quality)
    stages[3]["select"]["filters"]["lang_id"]["min_score"] = 0.3  # the tiny UDHR model is less sure than lid.176
    path = root / "web_crawl.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = root / "out"
    run_pipeline(path, output=str(out), spark=spark, log=lambda _msg: None)
    return out, len(records)


def test_web_crawl_accounts_for_every_record_and_row(web_run):
    out, records = web_run
    m = manifests(out)
    assert list(m) == ["00-read", "01-extract", "02-url_dedup", "03-score", "04-select", "05-line_dedup",
                       "06-minhash_dedup", "07-fasttext_score", "final"]
    read = m["00-read"]["stats"]
    assert read["rows_in"] == records and read["quarantine_reasons"] == {"http_error": 1}
    previous = read["rows_out"]
    for step in list(m)[1:-1]:
        st = m[step]["stats"]
        assert st["rows_in"] == previous and st["rows_in"] == st["rows_out"] + sum(st["rejected"].values()), step
        previous = st["rows_out"]
    assert m["02-url_dedup"]["stats"]["rejected"] == {"duplicate_url": 1}
    assert m["final"]["stats"]["rows_out"] == previous > 0


def test_web_crawl_documents_are_text_with_page_metadata(spark, web_run):
    from curate.io.shards import read_stage

    out, _ = web_run
    final = read_stage(spark, out / "07-fasttext_score").collect()
    assert final and all("<html" not in r["text"].lower() for r in final)
    assert all(r["page_title"] and r["url"] and r["warc_date"] for r in final)
    assert {"fasttext_score", "language", "url_canonical"} <= set(final[0].asDict())
