"""Document filters: pure Python, no Spark, one module per family, found by a registry.

A *filter* is a frozen dataclass whose fields are its parameters (= its YAML keys):

- ``score(doc) -> dict[str, float]`` measures a document (a dict with ``text`` and, for
  some filters, ``url`` or ``language``) and returns exactly the keys in ``keys``;
- ``reject(scores) -> str | None`` applies the thresholds: ``None`` keeps, a string is the
  reason (``"word_count"``; the ``select`` stage prefixes the filter name).

Fields listed in ``score_params`` change what ``score`` measures (a model path, a word
list, the length of a "short" line); every other field is a threshold read only by
``reject``, so changing it re-runs ``select`` but never ``score``.

A *modifier* (:class:`Modifier`) also rewrites ``text`` (``apply``) and reports counts.
Model- or file-backed filters load what they need in ``setup()``, once per Python worker.
Every filter is a :class:`curate.core.Scorer` (``fields``, ``score_batch``), so the
``score`` stage runs filters and model scorers (fastText, DSIR) in one pass.

Register a filter with ``@register("name")``; every module of this package is imported by
:func:`registry`, so adding a filter is one module plus its tests.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from curate.core import CurateError

DATA_DIR = Path(__file__).resolve().parent / "data"


class Filter:
    """Base of every filter; subclasses are ``@dataclass(frozen=True)``."""

    name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()
    string_keys: ClassVar[frozenset[str]] = frozenset()  # keys whose values are strings
    inputs: ClassVar[tuple[str, ...]] = ("text",)  # document fields score() reads
    score_params: ClassVar[tuple[str, ...]] = ()  # fields that change score(), not thresholds
    path_params: ClassVar[tuple[str, ...]] = ()  # fields holding file paths (str or {k: path})
    promote: ClassVar[Mapping[str, str]] = {}  # score key -> top-level column it is copied to
    modifies_text: ClassVar[bool] = False

    def setup(self) -> None:
        """Load models or word lists (cached per process); a no-op for plain heuristics."""

    def score(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def fields(self) -> dict[str, str]:
        """The :class:`curate.core.Scorer` view: each key and its column type."""
        return {k: "string" if k in self.string_keys else "double" for k in self.keys}

    def score_batch(self, texts: list[str], **columns: list) -> dict[str, list]:
        """:class:`curate.core.Scorer`: ``score`` every text (``columns``: the other ``inputs``)."""
        out: dict[str, list] = {k: [] for k in self.keys}
        appends = [(k, out[k].append) for k in self.keys]
        extra = list(columns.items())
        for i, text in enumerate(texts):
            doc = {"text": text}
            for name, values in extra:
                doc[name] = values[i]
            scores = self.score(doc)
            for key, add in appends:
                add(scores.get(key))
        return out

    def reject(self, scores: Mapping[str, Any]) -> str | None:
        raise NotImplementedError


class Modifier(Filter):
    """A filter that rewrites ``text``: ``apply(text) -> (new_text, counts)``; keeps every doc."""

    modifies_text: ClassVar[bool] = True

    def apply(self, text: str) -> tuple[str, dict[str, float]]:
        raise NotImplementedError

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        return self.apply(doc.get("text") or "")[1]

    def score_batch(self, texts: list[str], **columns: list) -> dict[str, list]:
        """Counts per key, plus the rewritten texts under ``"text"``."""
        out: dict[str, list] = {k: [] for k in self.keys}
        rewritten = []
        for text in texts:
            new, counts = self.apply(text)
            rewritten.append(new)
            for key in self.keys:
                out[key].append(counts.get(key))
        return {**out, "text": rewritten}

    def reject(self, scores: Mapping[str, Any]) -> str | None:
        return None


_REGISTRY: dict[str, type[Filter]] = {}


def register(name: str) -> Callable[[type[Filter]], type[Filter]]:
    """Class decorator: register a frozen-dataclass filter under ``name``."""

    def add(cls: type[Filter]) -> type[Filter]:
        params = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else None
        if params is None or not cls.__dataclass_params__.frozen:
            raise TypeError(f"filter '{name}' must be a frozen dataclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"filter '{name}' registered twice")
        unknown = set(cls.score_params) - {f.name for f in params}
        if unknown:
            raise TypeError(f"filter '{name}': score_params {sorted(unknown)} are not fields")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def registry() -> dict[str, type[Filter]]:
    """All registered filters by name (imports every module of this package first)."""
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Filter]:
    filters = registry()
    if name not in filters:
        raise CurateError(f"unknown filter '{name}'; valid filters: {', '.join(filters)}")
    return filters[name]


def param_names(cls: type[Filter]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def threshold_names(cls: type[Filter]) -> list[str]:
    return [n for n in param_names(cls) if n not in cls.score_params]


def build(name: str, params: Mapping[str, Any] | None = None) -> Filter:
    """Instantiate filter ``name`` with ``params``, failing with the list of valid keys."""
    cls = get(name)
    params = dict(params or {})
    valid = param_names(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise CurateError(f"filter '{name}': unknown parameter(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(valid)}")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for key, value in params.items():
        _check_number(name, key, defaults[key], value)
    try:
        return cls(**{k: _freeze(v) for k, v in params.items()})
    except (TypeError, ValueError) as exc:
        raise CurateError(f"filter '{name}': {exc}") from None


def _check_number(name: str, key: str, default: Any, value: Any) -> None:
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise CurateError(f"filter '{name}': parameter {key} must be a number, got {value!r}")


def _freeze(value: Any) -> Any:
    """Lists from YAML become tuples so that filters stay immutable and hashable-ish."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def parse_spec(item: Any) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": {params}}`` (as written in YAML) -> ``(name, params)``."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and len(item) == 1:
        (name, params), = item.items()
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise CurateError(f"filter '{name}': parameters must be a mapping, got {params!r}")
        return str(name), dict(params)
    raise CurateError(f"a filter is a name or a one-key mapping {{name: {{params}}}}, got {item!r}")


def params_of(flt: Filter) -> dict[str, Any]:
    """The filter's parameters as plain JSON-able values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(flt).items()}


def read_word_list(path: str | Path) -> frozenset[str]:
    """One entry per line, lower-cased; blank lines and ``#`` comments ignored (cached per process)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise CurateError(f"cannot read word list {path}: {exc.strerror}") from None
    return _cached_word_list(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _cached_word_list(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip().lower() for w in lines if w.strip() and not w.lstrip().startswith("#"))
