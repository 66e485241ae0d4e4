"""The builtin local-docs corpus: module docstrings read from the first statement only."""
from __future__ import annotations

import ast
import inspect
import sysconfig
from pathlib import Path

import pytest

from curate.io.localdocs import module_docstring

SOURCES = [
    '"""One line."""\nimport os\n',
    '#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n\n"""After comments.\n\n    Indented body.\n"""\nx = 1\n',
    '"implicit" " concatenation"\n',
    '("parenthesised"\n "docstring")\nx = 1\n',
    'from __future__ import annotations\n"""not a docstring"""\n',
    'def f():\n    """a function docstring"""\n',
    '"""doc""" + suffix\n',
    'x = 1\n',
    '',
    '# only a comment\n',
    "r'''raw \\n string'''\n",
]


@pytest.mark.parametrize("source", SOURCES)
def test_module_docstring_equals_a_full_parse(source):
    assert module_docstring(source) == ast.get_docstring(ast.parse(source), clean=True)


def test_the_standard_library_gives_the_same_docstrings_as_a_full_parse():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [inspect.getsourcefile(m) for m in (ast, inspect, sysconfig)]
    for path in sorted(root.glob("*.py"))[:60] + [Path(f) for f in files if f]:
        source = path.read_text(encoding="utf-8")
        assert module_docstring(source) == ast.get_docstring(ast.parse(source), clean=True), path


def test_the_corpus_does_not_depend_on_sys_path(monkeypatch):
    """A source checkout on sys.path (``python -m curate`` from the repo, a test that imports
    bench/) holds ``curate.egg-info``; the harvest reads site-packages only, so it is the same."""
    from curate.io.localdocs import distribution_documents

    repo = Path(__file__).resolve().parents[2]
    before = [(d["id"], d["text"]) for d in distribution_documents()]
    monkeypatch.syspath_prepend(str(repo))
    assert [(d["id"], d["text"]) for d in distribution_documents()] == before
