"""Contexts and batches from token shards.

Context ``c`` is the window of stream tokens ``[c·T, c·T + T + 1)`` (inputs and shifted
targets), so contexts are filled from the shards *in order*: documents that ``knn_order``
and ``curate mix`` placed next to each other share a context (In-Context Pretraining,
Shi et al. 2023). Which context a step sees is a seeded permutation per epoch, so
consecutive batches come from different parts of the stream (the same paper warns against
batches of one topic) and every context is seen exactly once per epoch.

Global sample ``g`` (counted over all ranks, micro-batches and steps) maps to epoch
``g // N`` and context ``perm_epoch[g % N]``; step ``s`` owns samples
``[s·G, (s+1)·G)`` with ``G = world · micro_batch · grad_accum``, and rank ``r`` takes a
disjoint slice of them. The data position is therefore just the step number.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from curate.core import CurateError
from curate.train.shards import TokenShards


@dataclass(frozen=True)
class Layout:
    """How a step's samples are split over ranks and micro-batches."""

    world: int
    micro_batch: int
    grad_accum: int

    @property
    def global_batch(self) -> int:
        return self.world * self.micro_batch * self.grad_accum

    def samples(self, step: int, micro: int, rank: int) -> np.ndarray:
        """Global sample indices of ``(step, micro, rank)``: disjoint for distinct triples."""
        start = step * self.global_batch + (micro * self.world + rank) * self.micro_batch
        return np.arange(start, start + self.micro_batch, dtype=np.int64)


class ContextStream:
    """Contexts ``[first, first + count)`` of a token stream, in a seeded order per epoch."""

    def __init__(self, shards: TokenShards, context: int, *, first: int = 0, count: int | None = None,
                 seed: int = 0):
        self.shards, self.context, self.seed, self.first = shards, context, seed, first
        total = (len(shards) - 1) // context
        self.count = total - first if count is None else count
        if self.count < 1 or first + self.count > total:
            raise CurateError(f"{shards.root}: {len(shards)} tokens give {total} contexts of {context}; "
                              "need more data or a shorter model.context")
        self._perm = lru_cache(maxsize=2)(self._permutation)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.count)

    def context_index(self, sample: int) -> int:
        epoch, i = divmod(int(sample), self.count)
        return self.first + int(self._perm(epoch)[i])

    def window(self, context_index: int) -> np.ndarray:
        start = context_index * self.context
        return self.shards.slice(start, start + self.context + 1)

    def batch(self, samples: np.ndarray) -> np.ndarray:
        """``(len(samples), T + 1)`` int64 windows."""
        return np.stack([self.window(self.context_index(s)) for s in samples])

    def sequential(self, batch_size: int, limit: int | None = None):
        """Contexts in stream order (for held-out loss), ``batch_size`` at a time."""
        n = self.count if limit is None else min(self.count, limit)
        for lo in range(0, n, batch_size):
            yield np.stack([self.window(self.first + c) for c in range(lo, min(lo + batch_size, n))])


class BatchLoader:
    """Yields ``(x, y)`` tensors for successive ``(step, micro)`` of one rank from ``start_step``.

    A background thread keeps ``prefetch`` batches ready; ``wait_seconds`` accumulates the time
    the training loop spent blocked on data.
    """

    def __init__(self, stream: ContextStream, layout: Layout, rank: int, start_step: int,
                 device: str = "cpu", prefetch: int = 2):
        self.stream, self.layout, self.rank, self.device = stream, layout, rank, device
        self.keys = ((s, m) for s in range(start_step, 1 << 62) for m in range(layout.grad_accum))
        self.prefetch = prefetch
        self.pool = ThreadPoolExecutor(max_workers=1) if prefetch > 0 else None
        self.queue: deque[Future] = deque()
        self.wait_seconds = 0.0

    def _load(self, key: tuple[int, int]):
        import torch

        windows = torch.from_numpy(self.stream.batch(self.layout.samples(key[0], key[1], self.rank)))
        if self.device.startswith("cuda"):
            windows = windows.pin_memory()
        return windows

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        if self.pool is None:
            windows = self._load(next(self.keys))
        else:
            while len(self.queue) <= self.prefetch:
                self.queue.append(self.pool.submit(self._load, next(self.keys)))
            windows = self.queue.popleft().result()
        windows = windows.to(self.device, non_blocking=True)
        self.wait_seconds += time.perf_counter() - t0
        return windows[:, :-1], windows[:, 1:]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
