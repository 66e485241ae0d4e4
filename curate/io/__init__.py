"""Corpus I/O: raw readers, side-file parsing, shard writers."""
