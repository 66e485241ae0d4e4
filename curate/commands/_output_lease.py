"""The output lease of the writing commands besides ``curate run`` (``mix``, ``tokenize``,
``train``, ``ablate``): one run per output, as for pipelines (:mod:`curate.engine.lease`).

Not a command itself (no ``command`` attribute): the CLI's discovery skips it.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click

take_over_option = click.option(
    "--take-over", is_flag=True,
    help="Take the output's lease from another run (only when that run is known to be dead).")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def output_lease(output: str | Path, *, take_over: bool, replaced_whole: bool = False) -> Iterator[str]:
    """Check the store, take the lease on ``output`` and yield its absolute location; every
    publish in the block first checks the lease is still ours. A second command on the same
    output fails at once (exit 2) with one line naming the holder.

    Under ``torchrun`` only rank 0 holds it (the other ranks are started by the same launch).
    """
    from curate.engine import lease
    from curate.io import fs
    from curate.train import store

    uri = fs.resolve(output, Path.cwd())
    fs.check_reachable(uri, for_writing=True)
    if int(os.environ.get("RANK", "0")) != 0:
        yield uri
        return
    with lease.holding(uri, take_over=take_over, replaced_whole=replaced_whole, log=_stderr) as held, \
            store.guarded(held.check):
        yield uri
