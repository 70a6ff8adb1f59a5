"""Token sources: get an access token from the Aegis token endpoint with some
grant, cache it, refresh it early at a random point of its lifetime, one
refresh at a time, retrying what is worth retrying.

One refresh is in flight per source whatever asks for it: threads wait on a
``concurrent.futures.Future`` and asyncio tasks (of any event loop) await the
same future through ``asyncio.wrap_future``. The refresh itself runs on a
daemon worker thread, so a caller whose deadline passes stops waiting while
the refresh goes on for the others (as ``aegis/sdk`` does with AbortSignal).
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import random as _random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

from ._http import Transport, TransportError, UrllibTransport
from ._util import backoff_delay, bounded_text, is_http_url, parse_retry_after, strip_slash, well_known_url
from .errors import AegisAuthError, AegisSdkError, AegisUnavailableError

__all__ = [
    "AccessToken", "RefreshInfo", "RetryPolicy", "TokenSource", "OAuthTokenSource",
    "ClientCredentialsSource", "TokenExchangeSource", "TOKEN_TYPE_JWT", "TOKEN_TYPE_ACCESS_TOKEN",
]

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
MAX_TOKEN_CHARS = 16 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_WINDOW = (0.6, 0.85)


@dataclass(frozen=True)
class AccessToken:
    """An access token as the SDK caches it. Times are epoch seconds."""

    #: The token. Treat as a secret: it is left out of ``repr``.
    access_token: str = field(repr=False)
    #: ``Bearer``, or ``DPoP`` for a DPoP-bound token.
    token_type: str
    #: Request time + ``expires_in``.
    expires_at: float
    #: When the source refreshes it: a random point of the refresh window.
    refresh_at: float
    scope: str | None = None
    #: ``issued_token_type`` (RFC 8693 §2.2.1), for token exchange.
    issued_token_type: str | None = None


@dataclass(frozen=True)
class RefreshInfo:
    """What one token request attempt came to. Never contains the token."""

    outcome: str  # "success" | "retry" | "failure"
    started_at: float
    attempt: int
    #: True when a still-valid token was being refreshed ahead of time.
    background: bool
    expires_at: float | None = None
    refresh_at: float | None = None
    code: str | None = None
    status: int | None = None
    #: For ``retry``: seconds before the next attempt (0 = next endpoint at once).
    delay: float | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retry tuning for token requests (seconds)."""

    max_attempts: int = 5
    base_delay: float = 0.25
    #: A ``Retry-After`` longer than this ends the refresh at once.
    max_delay: float = 30.0


