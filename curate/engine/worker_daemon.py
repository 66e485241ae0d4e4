"""Spark's Python worker daemon for curate (``spark.python.daemon.module``): pyspark's own daemon,
run with pyspark imported from the installed package instead of ``pyspark.zip``.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip`` and py4j's zip first on every Python worker's
path. With a pip-installed pyspark those zips sit inside the installed package, hold the same
code, and cost every worker dearly: modules imported from a zip are compiled from source (no
cached bytecode), and each worker's first task calls ``importlib.invalidate_caches()``, which
re-reads the 4 MB zip's directory in pure Python. Measured: a fresh worker's first small task
costs 0.05 instead of 0.36 CPU s (more on tasks that import more of pyspark); over the whole
test suite (~120 worker processes) the difference was within its run-to-run noise. Where the zips
come from a separate Spark distribution (its code may differ from any installed pyspark), they
are kept.

The worker module is imported before the daemon forks (pyspark imports it after, to keep
threads out of the fork; it starts none, unlike pandas or pyarrow, which stay after the fork).
"""
from __future__ import annotations

import sys
from importlib.machinery import PathFinder
from pathlib import Path


def installed_package_dir(name: str, path: list[str]) -> Path | None:
    """The directory of package ``name`` as found on ``path`` (zips excluded), if any."""
    spec = PathFinder.find_spec(name, [p for p in path if not p.endswith(".zip")])
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def zips_inside_installed_pyspark(path: list[str]) -> list[str]:
    """Entries of ``path`` that are Spark's ``python/lib`` zips of the installed pyspark package itself."""
    package = installed_package_dir("pyspark", path)
    if package is None or installed_package_dir("py4j", path) is None:
        return []
    lib = package / "python" / "lib"
    return [p for p in path if p.endswith(".zip") and Path(p).parent == lib]


def main() -> None:
    redundant = zips_inside_installed_pyspark(sys.path)
    sys.path[:] = [p for p in sys.path if p not in redundant]
    for entry in redundant:
        sys.path_importer_cache.pop(entry, None)
    import pyspark.worker  # noqa: F401  (thread-free; every forked worker would import it)
    from pyspark.daemon import manager

    manager()


if __name__ == "__main__":
    main()
