"""``curate tokenize`` (token shards) and ``curate tokenizer train`` (byte-level BPE)."""
from __future__ import annotations

import click

from curate.commands._output_lease import output_lease, take_over_option


@click.command("tokenize")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("-t", "--tokenizer", required=True, type=click.Path(), help="tokenizer.json (or a dir holding one).")
@click.option("-o", "--output", required=True, help="Shard directory to write (a path or a URI).")
@click.option("--shard-tokens", default=1 << 26, show_default=True, help="Tokens per shard (cut at document ends).")
@click.option("--force", is_flag=True, help="Replace an existing shard directory.")
@click.option("--spark", "use_spark", is_flag=True, help="Encode with Spark, one task per shard (mixture input only).")
@click.option("--docs-per-shard", default=20_000, show_default=True, help="With --spark: documents per shard.")
@click.option("--master", default=None, help="With --spark: Spark master (default: $CURATE_SPARK_MASTER or local[*]).")
@take_over_option
def command(input_path, tokenizer, output, shard_tokens, force, use_spark, docs_per_shard, master, take_over):
    """Encode INPUT (a `curate mix` output, stage dir or JSONL/Parquet) into memory-mappable token shards."""
    from curate.train.mix import iter_mixture_texts
    from curate.train.shards import tokenize_spark, write_token_shards

    with output_lease(output, take_over=take_over, replaced_whole=True) as out:
        if use_spark:
            from curate.engine.spark import get_spark

            manifest = tokenize_spark(get_spark(master), input_path, tokenizer, out,
                                      docs_per_shard=docs_per_shard, overwrite=force)
        else:
            manifest = write_token_shards(iter_mixture_texts(input_path), tokenizer, out,
                                          shard_tokens=shard_tokens, source=str(input_path), overwrite=force)
    click.echo(f"{manifest['tokens']:,} tokens, {manifest['documents']:,} documents, "
               f"{len(manifest['shards'])} shard(s) ({manifest['dtype']}) -> {output}")


@click.group("tokenizer")
def tokenizer():
    """Train tokenizers for `curate tokenize`."""


@tokenizer.command("train")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="tokenizer.json to write.")
@click.option("--vocab-size", default=32000, show_default=True)
@click.option("--min-frequency", default=2, show_default=True)
@click.option("--sample-fraction", default=1.0, show_default=True, help="Seeded share of documents to train on.")
@click.option("--max-chars", default=1_000_000_000, show_default=True, help="Stop sampling after this many characters.")
@click.option("--seed", default=0, show_default=True)
def train_command(input_path, output, vocab_size, min_frequency, sample_fraction, max_chars, seed):
    """Train a byte-level BPE on a sample of INPUT (mixture, stage dir or JSONL/Parquet)."""
    from curate.train.mix import iter_mixture_texts
    from curate.train.tokenizer import sample_texts, train_tokenizer

    texts = sample_texts(iter_mixture_texts(input_path), fraction=sample_fraction, max_chars=max_chars,
                         seed=seed)
    path = train_tokenizer(texts, output, vocab_size=vocab_size, min_frequency=min_frequency)
    click.echo(f"wrote {path} (+ .sha256)")


commands = [command, tokenizer]
