"""WARC/WET input: every candidate record is a document or a quarantine record with its reason;
broken files keep what precedes the break. Pages: real ones, see warc_fixture.py."""
from __future__ import annotations

import gzip
import shutil

import pytest
from warc_fixture import JAVASSIST, PNG, POLICY, Record, libffi_pages, require, write_warc

from curate.io.read import InputSpec, file_infos, list_input_files, read_documents
from curate.io.warc import read_web_archives

GOOD_PAGES = 5  # libffi manual pages served as 200 text/html; charset=utf-8


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """A crawl directory: one .warc.gz with every kind of record, a truncated copy, a copy with
    gzip garbage after its third member, a non-WARC file named .warc, and an empty .warc.gz."""
    require(POLICY, PNG)
    root = tmp_path_factory.mktemp("crawl")
    pages = [p.read_bytes() for p in libffi_pages(GOOD_PAGES)]
    policy = POLICY.read_text(encoding="utf-8")
    records = [Record(f"http://www.example.org/libffi/{i}.html", b) for i, b in enumerate(pages)]
    special = {
        "mislabelled_utf8": Record("http://example.org/policy-latin1", policy.encode("utf-8"),
                                   content_type="text/html; charset=iso-8859-1"),
        "cp1252_said_utf8": Record("http://example.org/policy-cp1252", policy.encode("cp1252")),
        "unknown_label": Record("http://example.org/javassist", JAVASSIST.read_bytes(),
                                content_type="text/html; charset=x-no-such-charset"),
        "http_error": Record("http://example.org/gone", pages[0], status="404 Not Found"),
        "http_redirect": Record("http://example.org/moved", b"", status="301 Moved Permanently"),
        "non_html_png": Record("http://example.org/back.png", PNG.read_bytes(), content_type="image/png"),
        "non_html_text": Record("http://example.org/LICENSE.txt", b"MOZILLA PUBLIC LICENSE\n",
                                content_type="text/plain"),
        "binary_payload": Record("http://example.org/fake.html", PNG.read_bytes()),
        "empty": Record("http://example.org/empty.html", b""),
        "not_http": Record("dns:example.org", b"20240101000000\nexample.org. 300 IN A 93.184.216.34\n",
                           status=None, content_type=None, warc_content_type="text/dns"),
        "resource": Record("file:///usr/share/doc/page.html", pages[1], status=None, rec_type="resource",
                           content_type=None, warc_content_type="text/html"),
    }
    all_records = records + list(special.values())
    ids = write_warc(root / "crawl.warc.gz", all_records)
    data = (root / "crawl.warc.gz").read_bytes()
    members = _member_offsets(root / "crawl.warc.gz")  # warcinfo, request, response 0, request, response 1, …
    (root / "cut.warc.gz").write_bytes(data[:(members[6] + members[7]) // 2])  # ends inside response 2
    (root / "garbage.warc.gz").write_bytes(data[:members[5]] + gzip.compress(b"x")[:6] + bytes(range(256)) * 8)
    shutil.copy(JAVASSIST, root / "notwarc.warc")
    (root / "empty.warc.gz").write_bytes(b"")
    return {"root": root, "ids": ids, "names": ["page"] * len(records) + list(special), "policy": policy,
            "pages": pages}


def _member_offsets(path):
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(path, "rb") as fh:
        return [r.stream_pos for r in ArchiveIterator(fh, record_types=WarcRecordType.any_type, parse_http=False)]


@pytest.fixture(scope="module")
def read(spark, crawl):
    """The reader itself on all five files in one job (the copies share record ids, which
    read_documents would quarantine as duplicates): ``({(file, offset): doc}, quarantine)``."""
    root, files = list_input_files(crawl["root"])
    docs, quarantine, cached = read_web_archives(spark, root, files, file_infos(root, files), InputSpec(root))
    out = {(r["_file"], r["_line"]): r.asDict() for r in docs.collect()}, [r.asDict() for r in quarantine.collect()]
    for df in cached:
        df.unpersist()
    return out


def _by_file(quarantine, name, kind="record"):
    return sorted((q["reason"].split(":")[0], q["line"]) for q in quarantine if q["file"] == name
                  and q["kind"] == kind)


def test_every_candidate_record_is_a_document_or_a_reason(read, crawl):
    docs, quarantine = read
    crawl_docs = {d["id"]: d for d in docs.values() if d["_file"] == "crawl.warc.gz"}
    reasons = [r for r, _ in _by_file(quarantine, "crawl.warc.gz")]
    responses = len(crawl["ids"]) - 1  # the resource record is not a candidate
    assert len(crawl_docs) + len(reasons) == responses
    assert sorted(reasons) == sorted(["http_error", "http_redirect", "non_html", "non_html", "binary_payload",
                                      "empty", "not_http"])
    named = dict(zip(crawl["ids"], crawl["names"]))
    assert sorted(named[i] for i in crawl_docs) == sorted(
        ["page"] * GOOD_PAGES + ["mislabelled_utf8", "cp1252_said_utf8", "unknown_label"])
    skipped = [q["reason"] for q in quarantine if q["file"] == "crawl.warc.gz" and q["kind"] == "skipped"]
    assert skipped == [f"record_types: request={GOOD_PAGES + 9}, resource=1, warcinfo=1"]


def test_documents_carry_the_page_and_its_record(read, crawl):
    docs = {d["id"]: d for d in read[0].values() if d["_file"] == "crawl.warc.gz"}
    named = dict(zip(crawl["names"], crawl["ids"]))
    first = docs[crawl["ids"][0]]
    assert first["text"] == crawl["pages"][0].decode("utf-8")
    assert first["url"] == "http://www.example.org/libffi/0.html"
    assert (first["http_status"], first["content_type"], first["record_id"]) == (200, "text/html", crawl["ids"][0])
    assert first["warc_date"].startswith("20") and first["repairs"] is None
    for name, charset, repair in [("mislabelled_utf8", "utf-8", "charset_mismatch"),
                                  ("cp1252_said_utf8", "cp1252", "charset_mismatch")]:
        doc = docs[named[name]]
        assert doc["text"] == crawl["policy"], name  # the right text whatever the label said
        assert (doc["charset"], doc["repairs"]) == (charset, repair)
    javassist = docs[named["unknown_label"]]
    assert javassist["repairs"] == "unknown_charset" and "MOZILLA PUBLIC LICENSE" in javassist["text"]


def test_line_is_the_byte_offset_of_the_record(read, crawl):
    """``_line`` is the gzip member's offset: reading from there gives that very record."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    doc = next(d for d in read[0].values() if d["id"] == crawl["ids"][3] and d["_file"] == "crawl.warc.gz")
    with open(crawl["root"] / "crawl.warc.gz", "rb") as fh:
        fh.seek(doc["_line"])
        first = next(iter(ArchiveIterator(fh, record_types=WarcRecordType.any_type)))
        assert first.record_id.strip("<>") == doc["id"]


def test_a_truncated_file_keeps_the_records_before_the_break(read, crawl):
    docs, quarantine = read
    whole = {d["_line"] for d in docs.values() if d["_file"] == "crawl.warc.gz"}
    cut = {d["_line"] for d in docs.values() if d["_file"] == "cut.warc.gz"}
    members = _member_offsets(crawl["root"] / "crawl.warc.gz")
    assert cut == {members[2], members[4]} and cut < whole
    assert _by_file(quarantine, "cut.warc.gz") == [("truncated", members[6])]  # the record the file ends in
    assert not _by_file(quarantine, "cut.warc.gz", "file")


def test_gzip_garbage_keeps_the_members_before_it(read):
    docs, quarantine = read
    kept = [d for d in docs.values() if d["_file"] == "garbage.warc.gz"]
    assert len(kept) == 2
    problems = [q for q in quarantine if q["file"] == "garbage.warc.gz" and q["kind"] == "file"]
    assert len(problems) == 1 and problems[0]["reason"].startswith("corrupt: after the record at offset")
    assert problems[0]["line"] == max(d["_line"] for d in kept)


def test_files_that_are_not_archives_are_file_problems(read):
    _, quarantine = read
    problems = {q["file"]: q["reason"] for q in quarantine if q["kind"] == "file"}
    assert problems["notwarc.warc"].startswith("not_an_archive")
    assert problems["empty.warc.gz"] == "empty_file"


def test_wet_conversion_records_are_plain_text(spark, crawl, tmp_path):
    """WET: conversion records become documents as they are (the text Common Crawl extracted)."""
    from warc_fixture import PASSWD, PASSWD_SENTENCE

    from curate.web.extractors import make_extractor

    require(PASSWD)
    text = make_extractor({"extractor": "resiliparse", "main_content": True})((PASSWD.read_text(), None))[0]
    ids = write_warc(tmp_path / "crawl.warc.wet.gz", [
        Record("http://example.org/passwd", text.encode("utf-8"), status=None, content_type=None,
               rec_type="conversion", warc_content_type="text/plain"),
        Record("http://example.org/blank", b"", status=None, content_type=None, rec_type="conversion",
               warc_content_type="text/plain")])
    result = read_documents(spark, InputSpec(str(tmp_path), format="auto"))
    docs = result.docs.collect()
    quarantine = result.quarantine.collect()
    result.release()
    assert [d["id"] for d in docs] == ids[:1] and PASSWD_SENTENCE in docs[0]["text"]
    assert docs[0]["text"] == text and docs[0]["http_status"] is None
    assert sorted((q["kind"], q["reason"]) for q in quarantine) == [("record", "empty"),
                                                                   ("skipped", "record_types: warcinfo=1")]


def _arc_record(url: str, archive_type: str, body: bytes) -> bytes:
    """One ARC v1 record: ``URL IP-address Archive-date Content-type Archive-length``, then the body."""
    return f"{url} 93.184.216.34 20240102030405 {archive_type} {len(body)}\n".encode() + body + b"\n"


def _http(status: str, content_type: str, payload: bytes) -> bytes:
    return (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n"
            .encode() + payload)


def test_arc_files_are_read_with_stable_ids_and_counted_skips(spark, crawl, tmp_path):
    """ARC (the pre-WARC Internet Archive format, read through warcio): pages become documents
    whose id is ``<file>:<offset>`` on every run (warcio invents a random record id), the other
    records are quarantined with their reason, and the read stats count the skipped file header."""
    from curate.engine.manifest import stage_attempt
    from curate.io.accounting import materialize_read
    from curate.io.layout import QUARANTINE_DIR

    header = b"1 0 curate-tests\nURL IP-address Archive-date Content-type Archive-length\n"
    page = crawl["pages"][0]
    records = [_arc_record("filedesc://old.arc", "text/plain", header),
               _arc_record("http://example.org/libffi.html", "text/html", _http("200 OK", "text/html", page)),
               _arc_record("http://example.org/back.png", "image/png", _http("200 OK", "image/png", PNG.read_bytes())),
               _arc_record("http://example.org/gone", "text/html", _http("404 Not Found", "text/html", page))]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "old.arc.gz").write_bytes(b"".join(gzip.compress(r) for r in records))
    offsets = [0]
    for r in records[:-1]:
        offsets.append(offsets[-1] + len(gzip.compress(r)))

    def read_once(out):
        result = read_documents(spark, InputSpec(str(tmp_path / "in"), format="auto"))
        try:
            with stage_attempt(str(out / "00-read")) as work, stage_attempt(str(out / QUARANTINE_DIR)) as qwork:
                _, stats = materialize_read(spark, result, work, qwork, 1000)
                work.commit({"stats": stats})
            return result.docs.collect(), result.quarantine.collect(), stats
        finally:
            result.release()

    docs, quarantine, stats = read_once(tmp_path / "a")
    assert [(d["id"], d["url"], d["record_id"]) for d in docs] == [
        (f"old.arc.gz:{offsets[1]}", "http://example.org/libffi.html", None)]
    assert docs[0]["text"] == page.decode("utf-8") and docs[0]["warc_date"] == "2024-01-02T03:04:05Z"
    assert sorted((q["kind"], q["reason"].split(":")[0], q["line"]) for q in quarantine) == [
        ("record", "http_error", offsets[3]), ("record", "non_html", offsets[2]), ("skipped", "record_types", 0)]
    assert stats["skipped_records"] == {"warcinfo": 1} and stats["quarantine_reasons"] == {"http_error": 1,
                                                                                          "non_html": 1}
    assert [d["id"] for d in read_once(tmp_path / "b")[0]] == [d["id"] for d in docs]  # the same ids again
