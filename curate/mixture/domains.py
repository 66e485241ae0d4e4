"""Pure helpers of the ``domain_label`` stage: URL host rules and seeded spherical k-means."""
from __future__ import annotations

import fnmatch
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from curate.core import CurateError
from curate.io.vectors import spherical_centroids
from curate.web.urls import canonical_host


def parse_rules(rules: Mapping[str, Sequence[str] | str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``{domain: [host pattern, ...]}`` → ordered ``((domain, patterns), ...)``; bad shapes fail clearly."""
    if not isinstance(rules, Mapping) or not rules:
        raise CurateError("domain_label: 'rules' must be a mapping {domain: [host pattern, ...]}")
    parsed = []
    for domain, patterns in rules.items():
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not isinstance(patterns, (list, tuple)) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise CurateError(f"domain_label: rules['{domain}'] must be a host pattern or a list of them")
        parsed.append((str(domain), tuple(p.strip().lower() for p in patterns)))
    return tuple(parsed)


def url_host(url: str | None) -> str | None:
    """The canonical host of ``url`` (lower case, no trailing dot, IDNA), None when it has none."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return canonical_host(host) if host else None


def host_matches(host: str, pattern: str) -> bool:
    """A glob (``*.gov``, ``news.*``) matches the whole host; a plain name (``bbc.co.uk``)
    matches that host and its subdomains."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(host, pattern)
    return host == pattern or host.endswith("." + pattern)


def domain_of_url(url: str | None, rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    """The first domain (in rule order) with a pattern matching the URL's host; None if none does."""
    host = url_host(url)
    if host is None:
        return None
    for domain, patterns in rules:
        if any(host_matches(host, p) for p in patterns):
            return domain
    return None


def kmeans_centroids(sample: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Spherical k-means centroids of ``sample``'s rows (at least ``k`` of them)."""
    if len(sample) < k:
        raise CurateError(f"domain_label: {k} clusters need at least {k} documents with embeddings "
                          f"(got {len(sample)}); lower 'clusters'")
    return spherical_centroids(sample, k, seed, "domain_label", iterations)


def cluster_name(index: int, k: int) -> str:
    """``cluster_03``: zero-padded so names sort in cluster order."""
    return f"cluster_{index:0{max(2, len(str(k - 1)))}d}"
