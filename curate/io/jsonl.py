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
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Iterator, Literal, Union

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


def fast_decoder():
    """A strict, fast JSON decoder for the common line (msgspec): valid UTF-8, no BOM, finite
    numbers, no lone surrogates. Whatever it accepts, ``json.loads`` decodes to the same object
    (tests/io/test_jsonl_parse.py checks the edge cases); whatever it refuses goes the reference
    way, so results never depend on which decoder read a line."""
    import msgspec

    return msgspec.json.Decoder().decode


def line_fields(raw: bytes, first: bool, opts: ParseOptions, fast=None) -> tuple:
    """The parse of one physical line (``first``: the file's line 1, where a BOM may be).

    Returns ``("doc", id, text, carried, repairs, fast)`` — ``id`` None when it must be generated
    from file and line, ``carried`` the dict of the other fields (or None), ``fast`` whether the
    fast decoder read it — or ``("record", reason, snippet)`` for a quarantined line. ``fast``
    (see :func:`fast_decoder`) is tried first; a line it refuses is decoded exactly as without it.
    """
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    obj = None
    if fast is not None:
        try:
            obj = fast(raw)
        except Exception:  # invalid, or valid only for json.loads (NaN, 1e999, "\ud800", a BOM…)
            obj = None
        if type(obj) is not dict:
            obj = None
    repairs = []
    if obj is not None:
        return _document(obj, repairs, raw, opts, True)
    if first and raw.startswith(BOM):
        raw = raw[len(BOM):]
        repairs.append("bom_stripped")
    if not raw.strip():
        return "record", "blank_line", _snippet(raw)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        if opts.utf8 == "strict":
            return "record", "invalid_utf8", _snippet(raw)
        decoded = raw.decode("utf-8", errors="replace")
        repairs.append("invalid_utf8_replaced")
    try:
        obj = json.loads(decoded)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
        return "record", f"invalid_json: {msg}", _snippet(raw)
    if not isinstance(obj, dict):
        return "record", f"not_an_object: {type(obj).__name__}", _snippet(raw)
    if _SURROGATE_ESCAPE.search(decoded) and _SURROGATE.search(json.dumps(obj, ensure_ascii=False)):
        # an escaped lone surrogate ("\\ud800") decodes to a string with no UTF-8 form
        if opts.utf8 == "strict":
            return "record", "invalid_utf8", _snippet(raw)
        obj = _without_surrogates(obj)
        if "invalid_utf8_replaced" not in repairs:
            repairs.append("invalid_utf8_replaced")
    return _document(obj, repairs, raw, opts, False)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value):
    """``value`` with every lone surrogate (json.loads joins valid pairs) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _document(obj: dict, repairs: list, raw: bytes, opts: ParseOptions, fast: bool) -> tuple:
    """The document fields of a decoded JSON object, or why it is quarantined (see :func:`line_fields`)."""
    if opts.text_field not in obj:
        return "record", "missing_text", _snippet(raw)
    text = obj.pop(opts.text_field)
    if text is None:
        return "record", "null_text", _snippet(raw)
    if not isinstance(text, str):
        return "record", f"text_not_string: {type(text).__name__}", _snippet(raw)
    if "\x00" in text:
        text = text.replace("\x00", "")
        repairs.append("nul_removed")
    if not text or text.isspace():  # == not text.strip(), without copying the text
        return "record", "empty_text", _snippet(raw)
    doc_id = obj.pop(opts.id_field, None)
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
        if doc_id is not None:
            repairs.append("bad_id_replaced")
        doc_id = None
    else:
        doc_id = str(doc_id)
    for reserved in {"id", "text"} & obj.keys():  # only when id/text come from other fields
        obj[f"{reserved}_original"] = obj.pop(reserved)
    return "doc", doc_id, text, obj or None, ",".join(repairs) or None, fast


def carried_json(carried: dict | None, fast: bool = False) -> str | None:
    """The carried fields as one JSON object (None when there are none). ``fast``: they came from
    the fast decoder, so they hold no NaN/Infinity (which msgspec would write as null) and
    msgspec's encoder writes the same values as ``json.dumps``, ten times faster."""
    if not carried:
        return None
    if fast:
        return _fast_encode(carried).decode()
    return json.dumps(carried, ensure_ascii=False)


