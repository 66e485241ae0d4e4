"""Real web pages wrapped into WARC records with warcio (no HTML is written by hand here).

Where the pages come from, and their licences:

- ``pyspark/licenses/LICENSE-javassist.html`` — shipped in the pyspark wheel (a dependency of
  curate): the Javassist project's HTML page of the Mozilla Public License 1.1 (MPL 1.1 text).
- ``/usr/share/doc/base-passwd/users-and-groups.html`` — Debian package base-passwd
  ("Users and Groups in the Debian System", Joey Hess, Colin Watson, David Mandelberg; GPL-2).
- ``/usr/share/doc/python3/python-policy.html`` — Debian package python3-dev (the Debian
  Python Policy, built with Docutils; see /usr/share/doc/python3/copyright).
- ``/usr/share/doc/libffi8/html/*.html`` — Debian package libffi-dev, the libffi manual
  (Anthony Green and Red Hat, Inc.; Expat licence).
- a PNG icon of matplotlib (``mpl-data/images``; matplotlib licence, PSF-based) as a binary payload.

Tests that need the Debian pages skip when the documentation is not installed.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SITE = Path(pytest.__file__).resolve().parents[1]
JAVASSIST = SITE / "pyspark" / "licenses" / "LICENSE-javassist.html"
PASSWD = Path("/usr/share/doc/base-passwd/users-and-groups.html")
POLICY = Path("/usr/share/doc/python3/python-policy.html")
LIBFFI = Path("/usr/share/doc/libffi8/html")
PNG = SITE / "matplotlib" / "mpl-data" / "images" / "back.png"
PASSWD_SENTENCE = "This document is free; you can redistribute it"
PASSWD_TITLE = "Users and Groups in the Debian System"


def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real pages not installed here: {', '.join(missing)}")


def libffi_pages(n: int) -> list[Path]:
    pages = sorted(LIBFFI.glob("*.html"))[:n]
    if len(pages) < n:
        pytest.skip(f"libffi-dev's HTML manual not installed ({LIBFFI})")
    return pages


def pathological_page(copies: int = 3000) -> str:
    """The paragraphs of the base-passwd page, each opening div/p/b/i/a elements it never
    closes: the HTML5 tree builder reparents ever deeper (quadratic time in lexbor)."""
    require(PASSWD)
    paras = re.findall(r"<P\s*>(.*?)</P\s*>", PASSWD.read_text(encoding="utf-8"), re.S)
    return "<html><body>" + "".join(f'<div><p><b><i><a href="#{i}">' + paras[i % len(paras)]
                                    for i in range(copies)) + "</body></html>"


@dataclass
class Record:
    """One WARC record to write: a response (HTTP status + headers + payload), or another type."""

    url: str
    payload: bytes
    status: str | None = "200 OK"  # None: not an HTTP record
    content_type: str | None = "text/html; charset=utf-8"
    rec_type: str = "response"
    warc_content_type: str | None = None


def write_warc(path: Path, records: list[Record], *, gzip: bool = True, with_requests: bool = True) -> list[str]:
    """Write ``records`` (after a warcinfo record; a request record before each HTTP response,
    as crawlers do). Returns the WARC-Record-ID of each record of ``records``, in order."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    ids = []
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzip)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "warcio (curate tests)"}))
        for r in records:
            http = None
            if r.status is not None:
                headers = [("Content-Length", str(len(r.payload)))]
                if r.content_type:
                    headers.insert(0, ("Content-Type", r.content_type))
                http = StatusAndHeaders(r.status, headers, protocol="HTTP/1.1")
                if with_requests and r.rec_type == "response":
                    req = StatusAndHeaders("GET / HTTP/1.1", [("Host", r.url.split("/")[2])], is_http_request=True)
                    writer.write_record(writer.create_warc_record(r.url, "request", http_headers=req))
            extra = {"warc_content_type": r.warc_content_type} if r.warc_content_type else {}
            rec = writer.create_warc_record(r.url, r.rec_type, payload=io.BytesIO(r.payload), http_headers=http,
                                            length=None, **extra)
            writer.write_record(rec)
            ids.append(rec.rec_headers.get_header("WARC-Record-ID").strip("<>"))
    return ids
