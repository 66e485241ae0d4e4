"""``line_dedup``: remove lines (or paragraphs) repeated across the corpus — boilerplate, navigation,
cookie banners — from every document (CCNet, Wenzek et al. 2020, Sec. 3.3; Dolma's paragraph
dedup, Soldaini et al. 2024).

Units. ``unit: line`` splits the text on ``\\n``; ``unit: paragraph`` on blank lines
(``\\n\\s*\\n``). Each unit is normalised as CCNet's ``normalize_for_dedup`` does —
whitespace stripped, lower-cased, every Unicode decimal digit written ``0`` — with all
Unicode punctuation and control/format characters removed (CCNet's list covers only some
punctuation) and runs of whitespace collapsed; a unit that normalises to nothing (blank,
``-----``) is never counted nor removed. Its key is the first 8 bytes of BLAKE2b of the
normalised UTF-8 (a signed 64-bit integer).

Counting, in Spark. Each document contributes its *distinct* unit hashes (``explode``); a
``groupBy(hash)`` counts the documents containing each unit. Units in at least ``min_docs``
documents are *frequent*; they are written as the artifact table ``<column>_units`` (hash,
docs, first_id). With ``keep_first: true`` the document with the smallest id keeps the unit
(every occurrence in it), otherwise the unit is removed everywhere. A join sends each
document only the hashes it must drop; only the documents that change go through Python again,
and what they lose is written as the artifact table ``<column>_removed`` (id, removed_units,
removed_chars, removed, too_short). Kept and rejected rows are built from the two artifacts by
cutting the recorded spans out of the text (:func:`cut`), so the runner's passes over the
outputs (count, write) never normalise or hash a unit again.

Rewriting. A removed unit goes with the separator before it (or after it, for the first unit),
so neighbouring text keeps its own separators; nothing else changes (a document with nothing
removed is byte-identical). Each document gets the struct column ``<column>`` (default
``line_dedup`` or ``paragraph_dedup``) with ``removed_units``, ``removed_chars`` (original
length minus new length) and ``removed``: the removed substrings with their offsets in the
original text, so :func:`restore` rebuilds the original exactly — nothing disappears without a
trace. A document whose text changed and is left with fewer than ``min_chars`` characters
(stripped) is rejected (``too_short_after_line_dedup``) with its *original* text.

Intra-document repetition is not this stage's business (``gopher_repetition`` measures it):
a unit repeated inside one document counts once.
"""
from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata

from curate.core import ID, REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage

SEPARATORS = {"line": re.compile(r"(\n)"), "paragraph": re.compile(r"(\n\s*\n)")}
REASON = "too_short_after_line_dedup"
_DIGIT = re.compile(r"\d")  # Unicode decimal digits (str patterns)
_SPAN = "struct<offset:long,text:string>"
RECORD = f"struct<removed_units:long,removed_chars:long,removed:array<{_SPAN}>>"


# ---------------------------------------------------------------------------- pure functions


@functools.lru_cache(maxsize=1)
def _strip_table() -> dict[int, None]:
    """``str.translate`` table deleting Unicode punctuation (P*) and control/format (Cc, Cf) characters."""
    return {cp: None for cp in range(sys.maxunicode + 1)
            if unicodedata.category(chr(cp)) in {"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Cc", "Cf"}
            and not chr(cp).isspace()}


def _fold(text: str) -> str:
    """Lower case, digits -> 0, punctuation/controls removed; whitespace untouched."""
    return _DIGIT.sub("0", text.lower()).translate(_strip_table())


def normalize_unit(unit: str) -> str:
    """CCNet dedup normalisation: lower case, digits -> 0, no punctuation/controls, single spaces."""
    return " ".join(_fold(unit).split())


def normalized_units(units: list[str], unit: str, text: str) -> list[str]:
    """``normalize_unit`` of each of ``text``'s units. Lines are folded as one string (one call per
    document, not per line): folding keeps every whitespace character, so the ``\n`` split of the
    folded text lines up with the units. Paragraphs are folded one by one (removing punctuation
    can join two blank lines into a new paragraph break)."""
    if unit == "line":
        folded = _fold(text).split("\n")
        if len(folded) == len(units):
            return [" ".join(u.split()) for u in folded]
    return [normalize_unit(u) for u in units]


