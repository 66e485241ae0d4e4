"""Benchmark example files as text: field templates, split handling, equal numbers per benchmark.

A *target* names a JSONL file of benchmark records and how to turn a record into text::

    {path: benchmarks/mmlu_dev.jsonl, template: "{question} {choices}", where: {subject: [astronomy]}}
    {path: benchmarks/arc_easy.jsonl, split: test}     # records without a `split` field

A record's split is its own ``split`` field, else the target's ``split``; a record whose split
is unknown is an error (never guessed). BETR uses training/dev splits only; decontamination
uses test splits. Benchmark files are small: they are read on the driver.
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from curate.core import CurateError
from curate.io import jsonl

TRAINING_SPLITS = ("train", "dev", "val", "validation")
TEST_SPLITS = ("test",)
# Fields joined (in this order) when a target has no template.
DEFAULT_FIELDS = ("question", "query", "context", "prompt", "passage", "context_options",
                  "choices", "continuation")
SPEC_KEYS = ("path", "name", "template", "split", "where")


@dataclass(frozen=True)
class BenchmarkSpec:
    path: Path
    name: str | None = None
    template: str | None = None
    split: str | None = None
    where: Mapping[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    benchmark: str
    id: str
    split: str
    text: str


def parse_specs(targets: Sequence[str | Mapping[str, Any]] | None,
                resolve: Callable[[str], Path] = Path) -> list[BenchmarkSpec]:
    """Targets from YAML (a path, or a mapping with path/name/template/split/where) → specs."""
    if not targets:
        raise CurateError("no benchmark targets given; list files such as {path: mmlu_dev.jsonl}")
    specs = []
    for target in targets:
        item = {"path": target} if isinstance(target, (str, Path)) else dict(target)
        unknown = sorted(set(item) - set(SPEC_KEYS))
        if unknown or "path" not in item:
            raise CurateError(f"benchmark target {target!r}: keys are {', '.join(SPEC_KEYS)} "
                              f"(path required){'; unknown: ' + ', '.join(unknown) if unknown else ''}")
        where = {k: tuple(v if isinstance(v, (list, tuple)) else [v])
                 for k, v in (item.get("where") or {}).items()}
        path = Path(resolve(str(item["path"])))
        if not path.is_file():
            raise CurateError(f"benchmark file not found: {path}")
        specs.append(BenchmarkSpec(path, item.get("name"), item.get("template"), item.get("split"), where))
    return specs


def render(record: Mapping[str, Any], template: str | None) -> str:
    """Join a record's fields into text: ``template`` placeholders, or the default fields.

    List values (choices) are joined with spaces.
    """
    if template is None:
        return "\n".join(_as_text(record[f]) for f in DEFAULT_FIELDS if record.get(f) not in (None, "", []))
    names = [fname for _, fname, _, _ in string.Formatter().parse(template) if fname]
    missing = [n for n in names if n not in record]
    if missing:
        raise CurateError(f"template field(s) {', '.join(missing)} not in the record; "
                          f"available: {', '.join(record)}")
    return template.format_map({n: _as_text(record[n]) for n in names})


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    return "" if value is None else str(value)


def read_records(path: Path) -> Iterable[dict]:
    return (record for _, record in jsonl.read_records(path))


def load_examples(spec: BenchmarkSpec, splits: Sequence[str]) -> list[Example]:
    """The examples of one target whose split is in ``splits`` (and that match ``where``)."""
    examples = []
    for number, record in enumerate(read_records(spec.path)):
        if any(record.get(k) not in allowed for k, allowed in spec.where.items()):
            continue
        split = record.get("split") or spec.split
        if split is None:
            raise CurateError(f"{spec.path.name}: records have no 'split' field; declare the file's "
                              "split in the target, e.g. {path: ..., split: test}")
        if split not in splits:
            continue
        name = spec.name or record.get("benchmark") or spec.path.stem
        example_id = str(record.get("id", f"{spec.path.stem}-{number}"))
        examples.append(Example(str(name), example_id, str(split), render(record, spec.template)))
    return examples


def load_benchmarks(specs: Sequence[BenchmarkSpec], splits: Sequence[str]) -> list[Example]:
    """All examples of all targets in ``splits``; a target with none is an error."""
    examples = []
    for spec in specs:
        found = load_examples(spec, splits)
        if not found:
            raise CurateError(f"{spec.path.name}: no examples with split in ({', '.join(splits)})"
                              f"{' matching ' + str(dict(spec.where)) if spec.where else ''}")
        examples.extend(found)
    return examples


def stable_hash(key: str, seed: int) -> int:
    """A 64-bit hash of ``key`` salted with ``seed`` (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), "big")


def balance(examples: Sequence[Example], per_benchmark: int | None, seed: int) -> list[Example]:
    """The same number of examples from every benchmark, chosen by seeded hash of the id.

    ``per_benchmark`` is capped at the smallest benchmark's size (``None``: that size).
    """
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.benchmark, []).append(example)
    smallest = min((len(g) for g in groups.values()), default=0)
    take = smallest if per_benchmark is None else min(int(per_benchmark), smallest)
    chosen = []
    for name in sorted(groups):
        ranked = sorted(groups[name], key=lambda e: (stable_hash(e.id, seed), e.id))
        chosen.extend(ranked[:take])
    return chosen
