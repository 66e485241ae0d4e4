"""Shared material for the filter tests: crafted texts, a trained language-ID model, and every
registered filter configured to run (model and word lists included). No tests here."""
from __future__ import annotations

import json
from pathlib import Path

import filters
from conftest import SHARED_DATA

SENTENCES = [
    "The river runs through the old town and past the market where farmers sell fresh bread.",
    "Children walk to school along the water with their friends every morning.",
    "In the evening the lights of the cafes shine on the stones of the bridge.",
    "Visitors often say that the place has a calm and friendly character.",
    "Local history is kept alive by a small museum near the main square.",
    "Many families have lived here for generations and they care for the streets.",
]
PROSE = " ".join(SENTENCES)  # one line, 81 words: passes every heuristic filter
LINES = "\n".join(SENTENCES)  # the same, one sentence per line
LONG_LINE = "Every summer the whole village gathers by the lake to share food, music and long stories together."
FILLER = [f"item{i}" for i in range(300)]

# ISO 639-3 (UDHR file names) -> the ISO 639-1 labels lid.176 uses.
LID_LANGUAGES = {"eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "nld": "nl",
                 "pol": "pl", "rus": "ru", "tur": "tr", "swe": "sv"}
UDHR = SHARED_DATA / "multilingual" / "udhr.jsonl"
_LID_CACHE: dict[str, tuple[Path, dict]] = {}


def spaced(phrase: str, times: int) -> str:
    """``phrase`` repeated ``times`` times, each followed by a distinct filler word."""
    return " ".join(f"{phrase} {FILLER[i]}" for i in range(times))


def udhr_examples() -> list[tuple[str, str]]:
    """(language, text) pairs for the LID languages from the shared UDHR file."""
    out = []
    with open(UDHR, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            code = LID_LANGUAGES.get(record["meta"]["lang"])
            if code:
                out.append((code, record["text"]))
    return out


def lid_model(directory: Path) -> tuple[Path, dict]:
    """Train (once per test process) a small fastText LID model on UDHR text; returns (path, report)."""
    if "model" not in _LID_CACHE:
        from curate.commands.langid import train_langid

        out = directory / "lid.bin"
        report = train_langid(udhr_examples(), out, bucket=100_000, seed=1, valid_fraction=0.2)
        _LID_CACHE["model"] = (out, report)
    return _LID_CACHE["model"]


def configured_filters(directory: Path) -> dict[str, filters.Filter]:
    """One runnable instance of every registered filter (files written under ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    domains = directory / "domains.txt"
    domains.write_text("# blocked domains\nbad.example\nspam.test\n", encoding="utf-8")
    substrings = directory / "substrings.txt"
    substrings.write_text("casino\n/ads/\n", encoding="utf-8")
    special = {
        "url_blocklist": {"domains_file": str(domains), "substrings_file": str(substrings)},
        "pii": {"phones": True},
    }
    names = list(filters.registry())
    if UDHR.is_file():
        special["lang_id"] = {"model": str(lid_model(directory)[0])}
    else:  # no shared data: lang_id cannot get a model
        names.remove("lang_id")
    out = {}
    for name in names:
        flt = filters.build(name, special.get(name, {}))
        flt.setup()
        out[name] = flt
    return out