def _fast_encode(value) -> bytes:
    global _ENCODE
    if _ENCODE is None:
        import msgspec

        _ENCODE = msgspec.json.Encoder().encode
    return _ENCODE(value)


_ENCODE = None


ID_SEPARATOR = ":"  # a document without an id gets "<file relative to the input root>:<line>"


def generated_id(rel: str, line_no: int) -> str:
    """The id of a document whose line has none: ``<file>:<line>`` (stable across runs)."""
    return f"{rel}{ID_SEPARATOR}{line_no}"


def parse_line(rel: str, line_no: int, raw: bytes, opts: ParseOptions) -> Parsed:
    """Turn one JSONL line into a document or a quarantine record (the reference parse)."""
    return _parsed(rel, line_no, line_fields(raw, line_no == 1, opts))


def _parsed(rel: str, line_no: int, fields: tuple) -> Parsed:
    if fields[0] == "record":
        return Parsed(rel, line_no, "record", reason=fields[1], snippet=fields[2])
    if fields[0] == "file":
        return Parsed(rel, line_no, "file", reason=fields[1])
    _, doc_id, text, carried, repairs, _ = fields
    return Parsed(rel, line_no, "doc", id=doc_id if doc_id is not None else generated_id(rel, line_no), text=text,
                  extra=carried_json(carried), repairs=repairs)


_LONG = (-(1 << 63), (1 << 63) - 1)
_FIXED_SHAPES = {bool: "true", float: "0.0", type(None): "null"}
_KEYS: dict[str, str] = {}  # object key -> its JSON text (keys repeat from line to line)


def shape(value) -> str:
    """``value`` (a decoded JSON value) as the JSON text of its shape: what Spark's JSON schema
    inference (``spark.read.json``, default options) reads from it, and nothing else.

    Strings become ``"s"`` (the empty string stays ``""``: Spark infers it as null), floats
    ``0.0``, booleans ``true``, integers in the 64-bit range ``0`` (larger ones keep their digits:
    Spark infers a decimal of their precision); objects keep their keys, sorted; arrays keep their
    distinct element shapes, sorted. Spark's inference merges types with an associative,
    commutative, idempotent rule, so inferring over the distinct shapes of a column gives the
    schema of inferring over all its values (tests/io/test_jsonl_parse.py checks it against Spark).
    """
    kind = type(value)
    if kind is dict:
        parts = []
        for key in sorted(value):
            item = value[key]
            item_kind = type(item)  # scalars inline: this runs for every carried value of every line
            if item_kind is str:
                text = '"s"' if item else '""'
            elif item_kind is int:
                text = "0" if _LONG[0] <= item <= _LONG[1] else str(item)
            elif item_kind is dict or item_kind is list:
                text = shape(item)
            else:
                text = _FIXED_SHAPES[item_kind]
            parts.append(_key(key) + text)
        return "{" + ",".join(parts) + "}"
    if kind is list:
        return "[" + ",".join(sorted({shape(v) for v in value})) + "]"
    if kind is str:
        return '"s"' if value else '""'
    if kind is int:
        return "0" if _LONG[0] <= value <= _LONG[1] else str(value)
    return _FIXED_SHAPES[kind]


def _key(key: str) -> str:
    """``"key":`` as JSON text (memoised: the same keys come back on every line)."""
    text = _KEYS.get(key)
    if text is None:
        text = json.dumps(key) + ":"
        if len(_KEYS) < 1 << 16:
            _KEYS[key] = text
    return text


