"""Build the SparkSession: embedded ``local[*]`` by default, any master when asked.

Master precedence: explicit argument > ``CURATE_SPARK_MASTER`` > ``local[*]``.
Workers run the same interpreter as the driver (``PYSPARK_PYTHON``), Arrow is on, logs
are quiet. Under ``spark-submit`` the already-configured master is kept.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Mapping

from curate.core import CurateError

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.python.worker.reuse": "true",
    "spark.python.daemon.module": "curate.engine.worker_daemon",  # pyspark without its zip: see there
}
LOCAL_DRIVER_MEMORY = "4g"


def java_problem() -> str | None:
    """Return a one-line explanation when no usable Java runtime is found, else None."""
    java = shutil.which("java", path=_java_path())
    if java is None:
        return ("Java not found: Spark needs a Java 17+ runtime. Install it with "
                "`apt-get install -y openjdk-17-jre-headless` (or set JAVA_HOME).")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`java -version` failed ({exc}); install `openjdk-17-jre-headless`."
    if out.returncode != 0:
        return f"`java -version` failed: {out.stderr.strip()[:200]}; install `openjdk-17-jre-headless`."
    return None


def _java_path() -> str:
    home = os.environ.get("JAVA_HOME")
    path = os.environ.get("PATH", "")
    return f"{home}/bin{os.pathsep}{path}" if home else path


def resolve_master(master: str | None) -> str:
    return master or os.environ.get("CURATE_SPARK_MASTER") or "local[*]"


def parse_conf(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """Parse ``k=v`` strings from the command line."""
    conf = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CurateError(f"--conf expects key=value, got '{pair}'")
        conf[key.strip()] = value.strip()
    return conf


def get_spark(master: str | None = None, conf: Mapping[str, str] | None = None,
              app_name: str = "curate"):
    """Return a SparkSession (creating it if needed) configured for curate."""
    problem = java_problem()
    if problem:
        raise CurateError(problem)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if not _under_spark_submit():
        resolved = resolve_master(master)
        builder = builder.master(resolved)
        if resolved.startswith("local"):
            builder = builder.config("spark.driver.memory", LOCAL_DRIVER_MEMORY)
    for key, value in {**DEFAULT_CONF, **dict(conf or {})}.items():
        builder = builder.config(key, value)
    builder = builder.config("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _under_spark_submit() -> bool:
    """True when this process was launched by ``spark-submit`` (its JVM already has a master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
