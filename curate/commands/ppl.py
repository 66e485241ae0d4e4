"""``curate ppl-matrix``: bits-per-byte of a document sample under local causal LMs (single process)."""
from __future__ import annotations

from pathlib import Path

import click

from curate.core import CurateError


def read_sample(path: Path, id_field: str, text_field: str, carry: tuple[str, ...]):
    """A (small) sample from JSONL (.gz/.zst) or Parquet as a DataFrame with ``id``, ``text`` and ``carry``."""
    import pandas as pd

    if not path.exists():
        raise CurateError(f"sample not found: {path}")
    name = path.name.lower()
    if path.is_dir() or name.endswith(".parquet"):
        frame = pd.read_parquet(path)
    elif any(name.endswith(s) for s in (".jsonl", ".json", ".jsonl.gz", ".jsonl.zst", ".json.gz")):
        frame = pd.read_json(path, lines=True, dtype=False)
    else:
        raise CurateError(f"{path}: expected .jsonl[.gz|.zst] or .parquet (file or directory)")
    missing = [c for c in (id_field, text_field, *carry) if c not in frame.columns]
    if missing:
        raise CurateError(f"{path}: missing field(s) {', '.join(missing)}; has {', '.join(map(str, frame.columns))}")
    frame = frame.rename(columns={id_field: "id", text_field: "text"})
    return frame.assign(id=frame["id"].astype(str))[["id", "text", *carry]]


@click.command("ppl-matrix")
@click.option("--models", "first_model", required=True, metavar="[NAME=]DIR",
              help="Local Hugging Face model directories (safetensors); list them after --models.")
@click.argument("more_models", nargs=-1, metavar="[[NAME=]DIR]...")
@click.option("--input", "input_path", required=True, type=click.Path(), help="Sample: JSONL(.gz) or Parquet.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="MATRIX.parquet; models already in it are skipped (resume).")
@click.option("--id-field", default="id", show_default=True)
@click.option("--text-field", default="text", show_default=True)
@click.option("--domain-column", "carry", multiple=True, metavar="COL",
              help="Column(s) to carry into the matrix (e.g. source) for domain aggregation.")
@click.option("--max-length", type=int, default=None, help="Window length in tokens (default: the model's context).")
@click.option("--stride", type=int, default=None, help="Tokens a window advances (default: half the window).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available).")
def command(first_model, more_models, input_path, output, id_field, text_field, carry, max_length, stride,
            batch_size, device):
    """Bits-per-byte of every sample text under each model → MATRIX.parquet (Thrush et al. 2024).

    \b
    curate ppl-matrix --models pythia-160m=/models/pythia-160m /models/qwen2-0.5b \\
        --input sample.jsonl -o matrix.parquet
    """
    from curate.pplcorr import lossmatrix as lm

    docs = read_sample(Path(input_path), id_field, text_field, tuple(carry))
    specs = [lm.parse_model(m) for m in (first_model, *more_models)]
    matrix = lm.build_matrix(docs, specs, Path(output), carry=tuple(carry), device=device,
                             max_length=max_length, stride=stride, batch_size=batch_size,
                             log=lambda line: click.echo(line, err=True))
    names = lm.model_names(matrix)
    click.echo(f"wrote {output}: {len(matrix)} texts × {len(names)} models ({', '.join(names)})")
