"""PII redaction modifier: e-mail addresses, public IP addresses and (optionally) phone numbers.

Follows the practice of The Pile / BigScience ROOTS / StarCoder PII pipelines: replace
matches with type placeholders and count them. IP addresses are only redacted when
``ipaddress`` says they are globally routable (private, loopback, link-local, reserved and
documentation ranges are kept: they identify nobody). Regexes are anchored on token
boundaries so matching stays linear on long inputs.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

from filters import Modifier, register

EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?!\w)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)(?![\w:])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)")


def is_public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


def _redact(pattern: re.Pattern, text: str, placeholder: str, accept=None) -> tuple[str, int]:
    """Replace accepted matches of ``pattern`` by ``placeholder``; return the text and the count."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        if accept is not None and not accept(match.group(0)):
            return match.group(0)
        count += 1
        return placeholder

    return pattern.sub(replace, text), count


@register("pii")
@dataclass(frozen=True)
class Pii(Modifier):
    """Redact e-mails, public IPv4/IPv6 addresses and optionally phone numbers; count each type."""

    emails: bool = True
    ips: bool = True
    phones: bool = False
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE>"

    keys: ClassVar[tuple[str, ...]] = ("emails", "ipv4", "ipv6", "phones")
    score_params: ClassVar[tuple[str, ...]] = ("emails", "ips", "phones", "email_placeholder",
                                               "ip_placeholder", "phone_placeholder")

    def apply(self, text: str) -> tuple[str, dict[str, float]]:
        counts = dict.fromkeys(self.keys, 0.0)
        if self.emails and "@" in text:
            text, n = _redact(EMAIL, text, self.email_placeholder)
            counts["emails"] = float(n)
        if self.ips:
            if "." in text:
                text, n = _redact(IPV4, text, self.ip_placeholder, is_public_ip)
                counts["ipv4"] = float(n)
            if ":" in text:
                text, n = _redact(IPV6, text, self.ip_placeholder, is_public_ip)
                counts["ipv6"] = float(n)
        if self.phones:
            text, n = _redact(PHONE, text, self.phone_placeholder)
            counts["phones"] = float(n)
        return text, counts
