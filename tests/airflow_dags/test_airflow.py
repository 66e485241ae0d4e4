"""The Airflow DAGs (airflow/dags/curate_dags.py) on a real Airflow 3 with a SQLite metadata DB.

Skipped when Airflow is not installed (``pip install 'curate[airflow]'``).
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import PIPELINES, REPO, manifests, shard_hashes

from curate.config import load_pipeline

pytestmark = pytest.mark.skipif(importlib.util.find_spec("airflow") is None,
                                reason="Airflow is not installed: pip install 'curate[airflow]'")

DAGS = REPO / "airflow" / "dags"
DAG_FILE = DAGS / "curate_dags.py"
WARM = Path(__file__).with_name("warm_curate.py")


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    """A throw-away AIRFLOW_HOME with a migrated SQLite DB; set before Airflow is first imported."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                             env={**os.environ}, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def warm_curate(tmp_path_factory):
    """A ``CURATE_AIRFLOW_COMMAND`` that runs ``curate`` in one warm process (one JVM for all tasks).

    See warm_curate.py: the tasks' command lines are unchanged, only the prefix is.
    """
    sock = tmp_path_factory.mktemp("warm") / "curate.sock"
    server = subprocess.Popen([sys.executable, str(WARM), "serve", str(sock)])
    client = [sys.executable, str(WARM), str(sock)]
    yield shlex.join(client)
    subprocess.run([*client, "--stop"], capture_output=True, timeout=300)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def dagbag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


@pytest.fixture(scope="session")
def factory(airflow_home):
    """The DAG file as a module, for its pure helpers."""
    spec = importlib.util.spec_from_file_location("curate_dags_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _chain(dag) -> list[str]:
    """Task ids in dependency order, asserting the DAG is one straight chain."""
    roots = [t for t in dag.tasks if not t.upstream_task_ids]
    assert len(roots) == 1, [t.task_id for t in roots]
    order, task = [], roots[0]
    while True:
        order.append(task.task_id)
        downstream = sorted(task.downstream_task_ids)
        if not downstream:
            break
        assert len(downstream) == 1, (task.task_id, downstream)
        task = dag.get_task(downstream[0])
    assert len(order) == len(dag.tasks)
    return order


def test_dagbag_imports_every_pipeline_without_errors(dagbag):
    assert dagbag.import_errors == {}
    pipelines = {load_pipeline(p).name for p in PIPELINES.glob("*.yaml") if "stages:" in p.read_text()}
    assert pipelines <= set(dagbag.dag_ids)
    assert "train_full_mix" in dagbag.dag_ids


def test_each_dag_is_its_pipelines_steps_in_order(dagbag):
    """Task ids = the runner's steps (00-read, NN-stage…, final), chained in pipeline order."""
    for path in sorted(PIPELINES.glob("*.yaml")):
        if "stages:" not in path.read_text():
            continue
        p = load_pipeline(path)
        dag = dagbag.get_dag(p.name)
        assert _chain(dag) == ["00-read", *[s.dirname for s in p.stages], "final"]
        assert dag.max_active_runs == 1
        for t in dag.tasks:
            assert t.retries >= 1 and t.retry_exponential_backoff
        assert [a.uri for a in dag.get_task("final").outlets] == [f"x-curate://pipeline/{p.name}/final"]


def test_training_dag_is_triggered_by_its_input_pipelines_assets(dagbag):
    dag = dagbag.get_dag("train_full_mix")
    assert _chain(dag) == ["mix", "tokenizer", "tokenize", "train"]
    uris = sorted(a.uri for a in dag.timetable.asset_condition.iter_assets().values()) \
        if hasattr(dag.timetable.asset_condition, "iter_assets") else sorted(a.uri for a in dag.schedule)
    assert uris == ["x-curate://pipeline/full/final", "x-curate://pipeline/quickstart/final"]
    assert "curate mix" in dag.get_task("mix").bash_command.replace(" -m curate", " curate")
    assert "--set data.shards=" in dag.get_task("train").bash_command


def test_dag_file_parse_imports_no_heavy_library(airflow_home):
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(sorted(m for m in ('pyspark', 'torch', 'faiss', 'curate.engine.runner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(DAG_FILE)], capture_output=True, text=True,
                         env={**os.environ}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_partitions_come_from_the_data_interval_and_fail_closed(factory, tmp_path):
    spec = factory.pipeline_spec(PIPELINES / "quickstart.yaml",
                                 {"input": "raw/{{ ds }}/", "output": "out/{{ ds_nodash }}"}, tmp_path)
    day = datetime(2024, 6, 1, tzinfo=timezone.utc)
    values = factory.interval_values(day, datetime(2024, 6, 2, tzinfo=timezone.utc))
    paths = factory.run_paths(spec, {}, values)
    assert paths == {"input": f"{tmp_path}/raw/2024-06-01", "output": f"{tmp_path}/out/20240601"}
    line = factory.step_command(spec, "02-score", paths)
    assert line.endswith(f"run {PIPELINES / 'quickstart.yaml'} --only 02-score "
                         f"--input {tmp_path}/raw/2024-06-01 --output {tmp_path}/out/20240601")
    # an explicit input (trigger conf) wins and needs no interval; the output template still does
    with pytest.raises(factory.PartitionError, match="output .* needs the run's data interval"):
        factory.run_paths(spec, {"input": "/data/x"}, None)
    assert factory.run_paths(spec, {"input": "/data/x", "output": "/o"}, None) == {"input": "/data/x",
                                                                                  "output": "/o"}
    with pytest.raises(factory.PartitionError, match="unknown placeholder.*hour"):
        factory.render_partition("raw/{{ hour }}", values, "input")
    # a pipeline without templates runs on its YAML input, interval or not
    plain = factory.pipeline_spec(PIPELINES / "quickstart.yaml", {}, tmp_path)
    assert factory.run_paths(plain, {}, None) == {"input": None, "output": None}


def test_manual_run_without_interval_or_input_fails_closed(factory, tmp_path):
    """A real DAG run with no data interval and no input: the first task fails, nothing runs."""
    spec = factory.pipeline_spec(PIPELINES / "quickstart.yaml", {"input": str(tmp_path / "raw/{{ ds }}")},
                                 tmp_path)
    dag = factory.build_pipeline_dag(spec)
    run = dag.test(logical_date=None, run_conf={"output": str(tmp_path / "never")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["00-read"] == "failed"
    assert all(states[t] == "upstream_failed" for t in spec.steps[1:])
    assert not (tmp_path / "never").exists()


def test_dag_test_runs_quickstart_like_curate_run(warm_curate, dagbag, quickstart, tmp_path, monkeypatch):
    """Each task runs `curate run quickstart.yaml --only STEP`; the bytes equal an in-process run.

    The tasks' commands go to one warm curate process (``CURATE_AIRFLOW_COMMAND``, as a cluster
    would point it at spark-submit), so six steps cost one JVM start instead of six.
    """
    monkeypatch.setenv("CURATE_AIRFLOW_COMMAND", warm_curate)
    out = tmp_path / "dag_out"
    run = dagbag.get_dag("quickstart").test(run_conf={"output": str(out)})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    ours, theirs = manifests(out), manifests(quickstart.output_dir)
    assert list(ours) == list(theirs)
    for step in theirs:
        assert shard_hashes(ours[step]) == shard_hashes(theirs[step]), step
        assert ours[step]["stats"]["rows_out"] == theirs[step]["stats"]["rows_out"]
