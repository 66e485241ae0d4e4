"""Pipeline YAML → a validated :class:`Pipeline`, checked before any work starts."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from curate.core import CurateError, get_stage, stages
from curate.io import fs
from curate.io.read import BUILTIN_PREFIX, InputSpec

TOP_LEVEL_KEYS = ("name", "input", "output", "seed", "spark", "stages", "description")


@dataclass(frozen=True)
class OutputSpec:
    path: str
    format: str = "parquet"
    rows_per_shard: int = 100_000
    layers: bool = True  # row-wise stages store only what they add or decide (curate.io.shards layers)


@dataclass(frozen=True)
class StageCall:
    index: int  # 1-based position in the pipeline (00 is the implicit read step)
    name: str
    params: dict[str, Any]

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-{self.name}"


@dataclass(frozen=True)
class Pipeline:
    name: str
    input: InputSpec
    output: OutputSpec
    stages: tuple[StageCall, ...]
    seed: int = 0
    spark: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = Path(".")

    def find(self, ref: str) -> StageCall:
        """A stage by name (``select``), directory name (``02-select``) or index (``2``)."""
        matches = [s for s in self.stages if ref in (s.name, s.dirname, str(s.index))]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(s.dirname for s in self.stages)
        if not matches:
            raise CurateError(f"no stage '{ref}' in pipeline '{self.name}'; stages: {names}")
        raise CurateError(f"'{ref}' matches several stages ({names}); use the NN-name form")


def load_pipeline(source: str | Path | Mapping[str, Any], *, input: str | None = None,
                  output: str | None = None) -> Pipeline:
    """Load and validate a pipeline from a YAML path or an already-parsed mapping."""
    if isinstance(source, Mapping):
        raw, base = dict(source), Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise CurateError(f"pipeline file not found: {source}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CurateError(f"{source}: invalid YAML: {str(exc).splitlines()[0]}") from None
        base = path.resolve().parent
        if not isinstance(raw, dict):
            raise CurateError(f"{source}: a pipeline is a mapping with name, input, output, stages")
    return parse_pipeline(raw, base, input_override=input, output_override=output)


def parse_pipeline(raw: dict, base: Path, *, input_override: str | None = None,
                   output_override: str | None = None) -> Pipeline:
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise CurateError(f"unknown pipeline key(s) {', '.join(unknown)}; valid: {', '.join(TOP_LEVEL_KEYS)}")
    for key in ("input", "output", "stages"):
        if key not in raw and not (key == "input" and input_override) and not (key == "output" and output_override):
            raise CurateError(f"pipeline is missing '{key}'")
    input_spec = _dataclass_from(InputSpec, _as_mapping(raw.get("input"), "path"), "input")
    if input_override:
        base_spec = input_spec.__dict__ if raw.get("input") else {}
        input_spec = InputSpec(**{**base_spec, "path": input_override})
    elif not input_spec.path.startswith(BUILTIN_PREFIX):
        input_spec = InputSpec(**{**input_spec.__dict__, "path": fs.resolve(input_spec.path, base)})
    output_spec = _dataclass_from(OutputSpec, _as_mapping(raw.get("output"), "path"), "output")
    out_path = fs.resolve(output_override, Path.cwd()) if output_override else fs.resolve(output_spec.path, base)
    output_spec = OutputSpec(**{**output_spec.__dict__, "path": out_path})
    if output_spec.format not in ("parquet", "jsonl"):
        raise CurateError(f"output.format must be parquet or jsonl, got '{output_spec.format}'")
    if not isinstance(output_spec.layers, bool):
        raise CurateError(f"output.layers must be true or false, got {output_spec.layers!r}")
    calls = tuple(_stage_call(i, entry) for i, entry in enumerate(raw.get("stages") or [], start=1))
    if not calls:
        raise CurateError("pipeline has no stages")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int):
        raise CurateError(f"seed must be an integer, got {seed!r}")
    spark = raw.get("spark") or {}
    if not isinstance(spark, dict) or set(spark) - {"master", "conf"}:
        raise CurateError("spark: expects a mapping with optional 'master' and 'conf'")
    return Pipeline(str(raw.get("name") or "pipeline"), input_spec, output_spec, calls, seed, spark, base)


def _as_mapping(value: Any, key: str) -> dict:
    if isinstance(value, str):
        return {key: value}
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CurateError(f"expected a path or a mapping, got {value!r}")
    return value


def _dataclass_from(cls, values: dict, where: str):
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise CurateError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    if "path" not in values:
        raise CurateError(f"{where}: missing 'path'")
    return cls(**values)


def _stage_call(index: int, entry: Any) -> StageCall:
    """``- name: {params}``, ``- name: [list]`` (first parameter) or ``- name``.

    A stage with a single parameter may also be given that parameter's value directly
    (``- score: [gopher_quality]``, ``- select: {gopher_quality: {min_words: 80}}``).
    """
    if isinstance(entry, str):
        name, params = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, params = next(iter(entry.items()))
    else:
        raise CurateError(f"stage #{index}: write '- stage_name: {{params}}', got {entry!r}")
    spec = get_stage(str(name))
    if params is None:
        params = {}
    elif isinstance(params, list):
        if not spec.params:
            raise CurateError(f"stage '{name}' takes no parameters")
        params = {spec.params[0].name: params}
    elif not isinstance(params, dict):
        raise CurateError(f"stage '{name}': parameters must be a mapping, got {params!r}")
    elif _is_bare_mapping_for(spec, params):
        params = {spec.params[0].name: params}  # `- select: {gopher_quality: {...}}`
    return StageCall(index, str(name), spec.validate(params))


def _is_bare_mapping_for(spec, params: dict) -> bool:
    """A one-parameter stage given its mapping directly (keys are not parameter names)."""
    only = spec.params[0] if len(spec.params) == 1 else None
    takes_mapping = only is not None and ("dict" in only.annotation or "Mapping" in only.annotation)
    return bool(params) and takes_mapping and only.name not in params


def describe_stages() -> list[tuple[str, str, list[tuple[str, Any, bool]]]]:
    """(name, summary, [(param, default, required)]) for every registered stage."""
    return [(s.name, s.summary, [(p.name, p.default, p.required) for p in s.params])
            for s in stages().values()]
