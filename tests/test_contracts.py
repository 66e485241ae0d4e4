"""The import contracts of pyproject.toml ([tool.importlinter]), run as CI runs them.

The real tree keeps every contract; a copy of the packages with one forbidden import added
breaks the contract that forbids it, and ``lint-imports`` names the offending import.
Imports inside functions count: a lazy import is still a dependency.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from curate.core import STAGE_MODULES

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("curate", "filters")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` in ``root``, with ``root`` first on the path so its packages are the ones read."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or "lint-imports"]
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}  # no wrapped lines
    return subprocess.run([*command, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def copy_tree(dest: Path) -> Path:
    """The packages' Python files and pyproject.toml, copied under ``dest``."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def test_the_real_tree_keeps_every_contract():
    res = lint_imports(REPO)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert f"Contracts: {len(contracts())} kept, 0 broken." in res.stdout


def test_the_independence_contract_lists_exactly_the_stage_modules():
    (independence,) = [c for c in contracts() if c["type"] == "independence"]
    assert sorted(independence["modules"]) == sorted(STAGE_MODULES)


VIOLATIONS = [
    pytest.param({"filters/basic.py": "from curate.engine import runner\n"},
                 "filters import only curate.core and curate.integrity from curate",
                 "filters.basic -> curate.engine.runner", id="filters-import-the-runner"),
    pytest.param({"curate/dedup/exact_dedup.py": "\n\ndef _f():\n    from curate.quality import score\n"},
                 "stage modules are independent",
                 "curate.dedup.exact_dedup -> curate.quality.score", id="stage-imports-a-stage-lazily"),
    pytest.param({"curate/core.py": "\n\ndef _f():\n    import curate.commands.filters\n"},
                 "curate layers", "curate.core -> curate.commands.filters",
                 id="core-imports-a-command"),
    pytest.param({"curate/order/knn.py": "import curate.order.traverse\n",
                  "curate/order/traverse.py": "import curate.order.knn\n"},
                 "no import cycles in curate", "No cycles are allowed in curate.order.", id="cycle"),
]


@pytest.mark.parametrize("additions, contract, detail", VIOLATIONS)
def test_a_forbidden_import_breaks_its_contract(tmp_path, additions, contract, detail):
    root = copy_tree(tmp_path)
    for path, line in additions.items():
        with open(root / path, "a", encoding="utf-8") as f:
            f.write(line)
    res = lint_imports(root)
    assert res.returncode != 0
    assert any(line.startswith(f"{contract} BROKEN") for line in res.stdout.splitlines()), res.stdout[-4000:]
    assert detail in res.stdout, res.stdout[-4000:]
