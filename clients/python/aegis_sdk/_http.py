"""The SDK's HTTP plumbing: a tiny transport interface over ``urllib``.

A transport is anything with ``request(method, url, headers, body, timeout)``
returning a :class:`Response`; tests, DPoP and mTLS wrap or replace it.
Redirects are never followed: a redirect would carry credentials to a place
nobody configured.
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Mapping, Protocol, runtime_checkable

__all__ = ["Response", "Transport", "UrllibTransport", "TransportError"]

MAX_BODY = 4 * 1024 * 1024


class TransportError(Exception):
    """The request never got an HTTP answer (refused, reset, timed out, TLS)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return None

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None for anything else."""
        try:
            v = json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return v if isinstance(v, dict) else None


@runtime_checkable
class Transport(Protocol):
    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float) -> Response: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def _headers_of(msg: Message | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if msg is None:
        return out
    for k, v in msg.items():
        lk = k.lower()
        out[lk] = f"{out[lk]}, {v}" if lk in out else v
    return out


class UrllibTransport:
    """Standard-library HTTP(S). ``ssl_context`` carries a CA bundle or a
    client certificate (see :mod:`aegis_sdk.mtls`)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, max_body: int = MAX_BODY) -> None:
        handlers: list[Any] = [_NoRedirect()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        # No proxy handler from the environment unless asked: tokens must not
        # detour through a proxy somebody exported for other tools.
        handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self._max_body = max_body

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float) -> Response:
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        try:
            with self._opener.open(req, timeout=max(0.001, timeout)) as res:
                data = res.read(self._max_body + 1)
                status, hdrs = res.status, _headers_of(res.headers)
        except urllib.error.HTTPError as err:
            try:
                data = err.read(self._max_body + 1)
            except OSError:
                data = b""
            status, hdrs = err.code, _headers_of(err.headers)
            err.close()
        except urllib.error.URLError as err:
            raise TransportError(type(err.reason).__name__ if isinstance(err.reason, BaseException) else "URLError") from None
        except (OSError, ValueError) as err:
            raise TransportError(type(err).__name__) from None
        if len(data) > self._max_body:
            raise TransportError("ResponseTooLarge")
        return Response(status, hdrs, data)
