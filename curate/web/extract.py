"""``extract``: HTML documents (read from WARC files) -> main-content plain text.

``text`` becomes the extracted text; the page's title, ``<html lang>`` and publication date
become the columns ``page_title``, ``page_lang`` and ``page_date``. A page whose extraction is
empty, fails, or runs over ``time_limit_s`` is rejected (``empty_after_extraction``,
``extractor_error``, ``extractor_timeout``) with its HTML and ``reject_detail``. The time limit
is enforced by running the extractor in a child process per task (:mod:`curate.web.sandbox`);
``time_limit_s: 0`` runs it in the Spark worker itself, without a limit.

A page close to the limit may pass on one run and time out on another: that is the one place
where the output depends on the machine, so the limit should sit far above the typical page
(milliseconds) — the default 5 s does.
"""
from __future__ import annotations

from curate.core import REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage
from curate.web.extractors import EXTRACTORS

PAGE_COLUMNS = ("page_title", "page_lang", "page_date")
DETAIL = "reject_detail"
FACTORY = "curate.web.extractors:make_extractor"


@stage("extract")
def extract(df, ctx: StageContext, *, extractor: str = "resiliparse", main_content: bool = True,
            time_limit_s: float = 5.0, min_chars: int = 1, language: str = "English") -> StageOutput:
    """HTML -> main-content text with resiliparse, trafilatura or justext; a time limit per page.

    ``language`` is justext's stop-word list. Resiliparse: Bevendorff et al. 2018; trafilatura:
    Barbaresi 2021; jusText: Pomikálek 2011.
    """
    from pyspark.sql import functions as F

    if extractor not in EXTRACTORS:
        raise CurateError(f"extract: extractor must be one of {', '.join(EXTRACTORS)}, got '{extractor}'")
    if not isinstance(time_limit_s, (int, float)) or time_limit_s < 0:
        raise CurateError(f"extract: time_limit_s must be a number >= 0 (0: no limit), got {time_limit_s!r}")
    if TEXT not in df.columns:
        raise CurateError("extract: the input has no 'text' column")
    clash = [c for c in (*PAGE_COLUMNS, DETAIL) if c in df.columns]
    if clash:
        raise CurateError(f"extract: the input already has column(s) {', '.join(clash)} (extracted twice?)")
    config = {"extractor": extractor, "main_content": bool(main_content), "language": language}
    _check_setup(config)
    url = "url" if "url" in df.columns else None
    marked = df.mapInArrow(_extract_batches(config, float(time_limit_s), int(min_chars), url),
                           _marked_schema(df.schema)).localCheckpoint(eager=False)  # extracted once, read twice
    kept = marked.filter(F.col(REJECT_REASON).isNull()).drop(REJECT_REASON, DETAIL, "_html")
    rejected = (marked.filter(F.col(REJECT_REASON).isNotNull())
                .withColumn(TEXT, F.col("_html")).drop("_html", *PAGE_COLUMNS))
    stats = {"extractor": extractor, "time_limit_s": time_limit_s}
    return StageOutput(kept=kept, rejected=rejected, stats=stats)


def _check_setup(config: dict) -> None:
    """Fail before any Spark work when the extractor is not installed or its options are wrong."""
    from curate.web.extractors import make_extractor

    try:
        make_extractor(config)
    except ImportError as exc:
        raise CurateError(f"extract: {config['extractor']} is not installed ({exc.name}); "
                          "pip install 'curate[web]'") from None
    except ValueError as exc:
        raise CurateError(f"extract: {exc}") from None


def _marked_schema(schema):
    from pyspark.sql.types import StringType, StructField, StructType

    extra = [StructField(n, StringType()) for n in (*PAGE_COLUMNS, REJECT_REASON, DETAIL, "_html")]
    return StructType(list(schema.fields) + extra)


def outcome_row(outcome: tuple[str, object], min_chars: int) -> tuple[str | None, tuple, str | None, str | None]:
    """``(text, (title, lang, date), reject_reason, detail)`` of one sandbox outcome."""
    status, value = outcome
    if status == "timeout":
        return None, (None, None, None), "extractor_timeout", str(value)
    if status != "ok":
        return None, (None, None, None), "extractor_error", str(value)
    text, title, lang, date = value
    text = (text or "").strip()
    if len(text) < max(min_chars, 1):
        return None, (title, lang, date), "empty_after_extraction", f"{len(text)} chars"
    return text, (title, lang, date), None, None


def _extract_batches(config: dict, time_limit_s: float, min_chars: int, url_column: str | None):
    """mapInArrow function: each batch's pages through the extractor (in a sandbox when limited)."""
    def run(batches):
        import pyarrow as pa

        from curate.web.extractors import make_extractor
        from curate.web.sandbox import Sandbox, run_inline

        sandbox = Sandbox(FACTORY, config, time_limit_s, size=lambda item: len(item[0])) if time_limit_s else None
        inline = None if sandbox else make_extractor(config)
        try:
            for batch in batches:
                html = batch.column(TEXT).to_pylist()
                urls = batch.column(url_column).to_pylist() if url_column else [None] * len(html)
                items = [(h or "", u) for h, u in zip(html, urls)]
                outcomes = sandbox.map(items) if sandbox else run_inline(inline, items)
                rows = [outcome_row(o, min_chars) for o in outcomes]
                texts = [r[0] if r[2] is None else None for r in rows]
                columns = [batch.column(i) for i in range(batch.num_columns)]
                text_index = batch.schema.get_field_index(TEXT)
                columns[text_index] = pa.array(texts, batch.schema.field(text_index).type)
                for k in range(3):
                    columns.append(pa.array([r[1][k] for r in rows], pa.string()))
                columns += [pa.array([r[2] for r in rows], pa.string()), pa.array([r[3] for r in rows], pa.string()),
                            pa.array([h if r[2] else None for h, r in zip(html, rows)], pa.string())]
                names = list(batch.schema.names) + [*PAGE_COLUMNS, REJECT_REASON, DETAIL, "_html"]
                yield pa.RecordBatch.from_arrays(columns, names=names)
        finally:
            if sandbox:
                sandbox.close()

    return run