class ShapeSet:
    """The shapes (:func:`shape`) of a unit's carried fields that Spark's inference needs.

    Computing a shape walks the value in Python, once per line. Instead, each line is first
    checked in compiled code (``msgspec.convert``) against a type built from the shapes kept so
    far (:class:`Kinds`): it accepts a value when, at every position, the value's kind is one
    already seen there, or one that Spark's type merge absorbs (a null, a missing field, an empty
    string where a string was seen, an integer where a float was seen). Such a line cannot change
    the merged schema: the merge is associative, commutative and idempotent and works position by
    position. Only a line that fails the check has its shape computed and kept. So the kept
    shapes infer the schema all the lines infer (tests/io/test_read_accounting.py), and there are
    far fewer of them than distinct shapes.
    """

    def __init__(self):
        import msgspec

        self.shapes: set[str] = set()
        self._kinds = Kinds()
        self._type = None
        self._convert = msgspec.convert
        self._invalid = (msgspec.ValidationError, TypeError)  # TypeError: a union msgspec cannot check

    def add(self, carried: dict) -> None:
        if self._type is not None:
            try:
                self._convert(carried, self._type, strict=True)
                return
            except self._invalid:
                pass
        text = shape(carried)
        if text not in self.shapes:  # a known shape the check refuses (a big integer) changes nothing
            self.shapes.add(text)
            self._kinds.see(carried)
            self._type = self._kinds.covering_type()

    def __len__(self) -> int:
        return len(self.shapes)


class Kinds:
    """The kinds of JSON value seen at one position (and, for objects and arrays, below it)."""

    def __init__(self):
        self.scalars: set[str] = set()  # "str", "empty", "long", "double", "bool" (beyond 64 bits: none)
        self.fields: dict[str, Kinds] | None = None  # an object was seen: its keys' kinds
        self.elements: Kinds | None = None  # an array was seen: its elements' kinds

    def see(self, value) -> None:
        kind = type(value)
        if kind is dict:
            self.fields = {} if self.fields is None else self.fields
            for key, item in value.items():
                self.fields.setdefault(key, Kinds()).see(item)
        elif kind is list:
            self.elements = Kinds() if self.elements is None else self.elements
            for item in value:
                self.elements.see(item)
        elif kind is str:
            self.scalars.add("str" if value else "empty")
        elif kind is int:
            if _LONG[0] <= value <= _LONG[1]:
                self.scalars.add("long")
        elif kind is float:
            self.scalars.add("double")
        elif kind is bool:
            self.scalars.add("bool")

    def covering_type(self):
        """The msgspec type of the values whose kinds were seen here, nulls included; an object
        may lack any key seen but have no other. An integer beyond 64 bits is only accepted where
        a float was seen (its own type depends on its digits); an object is not accepted where a
        key seen holds a character msgspec refuses in a field name."""
        import msgspec

        options: list = [None]
        if "str" in self.scalars:
            options.append(str)
        elif "empty" in self.scalars:
            options.append(Literal[""])
        if "double" in self.scalars:
            options.append(float)
        elif "long" in self.scalars:
            options.append(Annotated[int, msgspec.Meta(ge=_LONG[0], le=_LONG[1])])
        if "bool" in self.scalars:
            options.append(bool)
        if self.fields is not None:
            names = sorted(self.fields)
            try:
                options.append(msgspec.defstruct(
                    "Seen", [(f"f{i}", self.fields[n].covering_type(), None) for i, n in enumerate(names)],
                    rename={f"f{i}": n for i, n in enumerate(names)}, forbid_unknown_fields=True))
            except ValueError:  # a key msgspec cannot name a field ('"', '\\', control characters):
                pass  # objects here then fail the check, and their lines have their shapes computed
        if self.elements is not None:
            options.append(list[self.elements.covering_type()])
        return Union[tuple(options)]


