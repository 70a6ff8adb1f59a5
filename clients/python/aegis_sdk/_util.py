"""Small pure helpers shared by the client, token sources and verifier."""
from __future__ import annotations

import email.utils
import re
import time
import urllib.parse
from typing import Any, Callable

MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3) in seconds, capped at one hour so a
    hostile header cannot park a client forever; None when absent or bad."""
    if value is None:
        return None
    v = value.strip()
    if re.fullmatch(r"\d{1,10}", v):
        secs = float(v)
    else:
        try:
            at = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError):
            return None
        if at is None:
            return None
        secs = at.timestamp() - now()
    return min(max(0.0, secs), MAX_RETRY_AFTER)


def backoff_delay(attempt: int, base: float, cap: float, random: Callable[[], float], retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than ``Retry-After``."""
    ceiling = min(cap, base * (2 ** attempt))
    jittered = random() * ceiling
    return jittered if retry_after is None else max(retry_after, jittered)


_CHALLENGE = re.compile(r'(?:^|[\s,])error\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)


def bearer_challenge_error(header: str | None) -> str | None:
    """The ``error`` of a ``WWW-Authenticate: Bearer …`` challenge (RFC 6750 §3)."""
    if not header:
        return None
    m = _CHALLENGE.search(header)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def bounded_text(v: Any, limit: int = 500) -> str | None:
    return v[:limit] if isinstance(v, str) else None


def strip_slash(v: str) -> str:
    return v[:-1] if v.endswith("/") else v


def is_http_url(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        u = urllib.parse.urlsplit(v)
    except ValueError:
        return False
    return u.scheme in ("http", "https") and bool(u.netloc)


def origin_of(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    host = (u.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = u.port
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port is None or port == default else f"{scheme}://{host}:{port}"


def well_known_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between host and path."""
    u = urllib.parse.urlsplit(issuer)
    path = strip_slash(u.path)
    return f"{u.scheme}://{u.netloc}/.well-known/oauth-authorization-server{path}"
