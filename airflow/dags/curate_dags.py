"""Airflow DAGs for curate: one DAG per pipeline YAML, plus training DAGs triggered by assets.

Airflow only schedules. Every task runs the command a person would type:

    <pipeline>  00-read >> 01-<stage> >> ... >> NN-<stage> >> final
                each task = ``curate run PIPELINE --only <step> [--input P] [--output P]``
    train_<x>   mix >> [tokenizer >>] tokenize >> train
                scheduled on the assets that the ``final`` tasks of its input pipelines emit

Task ids are the runner's step directories (``00-read``, ``01-exact_dedup``, …, ``final``),
so a task maps one-to-one onto ``<output>/<task_id>/_manifest.json``. A retried or re-run
task is idempotent: the runner skips a complete step and refuses a changed one.

Configuration (all optional; see docs/airflow.md):

- ``CURATE_PIPELINES_DIR``: where the pipeline YAMLs are (default: ``pipelines/`` of this repo).
- ``CURATE_AIRFLOW_CONFIG``: schedules, data-interval partitions, retries and training DAGs
  (default: ``curate_airflow.yaml`` next to this file; absent means "manual runs only").
- ``CURATE_AIRFLOW_COMMAND``: the command prefix (default: ``<this python> -m curate``), e.g.
  ``spark-submit --master spark://host:7077 <site-packages>/curate/__main__.py`` on a cluster.

Only PyYAML, Airflow and the stdlib-only ``curate.io.layout`` (the on-disk names) are
imported here: no pyspark, torch or faiss at parse time.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml

from curate.io.layout import FINAL_DIR, READ_DIR  # stdlib-only: keeps the DAG light

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
ASSET_SCHEME = "x-curate"
DEFAULT_RETRY = {"retries": 2, "retry_delay_seconds": 60, "max_retry_delay_seconds": 1800}
_PLACEHOLDER = re.compile(r"{{\s*([a-z_]+)\s*}}")


class PartitionError(ValueError):
    """A run cannot decide which input/output partition to use (fails the task, no retry)."""


# ----------------------------------------------------------------------------- specs (pure)


@dataclass(frozen=True)
class PipelineSpec:
    """What the DAG needs to know about a pipeline YAML (parsed with yaml.safe_load only)."""

    name: str
    path: Path
    steps: tuple[str, ...]
    output: Path
    schedule: str | None = None
    start_date: datetime | None = None
    input_template: str | None = None
    output_template: str | None = None
    retry: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETRY))

    @property
    def dag_id(self) -> str:
        return self.name

    @property
    def asset_uri(self) -> str:
        return f"{ASSET_SCHEME}://pipeline/{self.name}/{FINAL_DIR}"


@dataclass(frozen=True)
class TrainingSpec:
    """A mixture → tokenize → train DAG over the outputs of some pipelines."""

    name: str
    mixture: Path
    train: Path
    work: Path
    inputs: tuple[str, ...]
    tokenizer: Path | None = None
    vocab_size: int = 32000
    overrides: tuple[str, ...] = ()
    retry: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETRY))

    @property
    def dag_id(self) -> str:
        return f"train_{self.name}"


def _load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def step_names(stages: list) -> tuple[str, ...]:
    """The runner's steps for a pipeline's ``stages`` list: 00-read, NN-<stage>…, final."""
    names = []
    for index, entry in enumerate(stages or [], start=1):
        if isinstance(entry, str):
            name = entry
        elif isinstance(entry, dict) and len(entry) == 1:
            name = next(iter(entry))
        else:
            raise ValueError(f"stage #{index}: write '- stage_name: {{params}}', got {entry!r}")
        names.append(f"{index:02d}-{name}")
    if not names:
        raise ValueError("pipeline has no stages")
    return (READ_DIR, *names, FINAL_DIR)


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_template(template: str, base: Path) -> str:
    """A relative partition template resolves against the config file's directory."""
    return template if template.startswith("{{") else str(_resolve(template, base))


def _output_path(raw: dict, base: Path) -> Path:
    out = raw.get("output")
    return _resolve(out["path"] if isinstance(out, dict) else out, base)


def is_pipeline(raw: Any) -> bool:
    return isinstance(raw, dict) and "stages" in raw


def _start_date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if value is None:
        return datetime(2024, 1, 1, tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value)).replace(tzinfo=timezone.utc)


def _retry(settings: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(settings.get(k, v)) for k, v in DEFAULT_RETRY.items()}


def pipeline_spec(path: Path, settings: Mapping[str, Any], config_dir: Path, raw: dict | None = None) -> PipelineSpec:
    """A pipeline DAG: its YAML's steps and output, plus its Airflow ``settings`` (schedule, partitions, retries)."""
    raw = _load_yaml(path) if raw is None else raw
    name = str(raw.get("name") or path.stem)
    templates = {k: _resolve_template(str(settings[k]), config_dir) for k in ("input", "output") if settings.get(k)}
    return PipelineSpec(name=name, path=path.resolve(), steps=step_names(raw.get("stages")),
                        output=_output_path(raw, path.resolve().parent), schedule=settings.get("schedule"),
                        start_date=_start_date(settings.get("start_date")),
                        input_template=templates.get("input"), output_template=templates.get("output"),
                        retry=_retry(settings))


