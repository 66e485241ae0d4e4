"""The one Arrow adapter of the :class:`curate.core.Scorer` protocol: every listed scorer
appends its column in ONE pass over the data (one Arrow UDF call), ``setup()`` once per
Python worker.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator, Sequence

from curate.core import TEXT, CurateError, Scorer, StageOutput
from curate.io import fs  # noqa: F401  (registers the URI fetcher of curate.integrity on every worker: remote models)

SCORES = "__curate_scores"
_READY: dict[str, Scorer] = {}  # per Python worker: scorers whose setup() ran, by identity
_MAX_READY = 32


def append_scores(df, scorers: Sequence[Scorer], *, text_column: str = TEXT):
    """Append one column per scorer (its ``name``: a struct of its ``fields``), plus promoted
    columns, computed in one Arrow UDF over the input columns the scorers read.

    Scorers run in list order on each batch; a text-rewriting scorer (a modifier) rewrites
    ``text`` for the scorers after it and in the output. Input columns keep their order; a
    column a scorer writes replaces the input column of that name and moves to the end.
    Only the inputs travel to Python and only the scores come back (``mapInArrow`` over
    whole rows would ship every column both ways). ``text_column`` is the column scored as text.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    if text_column not in df.columns:
        raise CurateError(f"the input has no '{text_column}' column to score")
    added = added_columns(scorers)
    if TEXT in added:
        raise CurateError("a scorer cannot write the 'text' column; only a modifier rewrites it")
    rewrites = any(getattr(s, "modifies_text", False) for s in scorers)
    outputs = {**added, TEXT: "string"} if rewrites else dict(added)
    inputs = [TEXT] + sorted({c for s in scorers for c in s.inputs if c != TEXT} & set(df.columns) - {text_column})
    udf = F.arrow_udf(iterator_udf(ScorePass(list(scorers), inputs, outputs)),
                      StructType([StructField(n, spark_type(k), True) for n, k in outputs.items()]))
    staged = df.withColumn(SCORES, udf(F.struct(*[F.col(text_column if c == TEXT else c).alias(c)
                                                  for c in inputs])))

    def carried(field):
        if rewrites and field.name == text_column:
            return F.col(SCORES)[TEXT].alias(text_column, metadata=field.metadata)
        return F.col(field.name)

    kept = [carried(f) for f in df.schema.fields if f.name not in added]
    return staged.select(*kept, *[F.col(SCORES)[name].alias(name) for name in added])


def iterator_udf(fn):
    """``fn`` with the type hints that make it an iterator Arrow UDF (batches in, batches out)."""
    import pyarrow as pa

    def scores(batches):
        return fn(batches)

    scores.__annotations__ = {"batches": Iterator[pa.Array], "return": Iterator[pa.Array]}
    return scores


def layer_columns(scorers: Sequence[Scorer]) -> tuple[str, ...]:
    """The columns :func:`append_scores` adds or replaces: each scorer's, the promoted ones, and
    ``text`` when a modifier rewrites it (``StageOutput.adds``: the runner stores only these)."""
    rewrites = any(getattr(s, "modifies_text", False) for s in scorers)
    return (*added_columns(scorers), *([TEXT] if rewrites else []))


def scored_output(df, scorers: Sequence[Scorer], stats: dict | None = None) -> StageOutput:
    """The output of a stage that only adds ``scorers``' columns to every row (stored as a layer)."""
    return StageOutput(kept=append_scores(df, scorers), stats=dict(stats or {}), adds=layer_columns(scorers))


def added_columns(scorers: Sequence[Scorer]) -> dict[str, Any]:
    """``{column: type}`` of what ``scorers`` write: one column each, then promoted ones."""
    added: dict[str, Any] = {}
    for s in scorers:
        if s.name in added:
            raise CurateError(f"two scorers write the column '{s.name}'")
        added[s.name] = s.fields
    for s in scorers:
        for field, column in getattr(s, "promote", {}).items():
            added[column] = s.fields[field]
    return added


# ---------------------------------------------------------------- types

def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa

    return {"double": pa.float64(), "float": pa.float32(), "long": pa.int64(), "string": pa.string(),
            "array<float>": pa.list_(pa.float32())}


