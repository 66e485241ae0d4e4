"""Reading web archives: WARC, WET and ARC files (``.gz`` or plain) into documents.

One Spark task per file streams it through :func:`curate.io.fs.open_file` (local or any URI)
with FastWARC (Bevendorff et al. 2021, "FastWARC: Optimizing Large-Scale Web Archive
Analytics"); ARC files, and every file when FastWARC is not installed, go through warcio.
Only one record's payload is in memory at a time.

- ``warc``: ``response`` records with an HTTP 2xx status and an HTML content type become
  documents whose ``text`` is the HTML, decoded with the HTTP charset, else the ``<meta>``
  charset, else detection (the ``extract`` stage turns it into text);
- ``wet``: ``conversion`` records (already plain UTF-8 text) become documents.

Every other candidate record (``response``/``conversion``) becomes a quarantine record of kind
``record`` with its reason — ``non_html``, ``not_http``, ``http_redirect``, ``http_error``,
``empty``, ``binary_payload``, ``undecodable_charset``, ``too_large``, ``truncated`` (the file
ends inside it) — so that ``records = documents + quarantined``. Records of the crawl's own
bookkeeping (``warcinfo``, ``request``, ``metadata``, ``revisit`` …) are not candidates; their
numbers per type are one quarantine row of kind ``skipped`` per file. Files that are not web
archives, empty, or corrupt (bad gzip, bad record header) give a row of kind ``file`` naming
the byte offset after which nothing could be read; the records before it are kept.

``_line`` of a document or quarantine record is the byte offset of its record in the file
(for ``.gz`` files the offset of its gzip member, as in the Common Crawl index), and ``id`` is
its ``WARC-Record-ID`` (``urn:uuid:…``), or ``<file>:<offset>`` when it has none (ARC records never do).
"""
from __future__ import annotations

import codecs
import functools
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from curate.core import ID, TEXT
from curate.io import fs
from curate.io.jsonl import generated_id

HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_PAYLOAD_BYTES = 16 << 20  # an HTML page larger than this is a `too_large` record, never read whole
BINARY_SNIFF_BYTES = 8192
MAX_REPLACED_FRACTION = 0.01  # more U+FFFD than this after the best decoding: `undecodable_charset`
CANDIDATE_TYPE = {"warc": "response", "wet": "conversion"}
DOC_COLUMNS = [(ID, "string"), (TEXT, "string"), ("url", "string"), ("warc_date", "string"),
               ("record_id", "string"), ("content_type", "string"), ("http_status", "int"),
               ("charset", "string"), ("warc_languages", "string"), ("repairs", "string"),
               ("_file", "string"), ("_line", "long")]
ROW_COLUMNS = DOC_COLUMNS + [("_kind", "string"), ("_reason", "string"), ("_snippet", "string")]
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)", re.I | re.S)


@dataclass
class Raw:
    """One archive record as either backend presents it; ``read(n)`` reads at most n payload bytes."""

    offset: int
    type: str
    headers: Callable[[str], str | None]
    status: int | None
    http_type: str | None  # the HTTP Content-Type (full header value); for WET the record's Content-Type
    is_http: bool
    declared: int  # payload length the record announces (after the HTTP headers)
    read: Callable[[int], bytes]


# ---------------------------------------------------------------- record -> row


def mime_and_charset(content_type: str | None) -> tuple[str | None, str | None]:
    """``"text/html; charset=ISO-8859-1"`` -> ``("text/html", "iso-8859-1")``."""
    if not content_type:
        return None, None
    parts = [p.strip() for p in content_type.split(";")]
    charset = next((p.split("=", 1)[1].strip(" \"'").lower() for p in parts[1:]
                    if p.lower().startswith("charset=")), None)
    return (parts[0].lower() or None), charset or None