def training_spec(name: str, settings: Mapping[str, Any], config_dir: Path,
                  pipelines: list[PipelineSpec]) -> TrainingSpec:
    """A training DAG; its inputs are the pipelines whose output holds a mixture source."""
    for key in ("mixture", "train", "work"):
        if key not in settings:
            raise ValueError(f"training DAG '{name}': missing '{key}'")
    mixture = _resolve(settings["mixture"], config_dir)
    sources = (_load_yaml(mixture) or {}).get("sources") or {}
    paths = [_resolve(s["path"] if isinstance(s, dict) else s, mixture.parent) for s in sources.values()]
    inputs = settings.get("inputs") or sorted({p.name for p in pipelines for s in paths
                                               if s == p.output or p.output in s.parents})
    unknown = sorted(set(inputs) - {p.name for p in pipelines})
    if unknown:
        raise ValueError(f"training DAG '{name}': unknown input pipeline(s) {', '.join(unknown)}")
    tokenizer = settings.get("tokenizer")
    return TrainingSpec(name=name, mixture=mixture, train=_resolve(settings["train"], config_dir),
                        work=_resolve(settings["work"], config_dir), inputs=tuple(inputs),
                        tokenizer=_resolve(tokenizer, config_dir) if tokenizer else None,
                        vocab_size=int(settings.get("vocab_size", 32000)),
                        overrides=tuple(settings.get("set") or ()), retry=_retry(settings))


def load_specs(pipelines_dir: Path, config_path: Path) -> tuple[list[PipelineSpec], list[TrainingSpec]]:
    """Every pipeline YAML under ``pipelines_dir`` and every training DAG in the config.

    A YAML that is not a pipeline (a mixture spec, a training config) is ignored; a broken
    pipeline is logged and left out so that it cannot hide the others.
    """
    config = (_load_yaml(config_path) or {}) if config_path.is_file() else {}
    settings = config.get("pipelines") or {}
    pipelines = []
    for path in sorted(pipelines_dir.glob("*.yaml")):
        try:
            raw = _load_yaml(path)
            if is_pipeline(raw):
                pipelines.append(pipeline_spec(path, settings.get(raw.get("name") or path.stem) or {},
                                               config_path.parent, raw))
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            log.error("curate: skipping pipeline %s: %s", path, exc)
    trainings = []
    for name, entry in (config.get("training") or {}).items():
        try:
            trainings.append(training_spec(str(name), entry or {}, config_path.parent, pipelines))
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            log.error("curate: skipping training DAG %s: %s", name, exc)
    return pipelines, trainings


# ----------------------------------------------------------------------- partitions (pure)


def interval_values(start: datetime | None, end: datetime | None) -> dict[str, str] | None:
    """Template values for a data interval (None when the run has no interval)."""
    if start is None:
        return None
    return {"ds": start.strftime("%Y-%m-%d"), "ds_nodash": start.strftime("%Y%m%d"),
            "data_interval_start": start.isoformat(), "data_interval_end": (end or start).isoformat()}


def render_partition(template: str, values: dict[str, str] | None, what: str) -> str:
    """Fill ``{{ ds }}``-style placeholders; fail closed when the run has no data interval."""
    names = _PLACEHOLDER.findall(template)
    if not names:
        return template
    if values is None:
        raise PartitionError(
            f"{what} '{template}' needs the run's data interval, but this run has none (a manual "
            f"run?); trigger it with an explicit {what}: airflow dags trigger DAG_ID "
            f"--conf '{{\"{what}\": \"/path/to/partition\"}}'")
    unknown = sorted(set(names) - set(values))
    if unknown:
        raise PartitionError(f"{what} '{template}': unknown placeholder(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(values)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def run_paths(spec: PipelineSpec, conf: Mapping[str, Any] | None,
              values: dict[str, str] | None) -> dict[str, str | None]:
    """The ``--input``/``--output`` of one DAG run: trigger conf > partition template > YAML."""
    conf = conf or {}
    out = {}
    for what, template in (("input", spec.input_template), ("output", spec.output_template)):
        given = conf.get(what)
        if given:
            out[what] = str(_resolve(given, spec.path.parent))
        elif template:
            out[what] = render_partition(template, values, what)
        else:
            out[what] = None
    return out


def curate_command() -> list[str]:
    """The command prefix that runs ``curate`` (``CURATE_AIRFLOW_COMMAND`` overrides it)."""
    custom = os.environ.get("CURATE_AIRFLOW_COMMAND")
    return shlex.split(custom) if custom else [sys.executable, "-m", "curate"]


def step_command(spec: PipelineSpec, step: str, paths: Mapping[str, str | None]) -> str:
    """``curate run PIPELINE --only STEP [--input P] [--output P]`` as a shell line."""
    args = [*curate_command(), "run", str(spec.path), "--only", step]
    for what in ("input", "output"):
        if paths.get(what):
            args += [f"--{what}", str(paths[what])]
    return shlex.join(args)