def spark_type(kind):
    """Spark type of a field type name, or of a ``{field: type name}`` struct."""
    from pyspark.sql import types as T

    if not isinstance(kind, str):
        return T.StructType([T.StructField(f, spark_type(k), True) for f, k in kind.items()])
    simple = {"double": T.DoubleType(), "float": T.FloatType(), "long": T.LongType(), "string": T.StringType(),
              "array<float>": T.ArrayType(T.FloatType(), False)}
    if kind not in simple:
        raise CurateError(f"unsupported scorer field type '{kind}'; valid: {', '.join(simple)}")
    return simple[kind]


def to_arrow(values, kind: str):
    """One field's values (list or NumPy array; ``(n, dim)`` for ``array<float>``) as an Arrow array."""
    import numpy as np
    import pyarrow as pa

    if kind == "array<float>":
        vectors = np.ascontiguousarray(values, dtype=np.float32)
        n = len(vectors)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        offsets = pa.array(np.arange(0, (n + 1) * dim, max(dim, 1), dtype=np.int32)[:n + 1] if dim
                           else np.zeros(n + 1, np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1), type=pa.float32()))
    return pa.array(values, type=_arrow_types()[kind])


def _column(result, name: str, kind, n: int):
    """The Arrow column of one scorer's result (struct of fields, or a plain column)."""
    import pyarrow as pa

    if isinstance(kind, str):
        return _checked(to_arrow(result[name], kind), name, n)
    arrays = [_checked(to_arrow(result[f], k), f"{name}.{f}", n) for f, k in kind.items()]
    types = _arrow_types()
    return pa.StructArray.from_arrays(arrays, fields=[pa.field(f, types[k]) for f, k in kind.items()])


def _checked(array, label: str, n: int):
    if len(array) != n:
        raise CurateError(f"scorer field {label}: {len(array)} values for {n} texts")
    return array


# ---------------------------------------------------------------- the worker side

def identity(scorer: Scorer) -> str:
    """A stable key for ``scorer``'s configuration: equal configurations share one setup()."""
    from pyspark import cloudpickle

    return hashlib.sha256(cloudpickle.dumps(scorer)).hexdigest()


def ready(key: str, scorer: Scorer) -> Scorer:
    """``scorer`` after ``setup()``; the set-up instance is kept per Python worker by ``key``."""
    if key not in _READY:
        if len(_READY) >= _MAX_READY:
            _READY.pop(next(iter(_READY)))
        scorer.setup()
        _READY[key] = scorer
    return _READY[key]


class ScorePass:
    """The Arrow UDF body: scorers run in order on each batch of the input struct."""

    def __init__(self, scorers: list[Scorer], inputs: list[str], outputs: dict[str, Any]):
        self.scorers, self.inputs, self.outputs = scorers, inputs, outputs
        self.keys = [identity(s) for s in scorers]  # on the driver, once

    def __call__(self, batches: Iterator) -> Iterator:
        import pyarrow as pa

        scorers = [ready(k, s) for k, s in zip(self.keys, self.scorers)]
        types = _arrow_types()
        fields = [pa.field(name, types[kind] if isinstance(kind, str) else
                           pa.struct([(f, types[k]) for f, k in kind.items()])) for name, kind in self.outputs.items()]
        for batch in batches:
            columns = score_columns(scorers, {c: batch.field(c).to_pylist() for c in self.inputs})
            yield pa.StructArray.from_arrays([columns[f.name] for f in fields], fields=fields)


def score_columns(scorers: Sequence[Scorer], columns: dict[str, list]) -> dict[str, Any]:
    """Run ``scorers`` in order over one batch: ``{column: Arrow array}`` of everything they
    write (and ``text`` if a modifier ran). ``columns`` holds ``text`` and the other inputs;
    a ``None`` text is scored as ``""`` and stays ``None`` in the output."""
    import pyarrow as pa

    original = columns[TEXT]
    n = len(original)
    texts = ["" if t is None else t for t in original]
    state = {c: v for c, v in columns.items() if c != TEXT}
    out: dict[str, Any] = {}
    rewrote = False
    for s in scorers:
        extra = {c: state[c] for c in s.inputs if c != TEXT and c in state}
        result = s.score_batch(texts, **extra)
        out[s.name] = _column(result, s.name, s.fields, n)
        if getattr(s, "modifies_text", False):
            texts, rewrote = list(result[TEXT]), True
        for field, column in getattr(s, "promote", {}).items():
            state[column] = list(result[field])
            out[column] = out[s.name].field(field)
    if rewrote:
        out[TEXT] = pa.array([None if o is None else t for o, t in zip(original, texts)], pa.string())
    return out
