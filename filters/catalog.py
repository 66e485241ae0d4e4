"""What ``curate filters`` shows: each registered filter, what it reads and writes, its parameters.

Pure data from the registry (no Spark): ``describe(cls)`` is one filter as JSON-able values,
``catalog()`` all of them by name, ``format_catalog()`` the plain-text listing.
"""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any, Mapping

from filters import Filter, get, registry


def catalog(names: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``describe`` of the named filters (all registered filters when ``names`` is empty), by name."""
    classes = [get(n) for n in names] if names else list(registry().values())
    return [describe(cls) for cls in sorted(set(classes), key=lambda c: c.name)]


def describe(cls: type[Filter]) -> dict[str, Any]:
    """One filter: kind, summary, document fields read, score columns written, parameters."""
    return {
        "name": cls.name,
        "kind": "modifier" if cls.modifies_text else "filter",
        "summary": summary(cls),
        "reads": list(cls.inputs),
        "writes": [f"{cls.name}.{key}" for key in cls.keys],
        "promotes": {f"{cls.name}.{key}": column for key, column in cls.promote.items()},
        "params": [_param(cls, f) for f in dataclasses.fields(cls)],
    }


def summary(cls: type) -> str:
    """The first paragraph of the class docstring on one line ("" without a docstring)."""
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses put in when there is no docstring
        return ""
    first = textwrap.dedent(doc).strip().split("\n\n")[0]
    return " ".join(first.split())


def _param(cls: type[Filter], f: dataclasses.Field) -> dict[str, Any]:
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = None
    return {"name": f.name, "default": _plain(default), "required": required,
            "role": "score" if f.name in cls.score_params else "threshold",
            "path": f.name in cls.path_params, "type": str(f.type)}


def _plain(value: Any) -> Any:
    """Defaults as JSON values: tuples/sets become lists, paths strings."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def format_catalog(entries: list[dict[str, Any]], width: int = 100) -> str:
    """The plain-text listing: one block per filter, thresholds then score parameters."""
    return "\n\n".join(_format_entry(e, width) for e in entries)


def _format_entry(entry: dict[str, Any], width: int) -> str:
    head = f"{entry['name']} ({entry['kind']})" + (f": {entry['summary']}" if entry["summary"] else "")
    lines = textwrap.wrap(head, width, subsequent_indent="    ")
    lines.append(f"    reads:  {', '.join(entry['reads'])}")
    writes = ", ".join(entry["writes"]) + "".join(
        f"; {src} also as column {dst}" for src, dst in entry["promotes"].items())
    lines += textwrap.wrap(f"writes: {writes}", width, initial_indent="    ", subsequent_indent="            ")
    for role, title in (("threshold", "thresholds (select)"), ("score", "score parameters (re-run score)")):
        params = [p for p in entry["params"] if p["role"] == role]
        if params:
            lines.append(f"    {title}:")
            lines += [f"        {_format_param(p)}" for p in params]
    return "\n".join(lines)


def _format_param(p: dict[str, Any]) -> str:
    value = "(required)" if p["required"] else repr(p["default"])
    return f"{p['name']} = {value}" + ("  [path]" if p["path"] else "")
