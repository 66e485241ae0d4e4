"""The held-out guard: no selector may see held-out target text (or held-out pool text).

Pure functions over (id, text) pairs, so the check is testable without running a selector.
Texts are compared by a key of their case- and whitespace-folded form, ids exactly.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping


class LeakError(ValueError):
    """A selector's input contains held-out text."""


def text_key(text: str) -> str:
    """sha256 of ``text`` with case folded and whitespace runs collapsed (the exact_dedup fold)."""
    return hashlib.sha256(" ".join(text.split()).casefold().encode("utf-8")).hexdigest()


def find_leaks(heldout: Iterable[tuple[str, str]],
               inputs: Mapping[str, Iterable[tuple[str, str]]]) -> dict[str, list[str]]:
    """Per selector, the ids of its input records whose id or text key is a held-out one."""
    heldout_ids, heldout_keys = set(), set()
    for record_id, text in heldout:
        heldout_ids.add(record_id)
        heldout_keys.add(text_key(text))
    leaks = {}
    for selector, records in inputs.items():
        found = [rid for rid, text in records if rid in heldout_ids or text_key(text) in heldout_keys]
        if found:
            leaks[selector] = found
    return leaks


def assert_no_leak(heldout: Iterable[tuple[str, str]], inputs: Mapping[str, Iterable[tuple[str, str]]]) -> int:
    """Raise :class:`LeakError` naming the selectors (and a few ids) that saw held-out text;
    return the number of input records checked otherwise."""
    counted = {name: list(records) for name, records in inputs.items()}
    leaks = find_leaks(heldout, counted)
    if leaks:
        detail = "; ".join(f"{name}: {len(ids)} record(s), e.g. {', '.join(ids[:3])}" for name, ids in leaks.items())
        raise LeakError(f"held-out text reached selector input(s): {detail}. "
                        "Split target/pool before selecting and pass selectors only the visible parts.")
    return sum(len(records) for records in counted.values())
