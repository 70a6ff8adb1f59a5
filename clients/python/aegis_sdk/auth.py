"""Auth hooks for ``httpx`` and ``requests``: attach the Aegis token, and on
``401`` with ``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750
§3.1) get a fresh token and repeat the request once.

    import httpx
    from aegis_sdk.auth import AegisHttpxAuth
    http = httpx.Client(auth=AegisHttpxAuth(client.token_source))

    import requests
    from aegis_sdk.auth import AegisRequestsAuth
    requests.get(url, auth=AegisRequestsAuth(client.token_source))

``aegis_sdk`` depends on neither; httpx is imported here when installed. With a :class:`~aegis_sdk.dpop.DpopKey` the hooks send
``Authorization: DPoP`` and a fresh proof instead.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncGenerator, Generator

from ._util import bearer_challenge_error
from .token_source import TokenSource

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .dpop import DpopKey

__all__ = ["AegisHttpxAuth", "AegisRequestsAuth"]


def _authorization(token: str, dpop: "DpopKey | None") -> str:
    return f"DPoP {token}" if dpop is not None else f"Bearer {token}"


def _invalid_token(status: int, challenge: str | None) -> bool:
    return status == 401 and bearer_challenge_error(challenge) == "invalid_token"


try:
    import httpx as _httpx
except ImportError:  # pragma: no cover - depends on the environment
    _httpx = None  # type: ignore[assignment]

_HttpxAuthBase: Any = _httpx.Auth if _httpx is not None else object


class AegisHttpxAuth(_HttpxAuthBase):  # type: ignore[misc]
    """``httpx.Auth`` for :class:`httpx.Client` and :class:`httpx.AsyncClient`
    (the async flow awaits the token without blocking the loop). A streamed
    request body cannot be sent twice; httpx raises on the retry then."""

    def __init__(self, source: TokenSource, dpop: "DpopKey | None" = None, timeout: float | None = None) -> None:
        if _httpx is None:
            raise ImportError("AegisHttpxAuth needs httpx (pip install 'aegis-sdk[httpx]', or Debian's python3-httpx)")
        self.source = source
        self.dpop = dpop
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"AegisHttpxAuth(source={self.source!r})"

    def _prepare(self, request: "httpx.Request", token: str) -> "httpx.Request":
        request.headers["Authorization"] = _authorization(token, self.dpop)
        if self.dpop is not None:
            request.headers["DPoP"] = self.dpop.proof(request.method, str(request.url), access_token=token)
        return request

    def sync_auth_flow(self, request: "httpx.Request") -> Generator["httpx.Request", "httpx.Response", None]:
        token = self.source.get_token(timeout=self.timeout)
        response = yield self._prepare(request, token)
        if _invalid_token(response.status_code, response.headers.get("www-authenticate")):
            self.source.invalidate(token)
            yield self._prepare(request, self.source.get_token(timeout=self.timeout))

    async def async_auth_flow(self, request: "httpx.Request") -> AsyncGenerator["httpx.Request", "httpx.Response"]:
        token = await self.source.aget_token(timeout=self.timeout)
        response = yield self._prepare(request, token)
        if _invalid_token(response.status_code, response.headers.get("www-authenticate")):
            self.source.invalidate(token)
            yield self._prepare(request, await self.source.aget_token(timeout=self.timeout))


class AegisRequestsAuth:
    """A ``requests`` auth (``requests.auth.AuthBase`` protocol): sets the
    header, and a response hook repeats the request once with a fresh token
    on ``invalid_token`` (as ``requests``' own digest auth repeats on 401)."""

    def __init__(self, source: TokenSource, dpop: "DpopKey | None" = None, timeout: float | None = None) -> None:
        self.source = source
        self.dpop = dpop
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"AegisRequestsAuth(source={self.source!r})"

    def _apply(self, r: Any, token: str) -> Any:
        r.headers["Authorization"] = _authorization(token, self.dpop)
        if self.dpop is not None:
            r.headers["DPoP"] = self.dpop.proof(r.method, r.url, access_token=token)
        return r

    def __call__(self, r: Any) -> Any:
        token = self.source.get_token(timeout=self.timeout)
        self._apply(r, token)
        # A body that is a stream cannot be sent twice: no retry hook then.
        body = getattr(r, "body", None)
        if body is None or isinstance(body, (bytes, str)):
            r.register_hook("response", self._make_retry(token))
        return r

    def _make_retry(self, token: str) -> Any:
        def retry(response: Any, **kwargs: Any) -> Any:
            if not _invalid_token(response.status_code, response.headers.get("www-authenticate")):
                return response
            self.source.invalidate(token)
            response.content  # noqa: B018 - drain so the connection goes back to the pool
            response.close()
            again = response.request.copy()
            self._apply(again, self.source.get_token(timeout=self.timeout))
            retried = response.connection.send(again, **kwargs)
            retried.history.append(response)
            retried.request = again
            return retried

        return retry