def numbered_fields(lines: Iterator[tuple[int, bytes]], opts: ParseOptions, first_line: int = 1,
                    bom_line: int = 1, fast=None) -> Iterator[tuple[int, tuple]]:
    """``(line number, fields)`` of numbered lines (:func:`line_fields`; ``bom_line``: the number of
    the file's first line, 0 when it is not among them); a read error ends them with one
    ``(last + 1, ("file", reason))``."""
    last = first_line - 1
    try:
        for line_no, raw in lines:
            last = line_no
            yield line_no, line_fields(raw, line_no == bom_line, opts, fast)
    except Truncated as exc:
        yield last + 1, ("file", f"truncated_file: {exc}")
    except (OSError, zlib.error, EOFError) as exc:
        yield last + 1, ("file", f"corrupt_file: {exc}")
    except Exception as exc:  # zstandard.ZstdError and friends
        yield last + 1, ("file", f"corrupt_file: {type(exc).__name__}: {exc}")


def _size(path: str | Path) -> int | str:
    """The size of ``path``, or the reason it cannot be read."""
    try:
        return fs.info(path)["size"]
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def parse_file(path: str | Path, rel: str, opts: ParseOptions) -> Iterator[Parsed]:
    """Every record of one JSONL(.gz/.zst) file, quarantine records included."""
    for line_no, fields in file_fields(path, opts):
        yield _parsed(rel, line_no, fields)


def file_fields(path: str | Path, opts: ParseOptions, fast=None) -> Iterator[tuple[int, tuple]]:
    """``(line number, fields)`` of every line of one JSONL(.gz/.zst) file (see :func:`numbered_fields`);
    an unreadable or empty file is one ``(0, ("file", reason))``."""
    size = _size(path)
    if isinstance(size, str):
        yield 0, ("file", size)
        return
    if size == 0:
        yield 0, ("file", "empty_file")
        return
    yield from numbered_fields(split_lines(byte_chunks(path)), opts, fast=fast)


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


class _CountingReader:
    """Reads of a file object that count the newlines falling inside ``[start, end)``."""

    def __init__(self, fh: IO[bytes], start: int, end: int):
        self.fh, self.start, self.end, self.pos, self.newlines = fh, start, end, 0, 0

    def seek(self, pos: int) -> None:
        self.fh.seek(pos)
        self.pos = pos

    def read(self, size: int) -> bytes:
        data = self.fh.read(size)
        lo, hi = max(self.start - self.pos, 0), min(self.end - self.pos, len(data))
        if lo < hi:
            self.newlines += data.count(b"\n", lo, hi)
        self.pos += len(data)
        return data


def parse_split(path: str | Path, rel: str, start: int, end: int, newlines_before: int,
                opts: ParseOptions) -> Iterator[Parsed]:
    """Every record of the lines starting in ``[start, end)`` of an uncompressed JSONL file.

    ``newlines_before`` is the number of newlines in ``[0, start)``; with it every line keeps
    its physical number in the whole file.
    """
    for line_no, fields in split_fields(path, start, end, newlines_before, opts):
        yield _parsed(rel, line_no, fields)


def split_fields(path: str | Path, start: int, end: int, newlines_before: int, opts: ParseOptions,
                 fast=None, tally: dict | None = None) -> Iterator[tuple[int, tuple]]:
    """``(line number, fields)`` of the lines starting in ``[start, end)`` (see :func:`parse_split`,
    :func:`numbered_fields`). When done, ``tally["newlines"]`` is the number of newlines in
    ``[start, end)`` — :func:`count_newlines` of the range, counted while reading it."""
    try:
        fh = fs.open_file(path, "rb")
    except OSError as exc:  # reported once per file, by its first split, as parse_file does
        if start == 0:
            yield 0, ("file", f"unreadable: {exc.strerror or exc}")
        return
    with fh:
        reader = _CountingReader(fh, start, end)
        try:
            skipped, chunks = owned_chunks(reader, start, end)
        except OSError as exc:
            yield newlines_before + 1, ("file", f"corrupt_file: {exc}")
            return
        first = newlines_before + skipped + 1
        numbered = ((first - 1 + n, raw) for n, raw in split_lines(chunks))
        yield from numbered_fields(numbered, opts, first, 1 if start == 0 else 0, fast)
    if tally is not None:
        tally["newlines"] = reader.newlines


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
