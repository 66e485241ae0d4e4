"""Canonical URLs: one spelling per resource, so that URL dedup sees copies of a page as one.

Pure functions (stdlib only). :func:`canonical_url` applies, in this order:

- leading/trailing whitespace removed, and tabs/newlines inside the URL (WHATWG URL standard);
- scheme and host lower-cased; a trailing dot of the host removed; a non-ASCII host written
  in IDNA (punycode, ``bücher.example`` → ``xn--bcher-kva.example``) when the ``idna`` codec
  accepts it, else kept lower-cased; IPv6 hosts kept in brackets;
- the default port removed (``:80`` for http, ``:443`` for https); an invalid port makes the
  URL invalid;
- the fragment (``#…``) removed: it never reaches the server;
- the path: empty becomes ``/``; dot segments resolved (RFC 3986 §5.2.4); percent-encoding
  normalised (RFC 3986 §6.2.2: escapes of unreserved characters decoded, other escapes in
  upper case, spaces, controls and non-ASCII characters encoded as UTF-8 escapes, a stray
  ``%`` written ``%25``). A trailing slash is **kept as it is**: ``/a`` and ``/a/`` may be
  different resources (servers often redirect one to the other, but not always);
- the query: empty parameters dropped, tracking parameters (:data:`TRACKING_PREFIXES`,
  :data:`TRACKING_PARAMS`, matched case-insensitively on the name) removed, each parameter
  percent-normalised, then (``sort_query=True``, the default) sorted by name, stably, so
  repeated names keep their order (as the Internet Archive's SURT canonicaliser does:
  parameter order almost never selects a different page); an empty query loses its ``?``.

Left alone on purpose: ``http`` vs ``https`` and ``www.`` (they can serve different pages),
user info, duplicate slashes, ``index.html``. A string without a scheme and a host
(``example.com/a``, ``mailto:…``) is not an absolute URL: :func:`canonical_url` returns ``None``.
The function is idempotent: the canonical URL of a canonical URL is itself.
"""
from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

TRACKING_PREFIXES = ("utm_",)
"""Parameter names starting with these are removed (Google Analytics campaign tags: utm_source, …)."""

TRACKING_PARAMS = frozenset({
    # ad-click identifiers
    "gclid", "gclsrc", "dclid", "gbraid", "wbraid",  # Google Ads / DoubleClick
    "fbclid",  # Facebook
    "msclkid",  # Microsoft Advertising
    "yclid",  # Yandex
    "twclid",  # Twitter/X
    "ttclid",  # TikTok
    "li_fat_id",  # LinkedIn
    "igshid",  # Instagram share id
    # e-mail campaign identifiers
    "mc_cid", "mc_eid",  # Mailchimp
    "_hsenc", "_hsmi",  # HubSpot
    "mkt_tok",  # Marketo
    "vero_id", "vero_conv",  # Vero
    "oly_anon_id", "oly_enc_id",  # Omeda
    "_openstat",  # Openstat
    # server session identifiers
    "jsessionid", "phpsessid", "aspsessionid",
})
"""Parameter names (lower-case) removed from the query: click, campaign and session identifiers."""

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ALLOWED = UNRESERVED | frozenset("!$&'()*+,;=:@/?")  # RFC 3986 pchar, plus "/" and "?"
_HEX = frozenset(string.hexdigits)
_TABS_NEWLINES = re.compile(r"[\t\n\r]")
_HOST = re.compile(r"\[[0-9a-f:.]+\]|[^\x00-\x20\x7f\"#%/<>?@\[\\\]^`{|}]+")  # IPv6, or no forbidden host code point


def canonical_url(url: str | None, *, sort_query: bool = True) -> str | None:
    """The canonical form of ``url`` (see the module docstring), ``None`` if it is not an absolute URL."""
    if url is None:
        return None
    url = _TABS_NEWLINES.sub("", url.strip())
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:  # an invalid port or IPv6 literal
        return None
    scheme = parts.scheme.lower()
    if not scheme or not host:
        return None
    netloc = canonical_host(host)
    if not _HOST.fullmatch(netloc):
        return None
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        netloc = f"{normalize_percent(userinfo)}@{netloc}"
    path = normalize_percent(remove_dot_segments(parts.path)) or "/"
    query = canonical_query(parts.query, sort=sort_query)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def canonical_host(host: str) -> str:
    """Lower-case host without a trailing dot; IDNA (punycode) for non-ASCII names; IPv6 in brackets."""
    host = host.lower().rstrip(".")
    if ":" in host:  # an IPv6 literal (urlsplit removed the brackets)
        return f"[{host}]"
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:  # a label the IDNA 2003 codec refuses (too long, prohibited code points)
        return host


def is_tracking_param(name: str) -> bool:
    """True for a tracking parameter name (``utm_source``, ``gclid``, ``fbclid`` …), case-insensitively."""
    name = name.lower()
    return name.startswith(TRACKING_PREFIXES) or name in TRACKING_PARAMS


def canonical_query(query: str, *, sort: bool = True) -> str:
    """The query without empty or tracking parameters, percent-normalised, sorted by name if ``sort``."""
    params = []
    for piece in query.split("&"):
        if not piece:
            continue
        piece = normalize_percent(piece)
        name = piece.split("=", 1)[0]
        if not is_tracking_param(name):
            params.append((name, piece))
    if sort:
        params.sort(key=lambda p: p[0])
    return "&".join(piece for _name, piece in params)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4: resolve ``.`` and ``..`` segments (``/a/b/../c/./d`` → ``/a/c/d``)."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def normalize_percent(component: str) -> str:
    """RFC 3986 §6.2.2 percent-encoding normalisation of one URL component (see the module docstring)."""
    out: list[str] = []
    i, n = 0, len(component)
    while i < n:
        ch = component[i]
        if ch == "%":
            if i + 2 < n and component[i + 1] in _HEX and component[i + 2] in _HEX:
                byte = int(component[i + 1:i + 3], 16)
                decoded = chr(byte)
                out.append(decoded if decoded in UNRESERVED else f"%{byte:02X}")
                i += 3
                continue
            out.append("%25")
        elif ch in _ALLOWED:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)