def _codec(name: str | None) -> str | None:
    """The Python codec for a charset label, or None when Python has none."""
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def looks_binary(payload: bytes) -> bool:
    """NUL bytes or many control characters in the first 8 KiB (UTF-16/32 with a BOM are text)."""
    head = payload[:BINARY_SNIFF_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls > 0.05 * max(len(head), 1)


def decode_html(payload: bytes, declared: str | None) -> tuple[str | None, str, list[str]]:
    """``(text or None, charset used, repairs)``.

    A byte-order mark wins; then strict UTF-8 (valid multi-byte UTF-8 is almost never an
    accident, and mislabelled UTF-8 is the common web error), the HTTP charset, the ``<meta>``
    charset, detection (uchardet via Resiliparse, WHATWG names), cp1252, each tried strictly;
    the first with U+FFFD replacements is the last resort (None when over 1% is replaced).
    """
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if payload.startswith(bom):
            return payload.decode(name, errors="replace").lstrip("\ufeff"), name, []
    given = _codec(declared)
    repairs = ["unknown_charset"] if declared and not given else []
    if payload.isascii():
        return payload.decode("ascii"), "ascii", repairs
    meta = _META_CHARSET.search(payload[:4096])
    candidates = ["utf-8", given, _codec(meta.group(1).decode("ascii", "replace")) if meta else None,
                  _detect(payload), "cp1252"]
    tried: list[str] = []
    for codec in candidates:
        if not codec or codec in tried:
            continue
        tried.append(codec)
        try:
            text = payload.decode(codec)
        except UnicodeDecodeError:
            continue
        return text, codec, repairs + (["charset_mismatch"] if given and codec != given else [])
    codec = given or tried[1 if len(tried) > 1 else 0]
    text = payload.decode(codec, errors="replace")
    if text.count("\ufffd") > MAX_REPLACED_FRACTION * max(len(text), 1):
        return None, codec, repairs
    return text, codec, repairs + ["invalid_bytes_replaced"]


def _detect(payload: bytes) -> str | None:
    try:
        from resiliparse.parse.encoding import detect_encoding
    except ImportError:  # curate[web] without resiliparse: utf-8 / cp1252 only
        return None
    return _codec(detect_encoding(payload, from_html_meta=False))


def is_html(mime: str | None, payload_head: bytes) -> bool:
    """An HTML content type, or none at all and a payload that starts like an HTML document."""
    if mime:
        return mime in HTML_TYPES
    return bool(_HTML_START.match(payload_head[:2048]))


def record_row(raw: Raw, fmt: str, rel: str) -> dict:
    """A document row or a quarantine row (``_kind``/``_reason``) for one candidate record."""
    url = raw.headers("WARC-Target-URI")
    record_id = (raw.headers("WARC-Record-ID") or "").strip("<> ") or None
    base = {ID: record_id or generated_id(rel, raw.offset), "url": url, "warc_date": raw.headers("WARC-Date"),
            "record_id": record_id, "http_status": raw.status, "_file": rel, "_line": raw.offset}
    mime, charset = mime_and_charset(raw.http_type)
    base["content_type"] = mime

    def reject(reason: str, detail: str = ""):
        return {**base, "_kind": "record", "_reason": reason + (f": {detail}" if detail else ""),
                "_snippet": (url or "")[:200]}

    if fmt == "warc":
        if not raw.is_http:
            return reject("not_http", mime or "")
        if raw.status is None or not 200 <= raw.status < 300:
            return reject("http_redirect" if raw.status and 300 <= raw.status < 400 else "http_error",
                          str(raw.status))
        if mime and mime not in HTML_TYPES:
            return reject("non_html", mime)
    if raw.declared > MAX_PAYLOAD_BYTES:
        return reject("too_large", f"{raw.declared} bytes")
    payload = raw.read(MAX_PAYLOAD_BYTES + 1)
    if len(payload) < raw.declared:
        return reject("truncated", f"{len(payload)} of {raw.declared} bytes before the end of the file")
    if not payload.strip():
        return reject("empty")
    repairs = []
    if raw.headers("WARC-Truncated"):
        repairs.append("warc_truncated")  # the crawler cut the payload (Common Crawl: at 1 MiB)
    if fmt == "wet":
        text = payload.decode("utf-8", errors="replace")
        if "\ufffd" in text and "\ufffd".encode() not in payload:
            repairs.append("invalid_utf8_replaced")
        return {**base, TEXT: text, "charset": "utf-8", "repairs": ",".join(repairs) or None,
                "warc_languages": raw.headers("WARC-Identified-Content-Language")}
    if looks_binary(payload):
        return reject("binary_payload", mime or "")
    if not is_html(mime, payload):
        return reject("non_html", "no content type, not html")
    text, used, fixes = decode_html(payload, charset)
    if text is None:
        return reject("undecodable_charset", used)
    if not text.strip():
        return reject("empty")
    return {**base, TEXT: text, "charset": used, "repairs": ",".join(repairs + fixes) or None}


# ---------------------------------------------------------------- backends


def _fastwarc_records(stream) -> Iterator[Raw]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for rec in ArchiveIterator(stream, record_types=WarcRecordType.any_type, parse_http=False):
        kind = str(rec.record_type)
        is_http = False
        status = http_type = None
        if kind == "response" and (rec.headers.get("Content-Type") or "").lower().startswith("application/http"):
            rec.parse_http()
            if rec.http_headers is not None:
                is_http = True
                status = rec.http_headers.status_code
                http_type = rec.http_headers.get("Content-Type")
        else:
            http_type = rec.headers.get("Content-Type")
        yield Raw(rec.stream_pos, kind, rec.headers.get, status, http_type, is_http, rec.content_length,
                  rec.reader.read)


def _warcio_records(stream, arc: bool = False) -> Iterator[Raw]:
    """warcio (ARC files, or no FastWARC): the payload is read (up to the size cap) before the
    offset, which warcio knows only once the record is consumed."""
    from warcio.archiveiterator import ArchiveIterator

    it = ArchiveIterator(stream, arc2warc=True, ensure_http_headers=False)
    for rec in it:
        kind = rec.rec_type
        http = rec.http_headers if kind == "response" else None
        status = None
        if http is not None:
            try:
                status = int(http.get_statuscode())
            except (TypeError, ValueError):
                status = None
        http_type = http.get_header("Content-Type") if http is not None else rec.rec_headers.get_header("Content-Type")
        declared = getattr(rec.raw_stream, "limit", None) or int(rec.length or 0)
        payload = rec.raw_stream.read(MAX_PAYLOAD_BYTES + 1)
        headers = _arc_headers(rec.rec_headers.get_header) if arc else rec.rec_headers.get_header
        yield Raw(it.get_record_offset(), kind, headers, status, http_type, http is not None,
                  declared, lambda n, p=payload: p[:n])


def _arc_headers(get: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """An ARC record's headers as warcio converts them, minus the ``WARC-Record-ID`` it invents
    (a random uuid): ARC records have no id, so theirs is ``<file>:<offset>``, the same every run."""
    return lambda name: None if name == "WARC-Record-ID" else get(name)


def _backend(rel: str):
    """FastWARC for WARC/WET; warcio for ARC and when FastWARC is missing."""
    if ".arc" in posixpath.basename(rel):
        return functools.partial(_warcio_records, arc=True)
    try:
        import fastwarc  # noqa: F401

        return _fastwarc_records
    except ImportError:
        return _warcio_records


def file_format(rel: str, requested: str) -> str:
    """``wet`` for WET files (by name) or when asked for; otherwise ``warc`` (ARC files too)."""
    if requested in ("warc", "wet"):
        return requested
    return "wet" if ".wet" in posixpath.basename(rel) else "warc"


def read_archive(uri: str, rel: str, fmt: str) -> Iterator[dict]:
    """Rows of one archive file: documents, quarantine records, one ``skipped`` summary, file problems."""
    skipped: dict[str, int] = {}
    seen, last = 0, 0
    problem = None
    with fs.open_file(uri, "rb") as stream:
        records = _backend(rel)(stream)
        while True:
            try:
                raw = next(records, None)
            except Exception as exc:  # bad bytes: the backends raise OSError, ValueError, zlib/EOF errors
                problem = _file_problem(exc, seen, last)
                break
            if raw is None:
                break
            seen += 1
            last = raw.offset
            if raw.type != CANDIDATE_TYPE[fmt]:
                skipped[raw.type] = skipped.get(raw.type, 0) + 1
                continue
            yield record_row(raw, fmt, rel)
    if seen == 0 and problem is None:
        problem = "empty_file" if fs.info(uri)["size"] == 0 else "not_an_archive: no records"
    if skipped:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(skipped.items()))
        yield {"_file": rel, "_line": 0, "_kind": "skipped", "_reason": f"record_types: {detail}", "_snippet": None}
    if problem:
        yield {"_file": rel, "_line": last, "_kind": "file", "_reason": problem, "_snippet": None}


def _file_problem(exc: Exception, seen: int, last: int) -> str:
    message = " ".join(str(exc).split())[:200] or type(exc).__name__
    if seen == 0:
        return f"not_an_archive: {message}"
    return f"corrupt: after the record at offset {last}: {message}; the rest of the file was not read"


# ---------------------------------------------------------------- Spark


def _arrow_schema():
    import pyarrow as pa

    types = {"string": pa.large_string(), "int": pa.int32(), "long": pa.int64()}
    return pa.schema([(name, types[t]) for name, t in ROW_COLUMNS])


def _batch(rows: list[dict], schema):
    import pyarrow as pa

    return pa.RecordBatch.from_pydict({f.name: [r.get(f.name) for r in rows] for f in schema}, schema=schema)


def _archive_partitions(root: str, units: list[tuple[str, str]], fingerprint: str, batch_bytes: int = 32 << 20):
    """mapInArrow function: partition i reads archive ``units[i] = (rel, format)``.

    ``fingerprint`` only makes the plan of a changed input differ from a cached one."""
    def run(batches, _fingerprint=fingerprint):
        schema = _arrow_schema()
        for batch in batches:
            for index in batch.column(0).to_pylist():
                rel, fmt = units[index]
                rows, size = [], 0
                for row in read_archive(fs.join(root, rel), rel, fmt):
                    rows.append(row)
                    size += len(row.get(TEXT) or "")
                    if len(rows) >= 1000 or size >= batch_bytes:
                        yield _batch(rows, schema)
                        rows, size = [], 0
                if rows:
                    yield _batch(rows, schema)

    return run


def read_web_archives(spark, root: str, files: list[str], infos: list[dict], spec):
    """Documents and quarantine records of WARC/WET/ARC files, one Spark task per file."""
    import hashlib

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    units = [(rel, file_format(rel, spec.format)) for rel in files]
    fingerprint = hashlib.sha256(repr(sorted(zip(files, [(i["size"], i["token"]) for i in infos]))).encode())
    ddl = ", ".join(f"{name} {t}" for name, t in ROW_COLUMNS)
    rows = (spark.range(0, len(units), 1, numPartitions=max(len(units), 1))
            .mapInArrow(_archive_partitions(root, units, fingerprint.hexdigest()), ddl)
            .persist(StorageLevel.DISK_ONLY))
    docs = rows.filter(F.col("_kind").isNull()).select(*[name for name, _ in DOC_COLUMNS])
    quarantine = rows.filter(F.col("_kind").isNotNull()).select(
        F.col("_file").alias("file"), F.col("_line").alias("line"), F.col("_kind").alias("kind"),
        F.col("_reason").alias("reason"), F.col("_snippet").alias("snippet"))
    return docs, quarantine, [rows]
