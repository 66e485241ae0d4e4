"""Shared fixtures: one local[2] SparkSession for the whole run, stage contexts on it, the
quickstart run made once per session, and the shared real-text data. Plain helpers: helpers.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import PIPELINES, SHARED_DATA

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Every JVM of the run (the session's driver, `curate run` subprocesses, local-cluster and
# standalone executors, master and workers inherit it): the tests' JVMs live for minutes on
# small data, where C2 compilation and parallel GC threads cost more CPU than they win back.
# Measured on a 4-stage pipeline of 80 documents: 96 -> 47 CPU s. Results do not depend on it.
# The free-ratio flags let the serial GC hand heap back after a full collection: up to ~10 JVMs
# live at once (two test sessions, a cluster, `curate run` subprocesses) on a 24 GiB machine,
# and one suite run had the kernel's OOM killer end a test session's JVM at 5 GB resident.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"


def pytest_configure(config):
    """Set the JVM options for the run (in the controller, before the xdist workers start, which
    inherit them), with a class-data-sharing archive of Spark's classes (tests/jvm_archive.py)."""
    if "JAVA_TOOL_OPTIONS" in os.environ or hasattr(config, "workerinput"):
        return  # the caller's own options, or a worker that inherited the controller's
    from jvm_archive import ensure_archive, java_options

    archive = ensure_archive(JVM_OPTIONS)
    os.environ["JAVA_TOOL_OPTIONS"] = JVM_OPTIONS + (f" {java_options(archive)}" if archive else "")


def _import_top_level_filters() -> None:
    """Import the top-level ``filters`` package before the tests/filters folder can shadow it.

    ``tests`` is on sys.path (for helpers.py), and the editable install serves ``filters`` from
    a finder that comes after the path finder, so ``import filters`` would find tests/filters
    as a namespace package. Putting the repo root on sys.path instead would change the
    quickstart corpus (its ``curate.egg-info`` becomes an installed distribution).
    """
    tests = Path(__file__).resolve().parent
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != tests]
    try:
        import filters  # noqa: F401  (cached in sys.modules from now on)
    finally:
        sys.path[:] = saved


_import_top_level_filters()


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run: local[2], few shuffle partitions, UI off.

    Expressions are interpreted, not compiled (``spark.sql.codegen.factoryMode``, the switch
    Spark's own tests use): on the suite's small data, compiling generated Java with Janino is a
    quarter of this JVM's sampled CPU. ``curate run`` subprocesses (CLI, determinism, cluster and
    Airflow tests) keep Spark's defaults and compare their bytes with runs made here, so both
    paths are checked against each other.
    """
    from curate.engine.spark import get_spark

    session = get_spark("local[2]", {"spark.sql.shuffle.partitions": "4",
                                     "spark.default.parallelism": "2",
                                     "spark.sql.codegen.wholeStage": "false",
                                     "spark.sql.codegen.factoryMode": "NO_CODEGEN"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def stage_ctx(spark, tmp_path_factory):
    """Make a ``StageContext`` on the session's Spark: ``stage_ctx(seed=3)``, ``stage_ctx(dir, base_dir=…)``.

    Without ``stage_dir`` each call gets a fresh temporary directory. Session-scoped, so
    module-scoped fixtures can use it too.
    """
    from curate.core import StageContext

    def make(stage_dir: Path | None = None, **fields) -> StageContext:
        return StageContext(spark, Path(stage_dir) if stage_dir else tmp_path_factory.mktemp("stage"), **fields)

    return make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def quickstart(spark, tmp_path_factory):
    """pipelines/quickstart.yaml run once per session in-process (as ``curate run`` does); its RunResult.

    Shared by test_pipelines.py (accounting), the Airflow DAG test (same bytes) and the report tests.
    """
    from curate.engine.runner import run_pipeline

    out = tmp_path_factory.mktemp("quickstart") / "out"
    return run_pipeline(PIPELINES / "quickstart.yaml", output=str(out), spark=spark, log=lambda _msg: None)


# How ``pytest`` (``-n 2``, pyproject addopts) spreads the suite over two xdist workers. Each
# test module is one unit of work (its module fixtures are built once); the modules that use the
# session ``quickstart`` run are one unit (it runs once). Units start longest first (measured; see
# README "Tests"), so no long unit starts last and leaves the other worker idle.
QUICKSTART_USERS = ("tests/test_pipelines.py", "tests/airflow_dags/test_airflow.py", "tests/report/test_report.py")
LONGEST_UNITS = (
    "tests/cluster/test_cluster_s3.py", "quickstart", "tests/engine/test_determinism.py", "tests/engine/test_runner.py",
    "tests/dedup/test_minhash_dedup.py", "tests/web/test_web_pipeline.py", "tests/order/test_knn_order.py",
    "tests/targeted/test_betr.py", "tests/io/test_split.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its module's path, or ``quickstart`` for the quickstart's users."""
    module = nodeid.split("::", 1)[0]
    return "quickstart" if module in QUICKSTART_USERS else module


def pytest_xdist_make_scheduler(config, log):
    """Schedule by :func:`unit_of` (pytest-xdist's loadgroup marks stopped working with pytest 9.2,
    which no longer lets a plugin rename a test's node id)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return ByUnit(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Longest units first, the rest in collection order (kept within each unit)."""
    rank = {name: i for i, name in enumerate(LONGEST_UNITS)}
    items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(rank)))
