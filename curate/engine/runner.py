"""Run a pipeline: the step loop. Skip what is complete, refuse what changed, resume after kills.

Steps are ``00-read`` (implicit), the pipeline's stages ``01-…``, and ``final`` (the export
of the last stage in the output format), defined in :mod:`curate.engine.steps`. Each step is
committed with a manifest (:mod:`curate.engine.manifest`); a rerun skips steps whose config
hash and input fingerprint match. The whole run holds the output's lease
(:mod:`curate.engine.lease`): a second run on the same output refuses at once.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from curate.config import Pipeline, load_pipeline
from curate.core import CurateError
from curate.engine import lease as leases
from curate.engine.manifest import clean_leftovers, output_fingerprint
from curate.engine.steps import ExportStep, ReadStep, StageStep
from curate.io import fs
from curate.io.layout import FINAL_DIR
from curate.io.read import list_input_files, materialize_builtin
from curate.io.shards import load_manifest

PROGRESS_SECONDS = 15.0


@dataclass
class StepResult:
    name: str
    dirname: str
    status: str  # "ran" | "skipped"
    stats: dict[str, Any]
    seconds: float


@dataclass
class RunResult:
    pipeline: Pipeline
    output_dir: Any  # a Path for local outputs, a URI string for object stores
    steps: list[StepResult] = field(default_factory=list)

    def under(self, name: str):
        """A location inside the output: a Path for local outputs, a URI string otherwise."""
        return self.output_dir / name if hasattr(self.output_dir, "joinpath") else fs.join(self.output_dir, name)

    @property
    def stage_dirs(self) -> dict[str, Any]:
        return {s.dirname: self.under(s.dirname) for s in self.steps}

    @property
    def stats(self) -> dict[str, dict]:
        return {s.dirname: s.stats for s in self.steps}

    @property
    def final_dir(self):
        return self.under(FINAL_DIR)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parameter_uris(value: Any) -> list[str]:
    """Every object-store URI among a stage's parameter values (nested lists and mappings too)."""
    if isinstance(value, str):
        return [value] if fs.is_remote(value) else []
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [uri for item in value for uri in parameter_uris(item)]
    return []


def check_parameter_uris(p: Pipeline) -> None:
    """Fail before any work when a model, reference or benchmark URI of a stage cannot be read."""
    for call in p.stages:
        for uri in parameter_uris(call.params):
            fs.check_reachable(uri)
            if not fs.exists(uri):
                raise CurateError(f"stage '{call.name}': {uri} does not exist")


def run_pipeline(pipeline: str | os.PathLike | Mapping[str, Any] | Pipeline, *, input: str | None = None,
                 output: str | None = None, master: str | None = None,
                 conf: Mapping[str, str] | None = None, force: bool = False,
                 from_stage: str | None = None, only: str | None = None, spark=None,
                 take_over: bool = False, log: Callable[[str], None] = _stderr) -> RunResult:
    """Run (or resume) a pipeline under the output's lease. See the module docstring."""
    p = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline, input=input, output=output)
    out = p.output.path
    for uri in (p.input.path, out):
        if not uri.startswith("builtin:"):
            fs.check_reachable(uri)
    check_parameter_uris(p)
    fs.makedirs(out)
    command = " ".join(sys.argv) or "curate"
    with leases.acquire(out, owner_command=command, take_over=take_over, log=log) as lease:
        if spark is None:
            from curate.engine.spark import get_spark

            spark = get_spark(master or p.spark.get("master"), {**p.spark.get("conf", {}), **dict(conf or {})})
        p = replace(p, input=materialize_builtin(p.input, out))
        for name in clean_leftovers(out):
            log(f"removed leftover {name} from an interrupted run")
        steps = [ReadStep(p, list_input_files(p.input.path))] + [StageStep(p, c) for c in p.stages] + [ExportStep(p)]
        return _run_steps(p, steps, spark, lease, force=force, from_stage=from_stage, only=only, log=log)