@runtime_checkable
class TokenSource(Protocol):
    """Anything that hands out access tokens, to threads and to asyncio tasks."""

    def get_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> str: ...
    def get_access_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> AccessToken: ...
    async def aget_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> str: ...
    async def aget_access_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> AccessToken: ...
    def invalidate(self, token: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Cached:
    token: AccessToken
    margin: float
    invalidated: bool = False


class _Retryable(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after


FormParams = list[tuple[str, str]]


class OAuthTokenSource:
    """The refresh machinery shared by every grant: cache, jittered early
    refresh, single flight, backoff with full jitter honouring ``Retry-After``,
    riding out an unreachable control plane on a still-valid token.
    Subclasses only say what goes into the token request (:meth:`_token_request`).
    """

    def __init__(
        self,
        issuer: str,
        *,
        token_endpoint: str | Sequence[str] | None = None,
        control_plane_urls: Sequence[str] | None = None,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        refresh_window: tuple[float, float] = DEFAULT_WINDOW,
        retry: RetryPolicy | None = None,
        request_timeout: float = 10.0,
        background_refresh: bool = True,
        transport: Transport | None = None,
        on_refresh: Callable[[RefreshInfo], None] | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not is_http_url(issuer):
            raise TypeError("issuer must be an http(s) URL")
        lo, hi = refresh_window
        if not (0 < lo <= hi < 1):
            raise ValueError("refresh_window must satisfy 0 < low <= high < 1")
        self.issuer = issuer
        self._endpoints = _endpoints_of(token_endpoint, control_plane_urls)
        self._preferred = 0
        self._scope = scope if scope is None or isinstance(scope, str) else " ".join(scope)
        self._audiences = [] if audience is None else [audience] if isinstance(audience, str) else list(audience)
        self._window = (lo, hi)
        self._retry = retry or RetryPolicy()
        self._request_timeout = request_timeout
        self._background_refresh = background_refresh
        self.transport: Transport = transport or UrllibTransport()
        self._on_refresh = on_refresh
        self._clock = clock
        self._random = random
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._current: _Cached | None = None
        self._flight: concurrent.futures.Future[AccessToken] | None = None
        self._timer: threading.Timer | None = None
        self._failures = 0
        self._next_attempt_at = 0.0

    # -- what a grant contributes -------------------------------------------------

    def _token_request(self) -> tuple[FormParams, dict[str, str]]:
        """Form parameters and extra headers of one token request."""
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------

    def get_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> str:
        """A valid access token (cached until its refresh point).

        ``timeout`` is the caller's deadline in seconds: past it this call
        raises :class:`AegisUnavailableError` ``timeout`` while the refresh
        it joined goes on for the other callers.
        """
        return self.get_access_token(timeout=timeout, force_refresh=force_refresh).access_token

    def get_access_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> AccessToken:
        ready = self._cached_or_none(force_refresh)
        if ready is not None:
            return ready
        flight = self._start_refresh(background=False)
        try:
            return flight.result(timeout)
        except concurrent.futures.TimeoutError:
            raise AegisUnavailableError("timeout", "no token before the caller's deadline") from None

    async def aget_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> str:
        """:meth:`get_token` for asyncio: never blocks the event loop."""
        return (await self.aget_access_token(timeout=timeout, force_refresh=force_refresh)).access_token

    async def aget_access_token(self, *, timeout: float | None = None, force_refresh: bool = False) -> AccessToken:
        ready = self._cached_or_none(force_refresh)
        if ready is not None:
            return ready
        flight = self._start_refresh(background=False)
        # shield: a cancelled or timed-out task must not cancel the refresh the others share.
        waiting = asyncio.shield(asyncio.wrap_future(flight))
        try:
            return await asyncio.wait_for(waiting, timeout)
        except asyncio.TimeoutError:
            raise AegisUnavailableError("timeout", "no token before the caller's deadline") from None

    def invalidate(self, token: str) -> None:
        """Marks ``token`` as refused by a resource server (``invalid_token``),
        so the next call fetches a fresh one. A no-op once it was replaced."""
        with self._lock:
            cur = self._current
            if cur is not None and cur.token.access_token == token:
                cur.invalidated = True

    def close(self) -> None:
        """Stops background refresh, ends pending retries and forgets the token."""
        self._closed.set()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._current = None

    def __enter__(self) -> "OAuthTokenSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- machinery ----------------------------------------------------------------

    def _cached_or_none(self, force_refresh: bool) -> AccessToken | None:
        if self._closed.is_set():
            raise AegisSdkError("closed", "token source is closed")
        now = self._clock()
        cur = self._current
        if cur is None or force_refresh or not _usable(cur, now):
            return None
        if now >= cur.token.refresh_at and now >= self._next_attempt_at:
            self._start_refresh(background=True)
        return cur.token

    def _start_refresh(self, background: bool) -> "concurrent.futures.Future[AccessToken]":
        with self._lock:
            if self._flight is not None:
                return self._flight
            flight: concurrent.futures.Future[AccessToken] = concurrent.futures.Future()
            # Running futures cannot be cancelled, so no waiter can cancel it for the others.
            flight.set_running_or_notify_cancel()
            self._flight = flight
        threading.Thread(target=self._run_flight, args=(flight, background), name="aegis-token-refresh", daemon=True).start()
        return flight

    def _run_flight(self, flight: "concurrent.futures.Future[AccessToken]", background: bool) -> None:
        try:
            token = self._refresh_with_retry(background)
        except BaseException as err:  # noqa: BLE001 - handed to every waiter
            with self._lock:
                self._flight = None
            flight.set_exception(err)
        else:
            with self._lock:
                self._flight = None
            flight.set_result(token)

    def _refresh_with_retry(self, background: bool) -> AccessToken:
        attempt = 0
        while True:
            started = self._clock()
            try:
                count = len(self._endpoints) if self._endpoints else 1
                k = 0
                while True:
                    index = (self._preferred + k) % count
                    started = self._clock()
                    try:
                        cached = self._request_once(started, index)
                    except _Retryable as err:
                        # Another control plane may answer; a 429 is this client's everywhere.
                        if self._closed.is_set() or err.code == "rate_limited" or k + 1 >= count:
                            raise
                        self._emit(RefreshInfo("retry", started, attempt, background, code=err.code, status=err.status, delay=0.0,
                                               endpoint=self._endpoint_name(index)))
                        k += 1
                        continue
                    if self._closed.is_set():
                        raise AegisSdkError("closed", "token source is closed")
                    with self._lock:
                        self._preferred = index
                        self._current = cached
                        self._failures = 0
                        self._next_attempt_at = 0.0
                    self._schedule(cached.token.refresh_at)
                    t = cached.token
                    self._emit(RefreshInfo("success", started, attempt, background, expires_at=t.expires_at, refresh_at=t.refresh_at,
                                           endpoint=self._endpoint_name(index)))
                    return t
            except _Retryable as err:
                if self._closed.is_set():
                    raise AegisSdkError("closed", "token source is closed") from None
                # A Retry-After longer than the largest backoff fails now (callers are waiting).
                if attempt + 1 < self._retry.max_attempts and (err.retry_after or 0.0) <= self._retry.max_delay:
                    delay = backoff_delay(attempt, self._retry.base_delay, self._retry.max_delay, self._random, err.retry_after)
                    self._emit(RefreshInfo("retry", started, attempt, background, code=err.code, status=err.status, delay=delay))
                    if self._closed.wait(delay):
                        raise AegisSdkError("closed", "token source is closed") from None
                    attempt += 1
                    continue
                final = AegisUnavailableError(err.code, str(err), status=err.status, retry_after=err.retry_after)
                self._emit(RefreshInfo("failure", started, attempt, background, code=final.code, status=final.status))
                self._after_failure(err.retry_after)
                raise final from None
            except AegisSdkError as err:
                if self._closed.is_set():
                    raise AegisSdkError("closed", "token source is closed") from None
                self._emit(RefreshInfo("failure", started, attempt, background, code=err.code, status=err.status))
                self._after_failure(None)
                raise

    def _after_failure(self, retry_after: float | None) -> None:
        """Keep the still-valid token and try again later, backing off with
        each failed refresh, but never so late the token lapses untried."""
        with self._lock:
            self._failures += 1
            now = self._clock()
            delay = backoff_delay(min(self._failures, 16), max(self._retry.base_delay, 1.0), self._retry.max_delay, self._random, retry_after)
            self._next_attempt_at = now + max(delay, self._retry.base_delay)
            cur = self._current
        if cur is None or not _usable(cur, now):
            return
        last_chance = cur.token.expires_at - cur.margin - 0.001
        self._schedule(min(self._next_attempt_at, last_chance) if last_chance > now else self._next_attempt_at)

    def _schedule(self, at: float) -> None:
        if not self._background_refresh or self._closed.is_set():
            return
        timer = threading.Timer(max(0.0, at - self._clock()), self._on_timer, args=(at,))
        timer.daemon = True
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = timer
        timer.start()

    def _on_timer(self, at: float) -> None:
        if self._closed.is_set():
            return
        now = self._clock()
        if now < at:
            self._schedule(at)
            return
        cur = self._current
        if cur is not None and not _usable(cur, now):
            return  # the next get_token refreshes in the foreground
        self._start_refresh(background=True)

    def _emit(self, info: RefreshInfo) -> None:
        if self._on_refresh is None:
            return
        try:
            self._on_refresh(info)
        except Exception:  # noqa: BLE001 - a broken observer must not break token refresh
            pass

    def _endpoint_name(self, index: int) -> str | None:
        return self._endpoints[index] if self._endpoints else None

    def _request_once(self, sent_at: float, index: int) -> _Cached:
        endpoint = self._endpoints[index] if self._endpoints else self._discover()
        params, headers = self._token_request()
        names = {k for k, _ in params}
        if self._scope is not None and "scope" not in names:
            params.append(("scope", self._scope))
        if "audience" not in names:
            params.extend(("audience", a) for a in self._audiences)
        body = urllib.parse.urlencode(params).encode("ascii")
        hdrs = {**headers, "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        try:
            res = self.transport.request("POST", endpoint, hdrs, body, self._request_timeout)
        except TransportError as err:
            raise _Retryable("network_error", f"token endpoint unreachable: {err.kind}") from None
        if len(res.body) > MAX_RESPONSE_BYTES:
            raise AegisSdkError("invalid_response", "token response too large", status=res.status)
        if res.status == 429 or res.status >= 500:
            code = "rate_limited" if res.status == 429 else "temporarily_unavailable" if res.status == 503 else "server_error"
            raise _Retryable(code, f"token endpoint answered {res.status}", res.status, parse_retry_after(res.header("retry-after"), self._clock))
        data = res.json_object()
        if res.status != 200:
            code = bounded_text(data.get("error") if data else None, 100) or ("invalid_client" if res.status == 401 else "invalid_request")
            raise AegisAuthError(code, bounded_text(data.get("error_description") if data else None), res.status)
        return self._to_cached(data, sent_at)

    def _to_cached(self, data: dict[str, object] | None, sent_at: float) -> _Cached:
        data = data or {}
        token, kind, expires_in = data.get("access_token"), data.get("token_type"), data.get("expires_in")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise AegisSdkError("invalid_response", "token response has no usable access_token", status=200)
        kind_l = kind.lower() if isinstance(kind, str) else ""
        # A DPoP-bound token is only usable through a transport that holds the key.
        dpop_capable = getattr(self.transport, "aegis_dpop", False) is True
        if kind_l != "bearer" and not (kind_l == "dpop" and dpop_capable):
            raise AegisSdkError("invalid_response", "token response token_type is not Bearer or DPoP", status=200)
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or not (0 < expires_in < float("inf")):
            raise AegisSdkError("invalid_response", "token response has no positive expires_in", status=200)
        lo, hi = self._window
        fraction = lo + self._random() * (hi - lo)
        scope, itt = data.get("scope"), data.get("issued_token_type")
        return _Cached(
            AccessToken(
                access_token=token,
                token_type="DPoP" if kind_l == "dpop" else "Bearer",
                # From when the request was sent, so network time only makes us early.
                expires_at=sent_at + float(expires_in),
                refresh_at=sent_at + float(expires_in) * fraction,
                scope=scope if isinstance(scope, str) else None,
                issued_token_type=itt if isinstance(itt, str) else None,
            ),
            margin=min(5.0, float(expires_in) / 10),
        )

    def _discover(self) -> str:
        """RFC 8414 discovery of the token endpoint, cached for the source's life."""
        try:
            res = self.transport.request("GET", well_known_url(self.issuer), {"Accept": "application/json"}, None, self._request_timeout)
        except TransportError as err:
            raise _Retryable("network_error", f"authorization server metadata unreachable: {err.kind}") from None
        if res.status == 429 or res.status >= 500:
            raise _Retryable("rate_limited" if res.status == 429 else "temporarily_unavailable", f"metadata endpoint answered {res.status}",
                             res.status, parse_retry_after(res.header("retry-after"), self._clock))
        meta = res.json_object()
        if res.status != 200 or meta is None:
            raise AegisSdkError("discovery_failed", f"authorization server metadata answered {res.status}", status=res.status)
        # RFC 8414 §3.3: metadata for another issuer must not be used.
        iss = meta.get("issuer")
        if not isinstance(iss, str) or strip_slash(iss) != strip_slash(self.issuer):
            raise AegisSdkError("discovery_failed", "authorization server metadata names a different issuer")
        ep = meta.get("token_endpoint")
        if not is_http_url(ep):
            raise AegisSdkError("discovery_failed", "authorization server metadata has no token_endpoint")
        assert isinstance(ep, str)
        self._endpoints = [ep]
        return ep


def _usable(c: _Cached, now: float) -> bool:
    return not c.invalidated and now < c.token.expires_at - c.margin


def _endpoints_of(token_endpoint: str | Sequence[str] | None, control_plane_urls: Sequence[str] | None) -> list[str] | None:
    if token_endpoint is not None and control_plane_urls is not None:
        raise TypeError("give token_endpoint or control_plane_urls, not both")
    if control_plane_urls is not None:
        urls = list(control_plane_urls)
        if not urls or not all(is_http_url(u) for u in urls):
            raise TypeError("control_plane_urls must be a non-empty list of http(s) URLs")
        # docs/reference.md fixes the token endpoint's path on every control plane.
        found = [f"{strip_slash(u)}/oauth2/token" for u in urls]
    elif token_endpoint is not None:
        found = [token_endpoint] if isinstance(token_endpoint, str) else list(token_endpoint)
        if not found or not all(is_http_url(u) for u in found):
            raise TypeError("token_endpoint must be an http(s) URL or a non-empty list of them")
    else:
        return None
    return list(dict.fromkeys(found))


def _client_auth(params: FormParams, method: str, client_id: str, secret: str) -> dict[str, str]:
    if method == "client_secret_post":
        params.extend([("client_id", client_id), ("client_secret", secret)])
        return {}
    # RFC 6749 §2.3.1: form-encode each part before base64.
    raw = f"{urllib.parse.quote_plus(client_id, safe='')}:{urllib.parse.quote_plus(secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")}


_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class ClientCredentialsSource(OAuthTokenSource):
    """``client_credentials`` (RFC 6749 §4.4) with a bootstrap credential."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, *, auth_method: str = "client_secret_basic", **options: object) -> None:
        super().__init__(issuer, **options)  # type: ignore[arg-type]
        if not isinstance(client_id, str) or not client_id:
            raise TypeError("client_id is required")
        if not isinstance(client_secret, str) or not client_secret:
            raise TypeError("client_secret is required")
        if auth_method not in _AUTH_METHODS:
            raise TypeError("auth_method must be client_secret_basic or client_secret_post")
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_method = auth_method

    def __repr__(self) -> str:
        return f"ClientCredentialsSource(issuer={self.issuer!r}, client_id={self._client_id!r})"

    def _token_request(self) -> tuple[FormParams, dict[str, str]]:
        params: FormParams = [("grant_type", "client_credentials")]
        return params, _client_auth(params, self._auth_method, self._client_id, self._client_secret)


class TokenExchangeSource(OAuthTokenSource):
    """Token exchange (RFC 8693) of a workload identity token (Kubernetes
    service account, CI OIDC, SPIFFE JWT-SVID) for an Aegis access token.

    ``subject_token`` is the token or a callable returning the current one
    (such tokens rotate; see :func:`aegis_sdk.workload.subject_token_file`).
    """

    def __init__(
        self,
        issuer: str,
        subject_token: str | Callable[[], str],
        *,
        subject_token_type: str = TOKEN_TYPE_JWT,
        client_id: str | None = None,
        client_secret: str | None = None,
        auth_method: str = "client_secret_basic",
        **options: object,
    ) -> None:
        super().__init__(issuer, **options)  # type: ignore[arg-type]
        if not callable(subject_token) and (not isinstance(subject_token, str) or not subject_token):
            raise TypeError("subject_token is required")
        if auth_method not in _AUTH_METHODS:
            raise TypeError("auth_method must be client_secret_basic or client_secret_post")
        self._subject = subject_token
        self._subject_type = subject_token_type
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_method = auth_method

    def __repr__(self) -> str:
        return f"TokenExchangeSource(issuer={self.issuer!r})"

    def _token_request(self) -> tuple[FormParams, dict[str, str]]:
        subject = self._subject() if callable(self._subject) else self._subject
        if not isinstance(subject, str) or not subject:
            raise AegisSdkError("invalid_request", "subject_token provider returned no token")
        params: FormParams = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", subject),
            ("subject_token_type", self._subject_type),
        ]
        if self._client_id is None:
            return params, {}
        if self._client_secret is None:
            params.append(("client_id", self._client_id))
            return params, {}
        return params, _client_auth(params, self._auth_method, self._client_id, self._client_secret)