def unit_hash(normalized: str) -> int:
    """Signed 64-bit key of a normalised unit: the first 8 bytes of BLAKE2b, little-endian."""
    digest = hashlib.blake2b(normalized.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def split_units(text: str, unit: str) -> tuple[list[str], list[str]]:
    """``(units, separators)``: ``units[i]`` is followed by ``separators[i]`` (one fewer separator)."""
    if unit == "line":
        units = text.split("\n")
        return units, ["\n"] * (len(units) - 1)
    pieces = SEPARATORS[unit].split(text)
    return pieces[0::2], pieces[1::2]


def unit_keys(text: str | None, unit: str) -> list[int]:
    """The distinct keys of ``text``'s units that normalise to something, sorted."""
    units, _ = split_units(text or "", unit)
    return sorted({unit_hash(n) for n in normalized_units(units, unit, text or "") if n})


def remove_units(text: str, unit: str, remove: set[int]) -> tuple[str, int, list[tuple[int, str]]]:
    """``(new_text, removed_units, removed_spans)``: ``text`` without the units whose key is in
    ``remove``; a removed unit goes with the separator before it (after it, for the first unit
    kept none before). ``removed_spans`` are ``(offset in text, substring)``, in order."""
    units, seps = split_units(text, unit)
    kept: list[tuple[int, int]] = []  # [start, end) intervals of text that stay
    removed = 0
    start = 0
    for i, (piece, normalized) in enumerate(zip(units, normalized_units(units, unit, text))):
        sep_start = start - (len(seps[i - 1]) if i else 0)
        end = start + len(piece)
        if normalized and unit_hash(normalized) in remove:
            removed += 1
        else:
            kept.append((start if not kept else sep_start, end))
        start = end + (len(seps[i]) if i < len(seps) else 0)
    if not removed:
        return text, 0, []
    spans, cursor = [], 0
    for a, b in kept:
        if a > cursor:
            spans.append((cursor, text[cursor:a]))
        cursor = b
    if cursor < len(text):
        spans.append((cursor, text[cursor:]))
    return "".join(text[a:b] for a, b in kept), removed, spans


def cut(text: str, spans: list[tuple[int, str]]) -> str:
    """``text`` without the substrings ``spans`` (``(offset, substring)``, in order) — the text
    :func:`remove_units` returned, rebuilt without normalising or hashing anything."""
    out: list[str] = []
    cursor = 0
    for offset, piece in spans:
        out.append(text[cursor:offset])
        cursor = offset + len(piece)
    out.append(text[cursor:])
    return "".join(out)


def restore(new_text: str, spans: list[tuple[int, str]]) -> str:
    """The original text from the rewritten one and its removed spans (the inverse of :func:`remove_units`)."""
    out: list[str] = []
    length = taken = 0
    for offset, piece in sorted(spans):
        gap = offset - length
        out += [new_text[taken:taken + gap], piece]
        taken += gap
        length = offset + len(piece)
    out.append(new_text[taken:])
    return "".join(out)


# ---------------------------------------------------------------------------- Spark


def _keys_column(col, unit: str):
    """Arrow UDF: ``array<long>`` of the distinct unit keys of each text."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    def keys(texts):
        return pa.array([unit_keys(t, unit) for t in texts.to_pylist()], pa.list_(pa.int64()))

    keys.__annotations__ = {"texts": pa.Array, "return": pa.Array}
    return F.arrow_udf(keys, "array<long>")(col)


def _removal_column(text_col, remove_col, unit: str, min_chars: int):
    """Arrow UDF: what :func:`remove_units` removes from each (text, keys to remove), and whether the
    rest is shorter than ``min_chars`` (stripped)."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    span = pa.struct([("offset", pa.int64()), ("text", pa.string())])
    out_type = pa.struct([("removed_units", pa.int64()), ("removed_chars", pa.int64()),
                          ("removed", pa.list_(span)), ("too_short", pa.bool_())])

    def removal(texts, removes):
        rows = []
        for text, keys in zip(texts.to_pylist(), removes.to_pylist()):
            text = text or ""
            new, count, spans = remove_units(text, unit, set(keys or ()))
            rows.append({"removed_units": count, "removed_chars": len(text) - len(new),
                         "removed": [{"offset": o, "text": s} for o, s in spans],
                         "too_short": bool(count) and len(new.strip()) < min_chars})
        return pa.array(rows, out_type)

    removal.__annotations__ = {"texts": pa.Array, "removes": pa.Array, "return": pa.Array}
    return F.arrow_udf(removal, f"struct<removed_units:long,removed_chars:long,removed:array<{_SPAN}>,"
                                f"too_short:boolean>")(text_col, remove_col)


def _cut_column(text_col, spans_col):
    """Arrow UDF: :func:`cut` of each text by its recorded spans."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    def cut_texts(texts, spans):
        return pa.array([cut(t or "", [(s["offset"], s["text"]) for s in sp or ()])
                         for t, sp in zip(texts.to_pylist(), spans.to_pylist())], pa.string())

    cut_texts.__annotations__ = {"texts": pa.Array, "spans": pa.Array, "return": pa.Array}
    return F.arrow_udf(cut_texts, "string")(text_col, spans_col)


def frequent_units(df, unit: str, min_docs: int):
    """``(doc_keys, frequent)``: each document's distinct unit keys (``id``, ``hash``), and the keys
    found in at least ``min_docs`` documents with their document count and smallest id."""
    from pyspark.sql import functions as F

    doc_keys = df.select(ID, F.explode(_keys_column(F.col(TEXT), unit)).alias("hash"))
    frequent = (doc_keys.groupBy("hash").agg(F.count("*").alias("docs"), F.min(ID).alias("first_id"))
                .filter(F.col("docs") >= min_docs))
    return doc_keys, frequent


def removals_of(df, doc_keys, frequent, unit: str, keep_first: bool, min_chars: int):
    """One row per document that loses something: ``id``, ``removed_units``, ``removed_chars``,
    ``removed`` (spans), ``too_short``. Only those documents go through Python again."""
    from pyspark.sql import functions as F

    hits = doc_keys.join(frequent, "hash")
    if keep_first:
        hits = hits.filter(F.col(ID) != F.col("first_id"))
    to_remove = hits.groupBy(ID).agg(F.collect_list("hash").alias("_remove"))
    found = df.select(ID, TEXT).join(to_remove, ID).select(
        ID, _removal_column(F.col(TEXT), F.col("_remove"), unit, min_chars).alias("_r"))
    return found.select(ID, *[F.col(f"_r.{f}").alias(f) for f in ("removed_units", "removed_chars", "removed",
                                                                   "too_short")])


@stage("line_dedup")
def line_dedup(df, ctx: StageContext, *, unit: str = "line", min_docs: int = 2, keep_first: bool = False,
               min_chars: int = 1, column: str | None = None) -> StageOutput:
    """Remove lines/paragraphs found in >= min_docs documents from every document (CCNet, Wenzek et al. 2020).

    ``keep_first`` keeps each unit in the document with the smallest id; documents left with
    fewer than ``min_chars`` characters are rejected (``too_short_after_line_dedup``) with their
    original text; ``column`` (default ``<unit>_dedup``) records what was removed, with offsets.
    """
    from pyspark.sql import functions as F

    if unit not in SEPARATORS:
        raise CurateError(f"line_dedup: unit must be one of {', '.join(SEPARATORS)}, got {unit!r}")
    if isinstance(min_docs, bool) or not isinstance(min_docs, int) or min_docs < 2:
        raise CurateError(f"line_dedup: min_docs must be an integer >= 2, got {min_docs!r}")
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0:
        raise CurateError(f"line_dedup: min_chars must be an integer >= 0, got {min_chars!r}")
    record = column or f"{unit}_dedup"
    if TEXT not in df.columns:
        raise CurateError("line_dedup: the input has no 'text' column")
    if record in df.columns:
        raise CurateError(f"line_dedup: the input already has a column '{record}'; name another with column:")

    doc_keys, frequent = frequent_units(df, unit, min_docs)
    # two key columns: hash-bucketed shards (one numeric column would mean range shards of a 64-bit hash)
    frequent = ctx.artifact_table(f"{record}_units", frequent, order_by=["hash", "first_id"])
    removals = ctx.artifact_table(f"{record}_removed", removals_of(df, doc_keys, frequent, unit, keep_first,
                                                                  min_chars))
    # kept and rejected come from the two artifacts: no unit is normalised or hashed again
    joined = df.join(removals.select(*[F.col(c).alias(f"_{c}") if c != ID else F.col(c)
                                       for c in removals.columns]), ID, "left")
    columns = list(df.columns)
    untouched = joined.filter(F.col("_removed_units").isNull()).select(
        *columns, F.struct(F.lit(0).cast("long").alias("removed_units"), F.lit(0).cast("long").alias("removed_chars"),
                           F.array().cast(f"array<{_SPAN}>").alias("removed")).alias(record))
    changed = joined.filter(F.col("_removed_units").isNotNull())
    trace = F.struct(F.col("_removed_units").alias("removed_units"), F.col("_removed_chars").alias("removed_chars"),
                     F.col("_removed").alias("removed")).alias(record)
    rejected = changed.filter(F.col("_too_short")).select(*columns, trace, F.lit(REASON).alias(REJECT_REASON))
    new_text = _cut_column(F.col(TEXT), F.col("_removed")).alias(TEXT, metadata=df.schema[TEXT].metadata)
    rewritten = changed.filter(~F.col("_too_short")).select(
        *[new_text if c == TEXT else F.col(c) for c in columns], trace)
    kept = untouched.unionByName(rewritten)

    def stats(kept_df, rejected_df) -> dict:
        return line_dedup_stats(kept_df, rejected_df, record, frequent)

    return StageOutput(kept, rejected, stats)


def line_dedup_stats(kept, rejected, record: str, frequent) -> dict:
    """Totals over the written outputs: frequent units, documents changed, units and characters removed."""
    from pyspark.sql import functions as F

    def totals(frame):
        row = frame.agg(F.sum(F.when(F.col(f"{record}.removed_units") > 0, 1).otherwise(0)).alias("docs"),
                        F.sum(f"{record}.removed_units").alias("units"),
                        F.sum(f"{record}.removed_chars").alias("chars")).first()
        return [int(row[k] or 0) for k in ("docs", "units", "chars")]

    k = totals(kept)
    r = totals(rejected) if rejected is not None else [0, 0, 0]
    return {"frequent_units": frequent.count(), "docs_changed": k[0] + r[0],
            "units_removed": k[1] + r[1], "chars_removed": k[2] + r[2],
            "chars_removed_from_kept": k[2]}