def _run_steps(p: Pipeline, steps: list, spark, lease, *, force: bool, from_stage: str | None,
               only: str | None, log: Callable[[str], None]) -> RunResult:
    """The step loop: skip complete steps, refuse changed ones, run the rest in order."""
    out = p.output.path
    redo_from = _step_index(steps, from_stage) if from_stage else None
    only_index = _step_index(steps, only) if only else None
    result = RunResult(p, out if fs.is_remote(out) else _as_path(out))
    upstream_hash, upstream_fp, last = "", "", len(steps) - 1
    for i, step in enumerate(steps):
        cfg, fp = step.config_hash(upstream_hash), step.input_fingerprint(upstream_fp)
        target = fs.join(out, step.dirname)
        existing = load_manifest(target)
        redo = force or (redo_from is not None and i >= redo_from)
        selected = only_index is None or i == only_index
        if existing and not redo:
            _check_unchanged(step, existing, cfg, fp)
            if selected:
                log(f"[{i}/{last}] {step.dirname}: complete, skipped")
                result.steps.append(StepResult(step.name, step.dirname, "skipped", existing["stats"], 0.0))
        elif not selected:
            if only_index is not None and i < only_index:
                raise CurateError(f"cannot run only '{only}': its input {step.dirname} is not complete; "
                                  f"run the earlier stages first")
            break
        else:
            log(f"[{i}/{last}] {step.dirname}: running")
            t0 = time.time()
            with _progress(spark, f"[{i}/{last}] {step.dirname}", log):
                upstream = fs.join(out, steps[i - 1].dirname) if i else None
                existing = step.run(spark, target, cfg, fp, upstream=upstream, guard=lease.check)
            secs = time.time() - t0
            log(f"[{i}/{last}] {step.dirname}: {_summary(existing['stats'])} in {secs:.1f}s")
            result.steps.append(StepResult(step.name, step.dirname, "ran", existing["stats"], secs))
        upstream_hash, upstream_fp = cfg, output_fingerprint(existing)
        if only_index is not None and i == only_index:
            break
    return result


def _as_path(uri: str):
    from pathlib import Path

    return Path(fs.strip_file_scheme(uri))


@contextmanager
def _progress(spark, label: str, log: Callable[[str], None], every: float = PROGRESS_SECONDS):
    """While a step runs, report finished/total tasks of active Spark stages every ``every`` s."""
    done = threading.Event()
    t0 = time.time()

    def report():
        tracker = spark.sparkContext.statusTracker()
        while not done.wait(every):
            infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            tasks = [(i.numCompletedTasks, i.numTasks) for i in infos if i is not None]
            finished, total = sum(t[0] for t in tasks), sum(t[1] for t in tasks)
            log(f"{label}: {time.time() - t0:.0f}s elapsed, {finished}/{total} tasks of active Spark stages")

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def _step_index(steps: list, ref: str) -> int:
    for i, step in enumerate(steps):
        if ref in (step.name, step.dirname, str(i)):
            return i
    raise CurateError(f"no stage '{ref}'; stages: {', '.join(s.dirname for s in steps)}")


def _check_unchanged(step, manifest: dict, cfg: str, fp: str) -> None:
    if manifest.get("config_hash") != cfg:
        raise CurateError(f"{step.dirname} was built with a different configuration; rerun with "
                          f"--from {step.name} to rebuild it and what follows (or --force)")
    if manifest.get("input_fingerprint") != fp:
        raise CurateError(f"the input of {step.dirname} changed since it was built; rerun with "
                          f"--from {step.name} (or --force)")


def _summary(stats: dict) -> str:
    parts = [f"{stats.get('rows_in', 0):,} in", f"{stats.get('rows_out', 0):,} out"]
    if stats.get("quarantined"):
        parts.append(f"{stats['quarantined']:,} quarantined")
    if stats.get("rejected"):
        parts.append(f"{sum(stats['rejected'].values()):,} rejected")
    return ", ".join(parts)
