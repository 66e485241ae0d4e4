"""Core abstractions: the stage registry, stage context, stage output and the Scorer protocol.

A *stage* is a plain function ``(df, ctx, **params) -> StageOutput`` registered by name
with :func:`stage`. Its keyword-only parameters (with defaults) are its YAML parameters;
the registry reads them from the signature, so validation, ``curate stages`` and the docs
all come from one place. No base classes.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

ID = "id"
TEXT = "text"
REJECT_REASON = "reject_reason"


class CurateError(Exception):
    """An error with a one-line message meant for the user (no traceback needed)."""


@runtime_checkable
class Scorer(Protocol):
    """A batched, possibly model-backed document scorer: the one way scores become columns.

    - ``name``: the column it writes;
    - ``fields``: that column's struct fields and their Spark SQL types (``"double"``,
      ``"string"``, ``"array<float>"``), or one type string for a plain (non-struct) column;
    - ``inputs``: the columns it reads (``text`` plus e.g. ``url``);
    - ``setup()``: load models or word lists; the adapter calls it once per Python worker;
    - ``score_batch(texts, **columns)``: one value list or array per field (for a plain
      column: ``{name: values}``), aligned with ``texts`` (``None`` text arrives as ``""``);
      ``columns`` holds the other ``inputs``.

    Optional class attributes, read by the adapter (:func:`curate.quality.columns.append_scores`)
    with these defaults: ``modifies_text = False`` (if True, ``score_batch`` also returns the
    rewritten texts under ``"text"``, and later scorers see them) and ``promote = {}`` (field
    -> top-level column it is copied to, e.g. ``language``). Every filter of ``filters/`` is
    a Scorer, so is the fastText, DSIR and embedding scoring, and all of them in one list run
    in one pass.
    """

    name: str
    fields: Mapping[str, str] | str
    inputs: tuple[str, ...]

    def setup(self) -> None: ...

    def score_batch(self, texts: list[str], **columns: list) -> Mapping[str, Sequence]: ...


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    annotation: str
    required: bool


@dataclass(frozen=True)
class StageSpec:
    name: str
    fn: Callable[..., "StageOutput"]
    params: tuple[Param, ...]
    doc: str

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check ``params`` against the signature; return them with defaults filled in."""
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(known) or "(none)"
            raise CurateError(
                f"stage '{self.name}': unknown parameter(s) {', '.join(unknown)}; valid: {valid}"
            )
        missing = [p.name for p in self.params if p.required and p.name not in params]
        if missing:
            raise CurateError(f"stage '{self.name}': missing required parameter(s) {', '.join(missing)}")
        return {p.name: params.get(p.name, p.default) for p in self.params}


_STAGES: dict[str, StageSpec] = {}


def stage(name: str) -> Callable[[Callable[..., "StageOutput"]], Callable[..., "StageOutput"]]:
    """Register ``fn(df, ctx, *, param=default, ...)`` as the stage ``name``."""

    def register(fn: Callable[..., "StageOutput"]) -> Callable[..., "StageOutput"]:
        if name in _STAGES and _STAGES[name].fn is not fn:
            raise RuntimeError(f"stage '{name}' registered twice")
        _STAGES[name] = StageSpec(name, fn, tuple(_params_of(fn)), inspect.getdoc(fn) or "")
        return fn

    return register


def _params_of(fn: Callable) -> list[Param]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        required = p.default is inspect.Parameter.empty
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        out.append(Param(p.name, None if required else p.default, str(ann), required))
    return out


STAGE_MODULES: tuple[str, ...] = (
    "curate.dedup.exact_dedup",
    "curate.dedup.minhash_dedup",
    "curate.dedup.line_dedup",
    "curate.dedup.semantic_dedup",
    "curate.quality.score",
    "curate.quality.sample",
    "curate.quality.fasttext_score",
    "curate.quality.dsir_score",
    "curate.quality.hf_classify",
    "curate.quality.select_budget",
    "curate.pplcorr.perplexity_correlation",
    "curate.targeted.embed",
    "curate.targeted.benchmark_similarity",
    "curate.targeted.decontaminate",
    "curate.order.knn_order",
    "curate.web.url_dedup",
    "curate.web.extract",
    "curate.mixture.domain_label",
)
"""Every module that registers stages: the registry is this explicit list, not a folder scan."""


