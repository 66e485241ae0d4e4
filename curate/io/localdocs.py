"""Harvest a real corpus from the running Python installation (the quick start's default).

Three kinds of documents, none written by us: each installed distribution's long
description (its README on PyPI), its licence files (many near-identical: a natural
near-duplicate set), and the module docstrings of the standard library (read with
``ast``; nothing is imported).
"""
from __future__ import annotations

import ast
import json
import sysconfig
import tokenize
from importlib import metadata
from pathlib import Path
from typing import Iterator

LICENSE_PREFIXES = ("license", "licence", "copying", "notice")
MIN_CHARS = 1


def _project_url(dist) -> str | None:
    for entry in dist.metadata.get_all("Project-URL") or []:
        _, _, url = entry.partition(",")
        if url.strip():
            return url.strip()
    return dist.metadata.get("Home-page") or None


def site_dirs() -> list[str]:
    """This environment's site-packages: where its distributions are installed. Not ``sys.path``,
    which also holds the working directory of ``python -m`` and whatever a caller prepends, so
    the corpus would change with the directory a command is started from."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def distribution_documents() -> Iterator[dict]:
    """Long descriptions and licence files of every distribution installed in :func:`site_dirs`."""
    seen = set()
    for dist in sorted(metadata.distributions(path=site_dirs()), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if not name or name in seen:
            continue
        seen.add(name)
        url = _project_url(dist)
        description = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        if description.strip():
            yield {"id": f"pypi/{name}/description", "text": description, "source": "package_description",
                   "url": url, "package": name, "version": dist.version}
        for file in sorted(dist.files or [], key=str):
            if Path(str(file)).name.lower().startswith(LICENSE_PREFIXES):
                try:
                    text = file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if text and text.strip():
                    yield {"id": f"pypi/{name}/{file}", "text": text, "source": "license",
                           "url": url, "package": name, "version": dist.version}


def stdlib_documents() -> Iterator[dict]:
    """Module docstrings of the standard library, parsed (never imported)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel.parts:
            continue
        try:
            doc = module_docstring(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError, tokenize.TokenError):
            continue
        if doc and doc.strip():
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            yield {"id": f"stdlib/{module}", "text": doc, "source": "stdlib_docstring",
                   "url": f"https://docs.python.org/3/library/{module.split('.')[0]}.html", "package": "python",
                   "version": sysconfig.get_python_version()}


def module_docstring(source: str) -> str | None:
    """The module docstring of ``source`` (as ``ast.get_docstring(..., clean=True)`` gives it),
    parsing only the first statement: a docstring is always the first one, and the rest of a
    module costs most of the parse."""
    lines = iter(source.splitlines(keepends=True))
    for token in tokenize.generate_tokens(lambda: next(lines, "")):
        if token.type == tokenize.NEWLINE or token.type == tokenize.ENDMARKER:
            end = token.end[0]
            break
    else:
        return None
    try:
        first = ast.parse("".join(source.splitlines(keepends=True)[:end]))
    except SyntaxError:  # the header of a compound statement (def, class, if …): no docstring
        return None
    return ast.get_docstring(first, clean=True)


def local_documents() -> Iterator[dict]:
    yield from distribution_documents()
    yield from stdlib_documents()


def write_local_docs(path: str | Path, limit: int | None = None) -> int:
    """Write the harvested corpus as JSONL (sorted by id) to a local path or a URI, whole or
    not at all; return the number of documents."""
    from curate.io import fs

    docs = sorted(local_documents(), key=lambda d: d["id"])[:limit]
    fs.write_bytes(path, "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs).encode("utf-8"))
    return len(docs)
