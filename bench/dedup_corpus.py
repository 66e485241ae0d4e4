"""A near-duplicate corpus with known ground truth, built from ../shared/data at run time.

Used by bench/dedup.py and by the correctness tests (tests import it by path). Nothing
from shared data is ever written into the repository.
"""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

BOILERPLATE = ("Subscribe to our newsletter for the latest updates. "
               "All rights reserved. Terms of use and privacy policy apply.")
CORPORA = ("reuters21578.jsonl.gz", "nltk_abc.jsonl", "nltk_movie_reviews.jsonl", "nltk_webtext.jsonl")


def read_corpus(data: Path, name: str, limit: int | None = None) -> list[dict]:
    path = Path(data) / "corpora" / name
    opener = gzip.open if name.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            rows.append({"id": doc["id"], "text": doc["text"]})
            if limit is not None and len(rows) >= limit:
                break
    return rows


def near_copy(text: str, rate: float, rng: random.Random, boilerplate: bool = False) -> str:
    """Edit ``rate`` of the words: insertions, deletions and substitutions in equal measure."""
    words = text.split()
    vocab = words or ["word"]
    for _ in range(max(1, round(rate * len(words)))):
        op, pos = rng.randrange(3), rng.randrange(len(words) + 1)
        if op == 0 or not words:
            words.insert(pos, rng.choice(vocab))
        elif op == 1:
            del words[min(pos, len(words) - 1)]
        else:
            words[min(pos, len(words) - 1)] = rng.choice(vocab)
    edited = " ".join(words)
    return f"{edited}\n{BOILERPLATE}" if boilerplate else edited


def build(data: Path, n_sources: int, copies_per_source: int = 1, copy_fraction: float = 0.4,
          max_rate: float = 0.2, seed: int = 0, min_words: int = 30) -> list[dict]:
    """Real documents plus edited near-copies of a ``copy_fraction`` of them.

    A copy's id is ``<source id>~<k>`` so the generating relation is visible; rates are
    uniform in [0.01, max_rate], a quarter of copies also get boilerplate appended.
    """
    rng = random.Random(seed)
    pool = [d for name in CORPORA for d in read_corpus(data, name)
            if len(d["text"].split()) >= min_words]
    rng.shuffle(pool)
    sources = sorted(pool[:n_sources], key=lambda d: d["id"])
    docs = list(sources)
    for src in sources:
        if rng.random() >= copy_fraction:
            continue
        for k in range(copies_per_source):
            rate = rng.uniform(0.01, max_rate)
            docs.append({"id": f"{src['id']}~{k}",
                         "text": near_copy(src["text"], rate, rng, boilerplate=rng.random() < 0.25)})
    return docs


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self) -> dict[str, str]:
        """node -> smallest node of its component."""
        return {x: self.find(x) for x in self.parent}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def exact_pairs(sets: dict[str, set], threshold: float) -> list[tuple[str, str, float]]:
    """All pairs with Jaccard >= threshold, exactly (prefix filtering, Bayardo et al. 2007).

    Tokens are ordered rarest first; two sets reach ``threshold`` only if they share a
    token among the first ``|x| - ceil(t |x|) + 1`` of the larger set's order, so
    indexing prefixes finds every such pair; each candidate is then checked exactly.
    """
    import math
    from collections import Counter

    freq = Counter(t for s in sets.values() for t in s)
    ordered = {k: sorted(s, key=lambda t: (freq[t], t)) for k, s in sets.items()}
    index: dict = {}
    found = []
    for key in sorted(sets, key=lambda k: (len(sets[k]), k)):
        toks = ordered[key]
        prefix = toks[: len(toks) - math.ceil(threshold * len(toks)) + 1]
        seen = set()
        for t in prefix:
            for other in index.get(t, ()):
                if other in seen or len(sets[other]) < threshold * len(toks):
                    continue
                seen.add(other)
                j = jaccard(sets[key], sets[other])
                if j >= threshold:
                    found.append((min(key, other), max(key, other), j))
        for t in prefix:
            index.setdefault(t, []).append(key)
    return found
