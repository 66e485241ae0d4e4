"""A class-data-sharing (AppCDS) archive of the classes Spark's JVMs load, made once per machine.

Every JVM of the test run (test sessions, ``curate run`` subprocesses, local-cluster and
standalone executors) spends most of its first seconds finding, parsing and verifying the same
few thousand classes in ~250 jars. A dynamic CDS archive (JDK 13+, ``-XX:ArchiveClassesAtExit``)
of what a small pipeline loads lets them map those classes instead: JVM start plus one small job
on this machine went from 11–18 to 6.5–7.9 CPU s, ``tests/engine/test_runner.py`` from 70–73 to
57 CPU s. A JVM whose classpath or runtime does not match the archive prints a warning (sent to
stderr, see :func:`java_options`) and runs without it: the archive only changes speed.

``python tests/jvm_archive.py WORKDIR``, with ``-XX:ArchiveClassesAtExit`` in ``JAVA_TOOL_OPTIONS``, is the
warm-up run that writes it (:func:`ensure_archive` starts it).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WARMUP_STAGES = [
    "exact_dedup",
    {"score": ["gopher_quality"]},
    {"select": {"filters": {"gopher_quality": {"min_words": 5}}}},
]


def archive_key(base_options: str) -> str:
    """What the archive depends on: the Java runtime, Spark's jars, the JVM options and this warm-up."""
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    jars = sorted(p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    recipe = Path(__file__).read_text()  # the warm-up decides which classes are archived
    return hashlib.sha256(json.dumps([java, pyspark.__version__, jars, base_options, recipe]).encode()).hexdigest()[:16]


def java_options(archive: Path) -> str:
    """Options that use ``archive``; JVM log output (a mismatch warning) goes to stderr, never stdout."""
    return f"-XX:SharedArchiveFile={archive} -Xlog:disable -Xlog:all=warning:stderr"


def ensure_archive(base_options: str) -> Path | None:
    """The archive for ``base_options`` under the system temp dir, built when missing; None if it cannot be."""
    folder = Path(tempfile.gettempdir()) / f"curate-test-cds-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)  # the standalone cluster's executors run as another user
    try:
        archive = folder / f"spark-{archive_key(base_options)}.jsa"
    except OSError as exc:  # no Java: the tests that need it say so themselves
        return _without(str(exc))
    if archive.is_file():
        return archive
    partial = folder / f".{archive.name}.{os.getpid()}"
    env = {**os.environ, "JAVA_TOOL_OPTIONS": f"{base_options} -XX:ArchiveClassesAtExit={partial}"}
    try:
        done = subprocess.run([sys.executable, __file__, str(folder / f".warmup-{os.getpid()}")], env=env,
                              cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
        problem = None if done.returncode == 0 and partial.is_file() else done.stderr[-2000:]
    except subprocess.TimeoutExpired:
        problem = "the warm-up ran over 600 s"
    if problem is not None:
        partial.unlink(missing_ok=True)
        return _without(problem)
    partial.chmod(0o644)
    partial.replace(archive)
    for stale in folder.glob("spark-*.jsa"):  # ~190 MB each: keep only the archive of this setup
        if stale != archive:
            stale.unlink(missing_ok=True)
    return archive


def _without(reason: str) -> None:
    sys.stderr.write(f"no JVM class-data-sharing archive (tests run without it): {reason}\n")
    return None


def _docs(n: int = 60) -> list[dict]:
    words = "the river runs past old stone mills where grain was ground for the town each autumn".split()
    return [{"id": f"d{i:03d}", "text": " ".join(words[(i + j) % len(words)] for j in range(40 + i % 7)),
             "source": ["web", "books"][i % 2]} for i in range(n)]


def warm_up(workdir: Path) -> None:
    """Run a small pipeline (read with a broken line, exact dedup, score, select, export) in this process,
    then stop the JVM and wait for it: the archive is written while it exits."""
    import shutil

    import yaml

    from curate.engine.runner import run_pipeline
    from curate.engine.spark import get_spark

    workdir.mkdir(parents=True)
    try:
        (workdir / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in _docs()) + "{broken\n")
        (workdir / "p.yaml").write_text(yaml.safe_dump({"name": "warmup", "input": str(workdir / "in.jsonl"),
                                                         "output": str(workdir / "out"), "stages": WARMUP_STAGES}))
        spark = get_spark("local[2]", {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"})
        run_pipeline(workdir / "p.yaml", spark=spark, log=lambda _msg: None)
        jvm = spark.sparkContext._gateway.proc
        spark.stop()
        jvm.stdin.close()  # the gateway JVM exits when its stdin closes, and dumps the archive as it does
        jvm.wait(timeout=300)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent  # tests/filters would shadow the top-level filters package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    warm_up(Path(sys.argv[1]))