def load_stage_modules() -> None:
    """Import the modules of :data:`STAGE_MODULES` so their ``@stage`` decorators run."""
    for name in STAGE_MODULES:
        importlib.import_module(name)


def stages() -> dict[str, StageSpec]:
    load_stage_modules()
    return dict(sorted(_STAGES.items()))


def get_stage(name: str) -> StageSpec:
    registry = stages()
    if name not in registry:
        raise CurateError(f"unknown stage '{name}'; valid stages: {', '.join(registry)}")
    return registry[name]


@dataclass
class StageContext:
    """What a stage may use besides its input DataFrame.

    ``stage_dir`` is a local scratch directory of the stage attempt: put small side artifacts
    under ``ctx.artifact("name")`` and they are listed in the manifest (and uploaded with the
    stage when the output is in an object store). Spark-sized artifacts go through
    ``ctx.artifact_table(name, df)``, written as shards every executor can reach. ``base_dir``
    is the directory of the pipeline YAML: relative paths in params resolve against it.
    """

    spark: Any
    stage_dir: Path
    base_dir: Path = Path(".")
    seed: int = 0
    output_dir: str | Path | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    table_writer: Callable[..., tuple[dict, Any]] | None = None

    def resolve(self, path: str | Path) -> Path | str:
        """An absolute location: URIs (``s3://…``) unchanged, local paths against ``base_dir``."""
        if "://" in str(path) and not str(path).startswith("file://"):
            return str(path)
        p = Path(str(path).removeprefix("file://")).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def artifact(self, name: str) -> Path:
        """A local path for a side artifact, recorded in the manifest."""
        path = self.stage_dir / "artifacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.artifacts[name] = str(Path("artifacts") / name)
        return path

    def artifact_table(self, name: str, df, order_by: str = ID):
        """Write ``df`` as the artifact ``name`` (deterministic shards) and return it read back."""
        if self.table_writer is None:  # a stage called directly (tests, notebooks): a local Parquet directory
            path = self.artifact(name)
            df.repartition(1).sortWithinPartitions(order_by).write.mode("overwrite").parquet(str(path))
            return self.spark.read.parquet(str(path))
        _entry, frame = self.table_writer(name, df, order_by)
        self.artifacts[name] = f"artifacts/{name}"
        return frame


@dataclass
class StageOutput:
    """What a stage returns.

    - ``kept``: rows that go on to the next stage (all input columns carried through).
    - ``rejected``: rows removed by this stage, with a ``reject_reason`` column (and any
      extra columns such as ``duplicate_of``); written to ``<stage>/rejected/``.
    - ``stats``: a dict, or a callable ``(kept, rejected) -> dict`` evaluated on the
      *written* outputs (so it does not recompute the stage).
    - ``order_by``: a column that defines the output order (default: ``id``).
    - ``adds``: for a stage that keeps every input row and only adds (or replaces) columns, those
      columns: the runner may then store just ``id`` and them as a *layer* over the input
      (Dolma's attributes, Soldaini et al. 2024) instead of rewriting every column.
    - ``verdict``: for a stage that only drops rows, every input row with its ``reject_reason``
      (null: kept), from which ``kept`` and ``rejected`` are derived: the runner may store just
      ``id`` and ``reject_reason`` as a layer.
    """

    kept: Any
    rejected: Any = None
    stats: dict[str, Any] | Callable[[Any, Any], dict[str, Any]] = field(default_factory=dict)
    order_by: str = ID
    adds: tuple[str, ...] | None = None
    verdict: Any = None
