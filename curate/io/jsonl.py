"""Line-level JSONL parsing with full accounting (pure Python, runs on Spark workers).

Every physical line of every input file ends up as exactly one :class:`Parsed` record:
either a document or a quarantined line with a reason. File-level problems (zero-byte
file, truncated ``.gz``/``.zst``) add one record with ``kind="file"``.

Files are opened through :mod:`curate.io.fs`, so a path may be a local path or any URI.
A large uncompressed file is read as line-aligned byte ranges (:func:`parse_split`): a range
``[start, end)`` owns the lines that *start* in it, and numbers them from the count of
newlines before ``start`` (:func:`count_newlines` over the preceding ranges), so records
and generated ids are exactly those of reading the file whole.
"""
from __future__ import annotations

import itertools
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from curate.io import fs

BOM = b"\xef\xbb\xbf"
NEWLINE = ord("\n")
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


COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")


def is_compressed(path: str | Path) -> bool:
    return str(path).endswith(COMPRESSED_SUFFIXES)


def byte_chunks(path: str | Path) -> Iterator[bytes]:
    """Decompressed bytes of ``path`` (a local path or a URI) by its suffix (.gz, .zst or plain)."""
    name = fs.name(path)
    with fs.open_file(path, "rb") as fh:
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


def _accounted(rel: str, lines: Iterator[tuple[int, bytes]], opts: ParseOptions,
               first_line: int = 1) -> Iterator[Parsed]:
    """Parse numbered lines; a read error becomes one ``kind="file"`` record after the last line."""
    last = first_line - 1
    try:
        for line_no, raw in lines:
            last = line_no
            yield parse_line(rel, line_no, raw, opts)
    except Truncated as exc:
        yield Parsed(rel, last + 1, "file", reason=f"truncated_file: {exc}")
    except (OSError, zlib.error, EOFError) as exc:
        yield Parsed(rel, last + 1, "file", reason=f"corrupt_file: {exc}")
    except Exception as exc:  # zstandard.ZstdError and friends
        yield Parsed(rel, last + 1, "file", reason=f"corrupt_file: {type(exc).__name__}: {exc}")


def _size(path: str | Path) -> int | str:
    """The size of ``path``, or the reason it cannot be read."""
    try:
        return fs.info(path)["size"]
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def parse_file(path: str | Path, rel: str, opts: ParseOptions) -> Iterator[Parsed]:
    """Every record of one JSONL(.gz/.zst) file, quarantine records included."""
    size = _size(path)
    if isinstance(size, str):
        yield Parsed(rel, 0, "file", reason=size)
        return
    if size == 0:
        yield Parsed(rel, 0, "file", reason="empty_file")
        return
    yield from _accounted(rel, split_lines(byte_chunks(path)), opts)


# ---------------------------------------------------------------- byte-range splits

SPLIT_CHUNK = 8 << 20


def split_ranges(size: int, split_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges of at most ``split_size`` covering ``size`` bytes (one for an empty file)."""
    if size <= split_size:
        return [(0, size)]
    return [(start, min(start + split_size, size)) for start in range(0, size, split_size)]


def count_newlines(path: str | Path, start: int, end: int) -> int:
    """Number of ``\n`` bytes in ``[start, end)`` of an uncompressed file (0 when it cannot be
    read: the parse of its splits then records why)."""
    count = 0
    try:
        with fs.open_file(path, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0 and (chunk := fh.read(min(SPLIT_CHUNK, left))):
                count += chunk.count(b"\n")
                left -= len(chunk)
    except OSError:
        return 0
    return count


def _reads(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(SPLIT_CHUNK):
        yield chunk


def owned_chunks(fh: IO[bytes], start: int, end: int) -> tuple[int, Iterator[bytes]]:
    """The bytes of the lines that start in ``[start, end)`` of ``fh``.

    Returns ``(skipped, chunks)``: ``skipped`` is 1 when the range began inside a line (the
    partial line belongs to the previous range and is skipped up to its newline), else 0; the
    chunks run from the first owned line to the end of the last one, which may lie past ``end``.
    """
    skipped = 0
    if start > 0:
        fh.seek(start - 1)
        skipped = int(fh.read(1) != b"\n")
    else:
        fh.seek(0)
    reads, pos, head = _reads(fh), start, b""
    if skipped:
        for chunk in reads:
            cut = chunk.find(b"\n")
            if cut >= 0:
                pos, head = pos + cut + 1, chunk[cut + 1:]
                break
            pos += len(chunk)
            if pos >= end:
                break
        else:
            pos = end  # end of file inside the partial line: nothing starts here
    if pos >= end:
        return skipped, iter(())
    return skipped, _until_line_end(head, reads, end - pos)


def _until_line_end(head: bytes, reads: Iterator[bytes], budget: int) -> Iterator[bytes]:
    """``budget`` (> 0) bytes of ``head`` + ``reads``, then the rest of the line they end inside."""
    stream = itertools.chain([head] if head else [], reads)
    for chunk in stream:
        if len(chunk) < budget:
            budget -= len(chunk)
            yield chunk
            continue
        yield chunk[:budget]
        if chunk[budget - 1] == NEWLINE:
            return
        for piece in itertools.chain([chunk[budget:]], stream):
            cut = piece.find(b"\n")
            if cut >= 0:
                yield piece[:cut + 1]
                return
            yield piece
        return


def parse_split(path: str | Path, rel: str, start: int, end: int, newlines_before: int,
                opts: ParseOptions) -> Iterator[Parsed]:
    """Every record of the lines starting in ``[start, end)`` of an uncompressed JSONL file.

    ``newlines_before`` is the number of newlines in ``[0, start)``; with it every line keeps
    its physical number in the whole file.
    """
    try:
        fh = fs.open_file(path, "rb")
    except OSError as exc:  # reported once per file, by its first split, as parse_file does
        if start == 0:
            yield Parsed(rel, 0, "file", reason=f"unreadable: {exc.strerror or exc}")
        return
    with fh:
        try:
            skipped, chunks = owned_chunks(fh, start, end)
        except OSError as exc:
            yield Parsed(rel, newlines_before + 1, "file", reason=f"corrupt_file: {exc}")
            return
        first = newlines_before + skipped + 1
        numbered = ((first - 1 + n, raw) for n, raw in split_lines(chunks))
        yield from _accounted(rel, numbered, opts, first)


def read_records(path: str | Path, hint: str = "") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a small side file (benchmarks,
    labelled examples, mixture outputs; ``.gz``/``.zst`` ok; a local path or a URI). Unlike
    corpus reading, which quarantines, a bad line here stops with ``path:line`` and the reason
    (plus ``hint``)."""
    from curate.core import CurateError

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
