"""Canonical URLs (curate/web/urls.py) on real URLs: the project URLs in the metadata of the
installed packages (always present), and the URLs quoted in the Python 3.11 documentation
(../shared/data/corpora/python_docs.jsonl, PSF License)."""
from __future__ import annotations

import importlib.metadata
import re

import pytest
from helpers import read_jsonl

from curate.web.urls import canonical_url, is_tracking_param, normalize_percent, remove_dot_segments

URL_IN_TEXT = re.compile(r"https?://[^\s<>`'\"()\[\]{}|\\^]+")


def package_urls() -> list[str]:
    """Home-page and Project-URL values of every installed distribution."""
    urls = set()
    for dist in importlib.metadata.distributions():
        urls.update(v.split(",", 1)[-1].strip() for v in dist.metadata.get_all("Project-URL") or [])
        if dist.metadata.get("Home-page"):
            urls.add(dist.metadata["Home-page"].strip())
    return sorted(u for u in urls if u.startswith(("http://", "https://")))


@pytest.mark.parametrize("url, expected", [
    # scheme and host case, default port, fragment
    ("HTTPS://Docs.Python.org:443/3/library/os.html#os.path", "https://docs.python.org/3/library/os.html"),
    ("http://www.python.org:80", "http://www.python.org/"),
    ("http://docs.python.org:80/3/library/urllib.parse.html?", "http://docs.python.org/3/library/urllib.parse.html"),
    ("https://pypi.org:8443/project/pyspark/", "https://pypi.org:8443/project/pyspark/"),
    ("http://pypi.org:443/", "http://pypi.org:443/"),  # 443 is not http's default
    ("https://www.python.org./", "https://www.python.org/"),
    # tracking parameters removed, the rest sorted by name (stable for repeated names)
    ("https://github.com/apache/spark?utm_source=pypi&UTM_Medium=web&fbclid=IwAR0x&tab=readme-ov-file",
     "https://github.com/apache/spark?tab=readme-ov-file"),
    ("https://www.google.com/search?q=pyspark&hl=en&gclid=Cj0KCQ", "https://www.google.com/search?hl=en&q=pyspark"),
    ("https://github.com/search?type=code&q=a&q=b&&", "https://github.com/search?q=a&q=b&type=code"),
    ("https://pypi.org/project/pyspark/?utm_source=x&utm_campaign=y", "https://pypi.org/project/pyspark/"),
    # percent-encoding: unreserved escapes decoded, others upper-case, non-ASCII encoded
    ("https://en.wikipedia.org/wiki/Caf%c3%a9", "https://en.wikipedia.org/wiki/Caf%C3%A9"),
    ("https://en.wikipedia.org/wiki/Café", "https://en.wikipedia.org/wiki/Caf%C3%A9"),
    ("http://catb.org/%7Eesr/trove/", "http://catb.org/~esr/trove/"),
    ("https://en.wikipedia.org/wiki/C_(programming language)", "https://en.wikipedia.org/wiki/C_(programming%20language)"),
    ("https://en.wikipedia.org/wiki/100%_pure", "https://en.wikipedia.org/wiki/100%25_pure"),
    ("https://www.google.com/search?q=a%26b", "https://www.google.com/search?q=a%26b"),  # an encoded & stays encoded
    # IDN host to punycode
    ("https://Bücher.de/", "https://xn--bcher-kva.de/"),
    # dot segments; the trailing slash is kept as written
    ("https://docs.python.org/3/library/../tutorial/./index.html", "https://docs.python.org/3/tutorial/index.html"),
    ("https://docs.python.org/3", "https://docs.python.org/3"),
    ("https://docs.python.org/3/", "https://docs.python.org/3/"),
    ("https://docs.python.org/3/..", "https://docs.python.org/"),
    # whitespace around and tabs/newlines inside
    ("  https://docs.python.org/3/\n", "https://docs.python.org/3/"),
    ("https://docs.py\tthon.org/3/", "https://docs.python.org/3/"),
    # user info kept; IPv6 literal
    ("http://user@Example.com/", "http://user@example.com/"),
    ("http://[2001:DB8::1]:80/a", "http://[2001:db8::1]/a"),
])
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected
    assert canonical_url(expected) == expected


@pytest.mark.parametrize("url", [
    None, "", "   ", "docs.python.org/3/", "mailto:webmaster@python.org", "javascript:void(0)",
    "http://docs.python.org:99999/", "http://[::1", "http://user:pass@host:port/path", "http://exa mple.com/",
    "/3/library/os.html",
])
def test_not_an_absolute_url(url):
    assert canonical_url(url) is None


def test_what_is_left_alone():
    assert canonical_url("http://www.python.org/") != canonical_url("https://www.python.org/")
    assert canonical_url("https://python.org/") != canonical_url("https://www.python.org/")
    assert canonical_url("https://docs.python.org/3") != canonical_url("https://docs.python.org/3/")
    assert canonical_url("https://www.google.com/search?q=pyspark&hl=en", sort_query=False) == \
        "https://www.google.com/search?q=pyspark&hl=en"


def test_helpers():
    assert [is_tracking_param(n) for n in ("utm_source", "UTM_TERM", "gclid", "FBCLID", "q", "utm", "page")] == \
        [True, True, True, True, False, False, False]
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"  # RFC 3986 §5.2.4 example
    assert remove_dot_segments("/../a") == "/a"
    assert normalize_percent("%7e%41%2f%zz") == "~A%2F%25zz"


def check_real_url(url: str) -> str:
    canonical = canonical_url(url)
    assert canonical is not None, url
    assert canonical_url(canonical) == canonical, url  # idempotent
    scheme, rest = canonical.split("://", 1)
    host = rest.split("/", 1)[0]
    assert scheme == scheme.lower() and host == host.lower() and "#" not in canonical, url
    assert "utm_" not in canonical.lower()
    # the same page spelled differently has the same canonical URL
    loud = re.sub(r"^[a-z]+://[^/?#]+", lambda m: m.group(0).upper(), url)
    assert canonical_url(loud) == canonical, loud
    tagged = url.split("#")[0] + ("&" if "?" in url else "?") + "utm_source=newsletter&fbclid=IwAR2#section"
    assert canonical_url(tagged) == canonical, tagged
    return canonical


def test_real_package_urls():
    urls = package_urls()
    assert len(urls) > 100  # pyspark, numpy, torch … all declare project URLs
    for url in urls:
        check_real_url(url)


def test_real_urls_in_the_python_docs(shared_data):
    found = set()
    for doc in read_jsonl(shared_data / "corpora" / "python_docs.jsonl"):
        found.update(u.rstrip(".,;:") for u in URL_IN_TEXT.findall(doc["text"]))
    found.discard("http://user:pass@host:port/path")  # a template in the urllib docs, not a URL
    assert len(found) > 1000
    canonical = {u: check_real_url(u) for u in sorted(found)}
    assert canonical["http://docs.python.org:80/3/library/urllib.parse.html?highlight=params"] == \
        "http://docs.python.org/3/library/urllib.parse.html?highlight=params"
    assert canonical["http://python.org/about/#target"] == "http://python.org/about/"
    assert sum(c != u for u, c in canonical.items()) > 100
