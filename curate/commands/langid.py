"""``curate langid train``: build a fastText language-ID model for the ``lang_id`` filter."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import click

from curate.core import CurateError


def field_of(record: Mapping[str, Any], dotted: str) -> Any:
    """``field_of(r, "meta.lang")`` reads nested keys."""
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def labelled_examples(path: Path, text_field: str, language_field: str) -> list[tuple[str, str]]:
    """``(language, one-line text)`` pairs from a JSONL file (.gz ok); bad lines fail loudly."""
    from curate.io.jsonl import read_records

    examples = []
    for number, record in read_records(path):
        text, language = field_of(record, text_field), field_of(record, language_field)
        if not isinstance(text, str) or not isinstance(language, str) or not language.strip():
            raise CurateError(f"{path}:{number}: needs string fields '{text_field}' and '{language_field}'")
        examples.append((language.strip(), " ".join(text.split())))
    if not examples:
        raise CurateError(f"{path}: no examples")
    return examples


def is_validation(text: str, fraction: float, seed: int) -> bool:
    """Deterministic hash split: the same text always lands on the same side."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def train_langid(examples: Iterable[tuple[str, str]], out: str | Path, *, dim: int = 16, epoch: int = 50,
                 lr: float = 0.5, minn: int = 2, maxn: int = 5, word_ngrams: int = 1,
                 bucket: int = 2_000_000, seed: int = 0, valid_fraction: float = 0.0) -> dict[str, Any]:
    """Train a supervised fastText model with ``__label__<language>`` labels on character n-grams
    (as lid.176: Joulin et al. 2017). Seeded, single-threaded and trained in a fresh process
    (:func:`curate.quality.classifier.train_fasttext_isolated`), so the same examples give the same
    bytes; the ``out.sha256`` sidecar pins them. Returns counts and the held-out accuracy."""
    import fasttext

    from curate.integrity import atomic_file, write_sidecar
    from curate.quality.classifier import train_fasttext_isolated
    from filters.lang_id import LABEL_PREFIX

    train, valid = [], []
    for language, text in examples:
        text = " ".join(text.split())  # fastText reads one example per line
        if text:
            (valid if is_validation(text, valid_fraction, seed) else train).append((language, text))
    if not train:
        raise CurateError("langid train: no training text")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("".join(f"{LABEL_PREFIX}{lang} {text}\n" for lang, text in train), encoding="utf-8")
        staged = Path(tmp) / "model.bin"
        try:
            train_fasttext_isolated(data, staged, dim=dim, epoch=epoch, lr=lr, minn=minn, maxn=maxn,
                                    wordNgrams=word_ngrams, bucket=bucket, thread=1, seed=seed, verbose=0)
        except RuntimeError as exc:
            raise CurateError(f"langid train: fastText diverged ({exc}); lower --lr") from None
        model = fasttext.load_model(str(staged))
        with atomic_file(out) as final:
            shutil.move(staged, final)
            write_sidecar(final, out)
    report = {"model": str(out), "train": len(train), "valid": len(valid),
              "languages": len({lang for lang, _ in train}), "valid_accuracy": None}
    if valid:
        labels, _ = model.predict([text for _, text in valid], k=1)
        hits = sum(lab[0] == LABEL_PREFIX + lang for lab, (lang, _) in zip(labels, valid))
        report["valid_accuracy"] = hits / len(valid)
    return report


@click.group("langid")
def command():
    """Language identification models for the lang_id filter."""


@command.command("train")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model file to write (a .sha256 sidecar is written next to it).")
@click.option("--text-field", default="text", show_default=True, help="JSON field with the text (dotted for nested).")
@click.option("--language-field", default="language", show_default=True,
              help="JSON field with the language code, e.g. meta.lang.")
@click.option("--dim", default=16, show_default=True)
@click.option("--epoch", default=50, show_default=True)
@click.option("--lr", default=0.5, show_default=True)
@click.option("--minn", default=2, show_default=True, help="Shortest character n-gram.")
@click.option("--maxn", default=5, show_default=True, help="Longest character n-gram.")
@click.option("--bucket", default=2_000_000, show_default=True, help="Hash buckets for n-grams (model size).")
@click.option("--seed", default=0, show_default=True)
@click.option("--valid-fraction", default=0.1, show_default=True, help="Held out (by text hash) to report accuracy.")
def train(input_path, output, text_field, language_field, dim, epoch, lr, minn, maxn, bucket, seed, valid_fraction):
    """Train a fastText language-ID model from a JSONL file with text and language fields."""
    examples = labelled_examples(input_path, text_field, language_field)
    report = train_langid(examples, output, dim=dim, epoch=epoch, lr=lr, minn=minn, maxn=maxn, bucket=bucket,
                          seed=seed, valid_fraction=valid_fraction)
    accuracy = report["valid_accuracy"]
    click.echo(f"wrote {report['model']} ({report['languages']} languages, {report['train']:,} training texts"
               + (f", held-out accuracy {accuracy:.3f} on {report['valid']:,})" if accuracy is not None else ")"))
