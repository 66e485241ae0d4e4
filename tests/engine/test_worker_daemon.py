"""curate's Python worker daemon: Spark's workers import pyspark from the installed package, not its zip."""
from __future__ import annotations

from pathlib import Path

import pyspark

from curate.engine.worker_daemon import zips_inside_installed_pyspark

PACKAGE = Path(pyspark.__file__).parent
SITE = str(PACKAGE.parent)
ZIPS = [str(PACKAGE / "python" / "lib" / "pyspark.zip"), str(next((PACKAGE / "python" / "lib").glob("py4j-*.zip")))]


def test_only_the_installed_packages_own_zips_are_redundant(tmp_path):
    path = [*ZIPS, "/usr/lib/python311.zip", SITE]
    assert zips_inside_installed_pyspark(path) == ZIPS
    # a separate Spark distribution's zips may hold other code: kept
    other = [str(tmp_path / "spark" / "python" / "lib" / "pyspark.zip"), SITE]
    assert zips_inside_installed_pyspark(other) == []
    # no installed pyspark to fall back on: the zips are all there is
    assert zips_inside_installed_pyspark([*ZIPS, str(tmp_path)]) == []


def test_spark_workers_import_pyspark_from_the_installed_package(spark):
    def worker_view(_rows):  # nested: pickled by value, the workers cannot import this module
        import sys

        import pyspark as worker_pyspark

        yield worker_pyspark.__file__, tuple(sorted(p for p in sys.path if "pyspark" in p and p.endswith(".zip")))

    views = set(spark.sparkContext.parallelize(range(4), 4).mapPartitions(worker_view).collect())
    assert views == {(pyspark.__file__, ())}
