"""Line-level JSONL parsing with full accounting (pure Python, runs on Spark workers).

Every physical line of every input file ends up as exactly one :class:`Parsed` record:
either a document or a quarantined line with a reason. File-level problems (zero-byte
file, truncated ``.gz``/``.zst``) add one record with ``kind="file"``.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 20
SNIPPET_CHARS = 200


@dataclass(frozen=True)
class ParseOptions:
    text_field: str = "text"
    id_field: str = "id"
    utf8: str = "replace"  # or "strict": quarantine lines with invalid UTF-8


@dataclass
class Parsed:
    file: str
    line: int
    kind: str  # "doc", "record" (quarantined line) or "file" (file-level problem)
    id: str | None = None
    text: str | None = None
    extra: str | None = None  # JSON object of the carried fields
    reason: str | None = None
    snippet: str | None = None
    repairs: str | None = None  # comma-separated repairs applied to a kept doc


class Truncated(Exception):
    """Raised by a decompressor stream when the file ends before its end marker."""


def _plain_chunks(fh) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


def _decompressed(fh, new_decompressor) -> Iterator[bytes]:
    """Stream concatenated compressed members/frames; raise Truncated if the last is cut off."""
    decomp, fed = new_decompressor(), False
    for data in _plain_chunks(fh):
        while data:
            fed = True
            out = decomp.decompress(data)
            if out:
                yield out
            if not decomp.eof:
                break
            data = decomp.unused_data
            decomp, fed = new_decompressor(), False
    if fed and not decomp.eof:
        raise Truncated("compressed stream ended before its end marker")


def _new_gzip():
    return zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, auto-detected


def _new_zstd():
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def byte_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of ``path`` by its suffix (.gz, .zst or plain)."""
    name = path.name
    with open(path, "rb") as fh:
        if name.endswith(".gz"):
            yield from _decompressed(fh, _new_gzip)
        elif name.endswith((".zst", ".zstd")):
            yield from _decompressed(fh, _new_zstd)
        else:
            yield from _plain_chunks(fh)


def split_lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line bytes without the newline) from byte chunks.

    Joins pieces only once per line, so a single 100 MB line costs O(size).
    """
    pending: list[bytes] = []
    line_no = 0
    for chunk in chunks:
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            pending.append(chunk)
            continue
        pending.append(parts[0])
        line_no += 1
        yield line_no, b"".join(pending)
        for part in parts[1:-1]:
            line_no += 1
            yield line_no, part
        pending = [parts[-1]] if parts[-1] else []
    if pending and any(pending):
        yield line_no + 1, b"".join(pending)


def _snippet(raw: bytes) -> str:
    return raw[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")[:SNIPPET_CHARS]


def parse_line(rel: str, line_no: int, raw: bytes, opts: ParseOptions) -> Parsed:
    """Turn one JSONL line into a document or a quarantine record."""
    repairs = []
    if line_no == 1 and raw.startswith(BOM):
        raw = raw[len(BOM):]
        repairs.append("bom_stripped")
    if raw.endswith(b"\r"):
        raw = raw[:-1]

    def quarantine(reason: str) -> Parsed:
        return Parsed(rel, line_no, "record", reason=reason, snippet=_snippet(raw))

    if not raw.strip():
        return quarantine("blank_line")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        if opts.utf8 == "strict":
            return quarantine("invalid_utf8")
        decoded = raw.decode("utf-8", errors="replace")
        repairs.append("invalid_utf8_replaced")
    try:
        obj = json.loads(decoded)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
        return quarantine(f"invalid_json: {msg}")
    if not isinstance(obj, dict):
        return quarantine(f"not_an_object: {type(obj).__name__}")
    if opts.text_field not in obj:
        return quarantine("missing_text")
    text = obj.pop(opts.text_field)
    if text is None:
        return quarantine("null_text")
    if not isinstance(text, str):
        return quarantine(f"text_not_string: {type(text).__name__}")
    if "\x00" in text:
        text = text.replace("\x00", "")
        repairs.append("nul_removed")
    if not text.strip():
        return quarantine("empty_text")
    doc_id = obj.pop(opts.id_field, None)
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
        if doc_id is not None:
            repairs.append("bad_id_replaced")
        doc_id = f"{rel}:{line_no}"
    for reserved in {"id", "text"} & obj.keys():  # only when id/text come from other fields
        obj[f"{reserved}_original"] = obj.pop(reserved)
    extra = json.dumps(obj, ensure_ascii=False) if obj else None
    return Parsed(rel, line_no, "doc", id=str(doc_id), text=text, extra=extra,
                  repairs=",".join(repairs) or None)


def parse_file(path: Path, rel: str, opts: ParseOptions) -> Iterator[Parsed]:
    """Every record of one JSONL(.gz/.zst) file, quarantine records included."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        yield Parsed(rel, 0, "file", reason=f"unreadable: {exc.strerror}")
        return
    if size == 0:
        yield Parsed(rel, 0, "file", reason="empty_file")
        return
    last = 0
    try:
        for line_no, raw in split_lines(byte_chunks(path)):
            last = line_no
            yield parse_line(rel, line_no, raw, opts)
    except Truncated as exc:
        yield Parsed(rel, last + 1, "file", reason=f"truncated_file: {exc}")
    except (OSError, zlib.error, EOFError) as exc:
        yield Parsed(rel, last + 1, "file", reason=f"corrupt_file: {exc}")
    except Exception as exc:  # zstandard.ZstdError and friends
        yield Parsed(rel, last + 1, "file", reason=f"corrupt_file: {type(exc).__name__}: {exc}")


def read_records(path: str | Path, hint: str = "") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a small side file (benchmarks,
    labelled examples, mixture outputs; ``.gz``/``.zst`` ok). Unlike corpus reading, which
    quarantines, a bad line here stops with ``path:line`` and the reason (plus ``hint``)."""
    from curate.core import CurateError

    path = Path(path)
    try:
        for number, raw in split_lines(byte_chunks(path)):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid UTF-8"
                raise CurateError(f"{path}:{number}: not valid JSON ({reason}){hint}") from None
            if not isinstance(record, dict):
                raise CurateError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}{hint}")
            yield number, record
    except Truncated:
        raise CurateError(f"{path}: truncated compressed file") from None
