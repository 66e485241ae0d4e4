"""HTML -> main-content text, title, language and date, with one of three extractors.

- ``resiliparse`` (Bevendorff et al. 2018, "Elastic ChatNoir"; the extractor of DCLM, Li et
  al. 2024): a C++ DOM (lexbor) and main-content heuristics, the fastest;
- ``trafilatura`` (Barbaresi 2021, ACL demo): the most accurate in published comparisons
  (Bevendorff et al. 2023, "An Empirical Comparison of Web Content Extraction Algorithms");
  the extractor of datatrove and FineWeb (Penedo et al. 2024);
- ``justext`` (Pomikálek 2011): paragraph classification by stop-word density (per language).

:func:`make_extractor` builds a function ``(html, url) -> (text, title, lang, date)``; it runs in
the extraction sandbox's child process (:mod:`curate.web.sandbox`) or, without a time limit,
in the Spark worker itself.
"""
from __future__ import annotations

import re
from typing import Callable

EXTRACTORS = ("resiliparse", "trafilatura", "justext")
Extracted = tuple[str, str | None, str | None, str | None]  # text, title, lang, date

_HTML_LANG = re.compile(r"""<html\b[^>]*?\blang\s*=\s*["']?\s*([a-zA-Z]{2,3}(?:[-_][a-zA-Z0-9]{2,8})*)""", re.I)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.I | re.S)
_DATE_META = re.compile(
    r"""<meta\b[^>]*?\b(?:property|name|itemprop)\s*=\s*["']?(?:article:published_time|og:published_time|"""
    r"""date|dc\.date|dcterms\.created|datePublished|pubdate)["']?[^>]*?\bcontent\s*=\s*["']\s*([^"'>]{4,40})""",
    re.I)
HEAD_CHARS = 65536


def html_lang(html: str) -> str | None:
    """The ``lang`` attribute of ``<html>``, lower-cased (``en``, ``pt-br``)."""
    m = _HTML_LANG.search(html[:HEAD_CHARS])
    return m.group(1).lower().replace("_", "-") if m else None


def meta_date(html: str) -> str | None:
    """The publication date a ``<meta>`` tag declares (``article:published_time``, ``dc.date`` …)."""
    m = _DATE_META.search(html[:HEAD_CHARS])
    return m.group(1).strip() if m else None


def title_of(html: str) -> str | None:
    m = _TITLE.search(html[:HEAD_CHARS])
    if not m:
        return None
    import html as entities

    return " ".join(entities.unescape(m.group(1)).split()) or None


def _resiliparse(main_content: bool, **_options) -> Callable[[str, str | None], Extracted]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    def run(html: str, _url: str | None) -> Extracted:
        tree = HTMLTree.parse(html)
        text = extract_plain_text(tree, main_content=main_content, preserve_formatting=True,
                                  alt_texts=False, list_bullets=True)
        return text, (" ".join((tree.title or "").split()) or None), html_lang(html), meta_date(html)

    return run


def _trafilatura(main_content: bool, **_options) -> Callable[[str, str | None], Extracted]:
    import trafilatura

    def run(html: str, url: str | None) -> Extracted:
        doc = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                          include_tables=True, deduplicate=False, favor_recall=not main_content)
        if doc is None:
            return "", title_of(html), html_lang(html), meta_date(html)
        return (doc.text or "", doc.title or title_of(html), doc.language or html_lang(html),
                doc.date or meta_date(html))

    return run


def _justext(main_content: bool, language: str = "English", **_options) -> Callable[[str, str | None], Extracted]:
    import justext

    try:
        stoplist = justext.get_stoplist(language)
    except ValueError:
        raise ValueError(f"justext has no stop-word list for '{language}'; available: "
                         f"{', '.join(sorted(justext.get_stoplists()))}") from None

    def run(html: str, _url: str | None) -> Extracted:
        paragraphs = justext.justext(html.encode("utf-8"), stoplist, encoding="utf-8")
        text = "\n\n".join(p.text for p in paragraphs if main_content is False or not p.is_boilerplate)
        return text, title_of(html), html_lang(html), meta_date(html)

    return run


_BUILDERS = {"resiliparse": _resiliparse, "trafilatura": _trafilatura, "justext": _justext}


def make_extractor(config: dict) -> Callable[[tuple[str, str | None]], Extracted]:
    """``config = {"extractor": name, "main_content": bool, "language": justext stop-word list}``;
    the returned function takes one ``(html, url)`` item."""
    build = _BUILDERS[config["extractor"]]
    run = build(**{k: v for k, v in config.items() if k != "extractor"})
    return lambda item: run(*item)
