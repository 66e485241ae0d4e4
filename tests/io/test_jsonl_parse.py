"""Line-level parsing: every malformed case becomes a quarantine record or a counted repair."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from curate.io.jsonl import ParseOptions, carried_json, fast_decoder, line_fields, parse_file, parse_line, shape

OPTS = ParseOptions()


def parse(raw: bytes, line_no: int = 2, opts: ParseOptions = OPTS):
    return parse_line("f.jsonl", line_no, raw, opts)


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (b'{"id": "x"}', "missing_text"),
    (b'{"id": "x", "text": null}', "null_text"),
    (b'{"id": "x", "text": 42}', "text_not_string"),
    (b'{"id": "x", "text": ["a"]}', "text_not_string"),
    (b'{"id": "x", "text": ""}', "empty_text"),
    (b'{"id": "x", "text": " \\n\\t "}', "empty_text"),
    (b"   ", "blank_line"),
])
def test_malformed_lines_are_quarantined_with_reason(raw, reason):
    rec = parse(raw)
    assert rec.kind == "record"
    assert rec.reason.startswith(reason)
    assert (rec.file, rec.line) == ("f.jsonl", 2)


def test_invalid_utf8_is_replaced_and_counted_by_default():
    rec = parse(b'{"id": "x", "text": "caf\xe9 au lait"}')
    assert rec.kind == "doc"
    assert rec.text == "caf\ufffd au lait"
    assert rec.repairs == "invalid_utf8_replaced"


def test_invalid_utf8_is_quarantined_in_strict_mode():
    rec = parse(b'{"id": "x", "text": "caf\xe9"}', opts=ParseOptions(utf8="strict"))
    assert (rec.kind, rec.reason) == ("record", "invalid_utf8")


def test_nul_bytes_are_removed_and_counted():
    rec = parse(b'{"id": "x", "text": "a\\u0000b"}')
    assert (rec.text, rec.repairs) == ("ab", "nul_removed")
    only_nul = parse(b'{"id": "x", "text": "\\u0000"}')
    assert only_nul.reason == "empty_text"


def test_bom_on_first_line_is_stripped_and_counted():
    rec = parse(b'\xef\xbb\xbf{"id": "x", "text": "hi"}', line_no=1)
    assert (rec.kind, rec.text, rec.repairs) == ("doc", "hi", "bom_stripped")


def test_missing_id_gets_path_and_line():
    rec = parse(b'{"text": "hi", "url": "u"}', line_no=7)
    assert rec.id == "f.jsonl:7"
    assert json.loads(rec.extra) == {"url": "u"}


def test_integer_id_becomes_string_and_crlf_is_tolerated():
    rec = parse(b'{"id": 12, "text": "hi"}\r')
    assert (rec.id, rec.text) == ("12", "hi")


def test_configurable_field_names_keep_other_fields():
    opts = ParseOptions(text_field="content", id_field="doc_id")
    rec = parse(b'{"doc_id": "d1", "content": "body", "id": 5, "source": "s"}', opts=opts)
    assert (rec.id, rec.text) == ("d1", "body")
    assert json.loads(rec.extra) == {"id_original": 5, "source": "s"}


def _records(path: Path):
    return list(parse_file(path, path.name, OPTS))


def test_zero_byte_file_is_a_file_problem(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    assert [(r.kind, r.reason) for r in _records(p)] == [("file", "empty_file")]


def _lines(n: int) -> bytes:
    return b"".join(json.dumps({"id": f"d{i}", "text": f"document number {i} " * 20}).encode() + b"\n"
                    for i in range(n))


@pytest.mark.parametrize("suffix, compress", [
    (".jsonl.gz", gzip.compress),
    (".jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_truncated_compressed_file_keeps_records_before_the_break(tmp_path, suffix, compress):
    whole = compress(_lines(2000))
    p = tmp_path / f"cut{suffix}"
    p.write_bytes(whole[: len(whole) // 2])
    recs = _records(p)
    docs = [r for r in recs if r.kind == "doc"]
    assert 100 < len(docs) < 2000
    assert [d.id for d in docs] == [f"d{i}" for i in range(len(docs))]
    assert recs[-1].kind == "file" and recs[-1].reason.startswith("truncated_file")
    # the cut-off last line (if any) is quarantined, never silently dropped
    partial = [r for r in recs if r.kind == "record"]
    assert len(partial) <= 1


@pytest.mark.parametrize("suffix, compress", [
    (".jsonl.gz", gzip.compress),
    (".jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_complete_multi_member_compressed_file_reads_everything(tmp_path, suffix, compress):
    p = tmp_path / f"ok{suffix}"
    p.write_bytes(compress(_lines(10)) + compress(_lines(5)))
    recs = _records(p)
    assert [r.kind for r in recs] == ["doc"] * 15
    assert recs[-1].line == 15


def test_last_line_without_newline_is_read(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}')
    assert [r.id for r in _records(p)] == ["a", "b"]


def test_single_huge_line_is_read_whole(tmp_path):
    text = "word " * (4 << 20)  # 20 MB in one line, spans many read chunks
    p = tmp_path / "big.jsonl"
    p.write_text(json.dumps({"id": "big", "text": text}) + "\n")
    (rec,) = _records(p)
    assert rec.kind == "doc" and len(rec.text) == len(text)


# ---------------------------------------------------------------- fast decoder (msgspec) and fallback

EDGE_LINES = [
    b'{"id": "a", "text": "plain", "meta": {"n": 1, "f": 0.5, "tags": ["x", ""], "none": null}}',
    b'{"id": "a", "text": "dup key", "text": "last wins", "k": 1, "k": 2}',
    b'{"id": 1, "text": "big", "n": 123456789012345678901234567890, "m": -9223372036854775809}',
    b'{"id": "a", "text": "nan", "v": NaN, "w": -Infinity}',  # json.loads only
    b'{"id": "a", "text": "huge", "v": 1e400}',  # json.loads only: inf
    b'{"id": "a", "text": "lone \\ud800 surrogate", "m": {"\\udc00": ["\\ud83d\\ude00"]}}',
    b'{"id": "a", "text": "pair \\ud83d\\ude00 ok"}',
    b'{"id": "a", "text": "caf\xe9 latin-1"}',
    b'{"id": "a", "text": "overlong \xc0\xaf"}',
    b'{"id": "a", "text": "surrogate bytes \xed\xa0\x80"}',
    b'\xef\xbb\xbf{"id": "bom", "text": "not on line 1"}',
    b'{"id": "a", "text": "nul \\u0000 inside"}',
    b'{"id": "a", "text": "crlf"}\r',
    b'{"id": "a", "text": "ctrl \x01 raw"}',
    b'{"id": "a", "text": 1.5}',
    b'{"id": "a", "text": "trailing"} x',
    b'{"id": "a", "text": "ok", "id_original": 1, "text_original": "t"}',
    b'{"id": true, "text": "bool id"}',
    b'{"id": "", "text": "empty id"}',
    b'{"id": {"x": 1}, "text": "object id"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"id": "a", "text": "\\u2003 \\n"}',
    b'  {"id": "a", "text": "spaces around"}  ',
    b'{"text": "no id", "a": -0, "b": -0.0, "c": 1E5, "d": "\\/"}',
]


@pytest.mark.parametrize("raw", EDGE_LINES)
@pytest.mark.parametrize("utf8", ["replace", "strict"])
def test_fast_decoder_gives_the_reference_fields(raw, utf8):
    """Whatever msgspec accepts decodes as json.loads would; whatever it refuses goes the reference way."""
    opts = ParseOptions(utf8=utf8)
    fast = line_fields(raw, False, opts, fast_decoder())
    reference = line_fields(raw, False, opts)
    assert fast[:5] == reference[:5] if fast[0] == "doc" else fast == reference
    if fast[0] == "doc":
        # a fast-read line's carried fields are written by msgspec: the same JSON values
        assert json.loads(carried_json(fast[3], fast[5]) or "null") == json.loads(carried_json(reference[3]) or "null")


def test_lone_surrogate_escapes_are_replaced_and_counted():
    rec = parse(b'{"id": "x", "text": "a\\ud800b", "m": ["\\udfff"]}')
    assert (rec.kind, rec.text, rec.repairs) == ("doc", "a\ufffdb", "invalid_utf8_replaced")
    assert json.loads(rec.extra) == {"m": ["\ufffd"]}
    assert parse(b'{"id": "x", "text": "a\\\\ud800b"}').text == "a\\ud800b"  # an escaped backslash, not a surrogate
    strict = parse(b'{"id": "x", "text": "a\\ud800b"}', opts=ParseOptions(utf8="strict"))
    assert (strict.kind, strict.reason) == ("record", "invalid_utf8")


def test_shape_keeps_what_spark_infers_from():
    assert shape({"b": [1, "x", "", None], "a": {"q": ""}, "n": 2**70, "f": 1.0, "t": False}) == (
        '{"a":{"q":""},"b":["","s",0,null],"f":0.0,"n":1180591620717411303424,"t":true}')
    assert shape({"x": "y"}) == shape({"x": "z"}) != shape({"x": ""})
    assert shape({"l": [1, 2, 3]}) == shape({"l": [7]}) != shape({"l": []})