# ------------------------------------------------------------------------------ DAGs


def _default_args(retry: Mapping[str, int]) -> dict[str, Any]:
    return {"owner": "curate", "retries": retry["retries"],
            "retry_delay": timedelta(seconds=retry["retry_delay_seconds"]),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(seconds=retry["max_retry_delay_seconds"])}


def pipeline_asset(spec: PipelineSpec):
    from airflow.sdk import Asset

    return Asset(name=f"curate.{spec.name}", uri=spec.asset_uri, extra={"output": str(spec.output)})


def build_pipeline_dag(spec: PipelineSpec):
    """One task per runner step, chained in pipeline order; ``final`` emits the pipeline asset."""
    from airflow.sdk import DAG, Param, task
    from airflow.sdk.exceptions import AirflowFailException

    def make_task(step: str):
        @task.bash(task_id=step, outlets=[pipeline_asset(spec)] if step == FINAL_DIR else [])
        def run_step(**context) -> str:
            values = interval_values(context.get("data_interval_start"), context.get("data_interval_end"))
            try:
                paths = run_paths(spec, context.get("params"), values)
            except PartitionError as exc:
                raise AirflowFailException(str(exc)) from None
            return step_command(spec, step, paths)

        return run_step()

    with DAG(dag_id=spec.dag_id, schedule=spec.schedule, start_date=spec.start_date, catchup=False,
             max_active_runs=1, default_args=_default_args(spec.retry), tags=["curate", "pipeline"],
             doc_md=f"curate pipeline `{spec.path.name}`: one task per step ({' → '.join(spec.steps)}).",
             params={"input": Param(None, type=["null", "string"], description="explicit input partition"),
                     "output": Param(None, type=["null", "string"], description="explicit output directory")},
             ) as dag:
        previous = None
        for step in spec.steps:
            current = make_task(step)
            if previous is not None:
                previous >> current
            previous = current
    return dag


def training_commands(spec: TrainingSpec) -> dict[str, str]:
    """Task id → shell line; ``$CURATE_RUN_DIR`` is this DAG run's work directory (set per task)."""
    cmd, run = shlex.join(curate_command()), "\"$CURATE_RUN_DIR\""
    tokenizer = str(spec.tokenizer) if spec.tokenizer else f"{run}/tokenizer.json"
    commands = {"mix": f"{cmd} mix {shlex.quote(str(spec.mixture))} -o {run}/mix --force"}
    if spec.tokenizer is None:
        commands["tokenizer"] = (f"{cmd} tokenizer train {run}/mix -o {tokenizer} "
                                 f"--vocab-size {spec.vocab_size}")
    commands["tokenize"] = f"{cmd} tokenize {run}/mix -t {tokenizer} -o {run}/shards --force"
    sets = " ".join(f"--set {shlex.quote(s)}" for s in spec.overrides)
    commands["train"] = (f"{cmd} train {shlex.quote(str(spec.train))} --set out={run}/train "
                         f"--set data.shards={run}/shards {sets}").rstrip()
    return commands


def build_training_dag(spec: TrainingSpec, pipelines: dict[str, PipelineSpec]):
    """mix → [tokenizer →] tokenize → train, scheduled on all its input pipelines' assets."""
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG

    assets = [pipeline_asset(pipelines[name]) for name in spec.inputs]
    run_dir = f"{spec.work}/{{{{ run_id | replace(':', '') | replace('+', '') }}}}"
    with DAG(dag_id=spec.dag_id, schedule=assets or None, start_date=_start_date(None), catchup=False,
             max_active_runs=1, default_args=_default_args(spec.retry), tags=["curate", "training"],
             doc_md=f"mixture `{spec.mixture.name}` → tokenize → train `{spec.train.name}`; "
                    f"triggered by: {', '.join(spec.inputs) or 'manual runs'}.") as dag:
        previous = None
        for task_id, line in training_commands(spec).items():
            current = BashOperator(task_id=task_id, bash_command=line,
                                   env={"CURATE_RUN_DIR": run_dir}, append_env=True)
            if previous is not None:
                previous >> current
            previous = current
    return dag


def build_dags(pipelines_dir: Path | None = None, config_path: Path | None = None) -> dict[str, Any]:
    pipelines_dir = Path(pipelines_dir or os.environ.get("CURATE_PIPELINES_DIR") or REPO / "pipelines")
    config_path = Path(config_path or os.environ.get("CURATE_AIRFLOW_CONFIG")
                       or Path(__file__).with_name("curate_airflow.yaml"))
    pipelines, trainings = load_specs(pipelines_dir, config_path)
    by_name = {p.name: p for p in pipelines}
    dags = {p.dag_id: build_pipeline_dag(p) for p in pipelines}
    dags.update({t.dag_id: build_training_dag(t, by_name) for t in trainings})
    return dags


globals().update(build_dags())  # Airflow's DagBag picks up the DAG objects from module globals
