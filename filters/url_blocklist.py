"""URL block lists: drop documents whose ``url`` is on a domain list or contains a listed substring.

The RefinedWeb (Penedo et al. 2023, Sec. G.1) and FineWeb pipelines start with such a
URL filter (e.g. the UT1 blocklist). Lists are plain text files named in the YAML, one
entry per line (``#`` comments allowed); a domain entry also blocks its subdomains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping
from urllib.parse import urlsplit

from filters import Filter, read_word_list, register


def host_of(url: str) -> str:
    """Lower-case host name of ``url`` ('' when it has none); tolerates scheme-less URLs."""
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        return (parts.hostname or "").rstrip(".")
    except ValueError:
        return ""


def parent_domains(host: str) -> list[str]:
    """``a.b.example.com`` -> ``[a.b.example.com, b.example.com, example.com, com]``."""
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))] if host else []


@register("url_blocklist")
@dataclass(frozen=True)
class UrlBlocklist(Filter):
    """Block documents by URL domain (and its subdomains) or URL substring."""

    domains_file: str | None = None
    substrings_file: str | None = None

    keys: ClassVar[tuple[str, ...]] = ("blocked_domain", "blocked_substring")
    inputs: ClassVar[tuple[str, ...]] = ("url",)
    score_params: ClassVar[tuple[str, ...]] = ("domains_file", "substrings_file")
    path_params: ClassVar[tuple[str, ...]] = ("domains_file", "substrings_file")

    def _lists(self) -> tuple[frozenset[str], frozenset[str]]:
        domains = read_word_list(self.domains_file) if self.domains_file else frozenset()
        substrings = read_word_list(self.substrings_file) if self.substrings_file else frozenset()
        return domains, substrings

    def setup(self) -> None:
        self._lists()

    def score(self, doc: Mapping[str, Any]) -> dict[str, float]:
        url = (doc.get("url") or "").strip().lower()
        domains, substrings = self._lists()
        blocked_domain = any(d in domains for d in parent_domains(host_of(url))) if url else False
        blocked_substring = any(s in url for s in substrings) if url else False
        return {"blocked_domain": float(blocked_domain), "blocked_substring": float(blocked_substring)}

    def reject(self, s: Mapping[str, Any]) -> str | None:
        if s["blocked_domain"]:
            return "domain"
        if s["blocked_substring"]:
            return "substring"
        return None
