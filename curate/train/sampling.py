"""Seeded hashing: the only source of randomness in mixtures and tokenizer samples."""
from __future__ import annotations

import hashlib


def seeded_hash64(seed: int, *parts: object) -> int:
    """A 64-bit integer hash of ``(seed, *parts)``, the same on every machine and run."""
    digest = hashlib.blake2b(repr((seed,) + parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
