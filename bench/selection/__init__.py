"""Selection benchmark: do curate's selectors train better small models than random data?

One command builds a pool of real text and a benchmark-defined target, runs every selector at
one token budget, trains the same small model on each selection with several seeds
(``curate ablate``) and writes a results page to docs/. See docs/selection_benchmark.md.

    .venv/bin/python -m bench.selection --preset default
"""
