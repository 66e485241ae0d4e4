"""Shared fixtures: one local[2] SparkSession for the whole run, and the shared real-text data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data")).resolve()

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}"
)

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run: local[2], few shuffle partitions, UI off."""
    from curate.engine.spark import get_spark

    session = get_spark("local[2]", {"spark.sql.shuffle.partitions": "4",
                                     "spark.default.parallelism": "2"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """Read a (possibly gzipped) JSONL file from shared data."""
    import gzip
    import json

    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows
