"""AegisClient / AsyncAegisClient: the agent side of Aegis. Gets and
refreshes tokens, attaches them to calls, asks the gateway for decisions and
follows approvals to their one-time override.

The decision and approval logic is written once, as a generator that yields
effects (get a token, send a request, sleep); the sync client runs those on
the calling thread and the async client awaits them (HTTP through
``asyncio.to_thread`` on the standard-library transport), so both behave
alike to the letter.
"""
from __future__ import annotations

import asyncio
import json
import random as _random
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Mapping, Sequence, TypedDict, Union

from ._http import Response, Transport, TransportError, UrllibTransport
from ._util import backoff_delay, bearer_challenge_error, bounded_text, origin_of, parse_retry_after
from .errors import AegisSdkError, AegisUnavailableError
from .token_source import DEFAULT_WINDOW, ClientCredentialsSource, RefreshInfo, RetryPolicy, TokenSource

__all__ = ["AegisClient", "AsyncAegisClient", "AuthorizeResult", "Action"]

MAX_DECISION_BYTES = 1024 * 1024
MAX_STATUS_BYTES = 64 * 1024
DECISIONS = frozenset({"allow", "deny", "approval_needed", "sanitize"})
STATUSES = frozenset({"pending", "approved", "denied", "expired"})
#: Gateway answers worth asking again (rate limit, outage, a proxy's bad gateway / timeout).
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
GATEWAY_RETRY_BASE = 0.25
GATEWAY_RETRY_CAP = 5.0
POLL_MIN = 0.5
POLL_MAX = 5.0
#: Longest a single status request may be held by a long-polling server.
LONG_POLL = 30.0


class Action(TypedDict, total=False):
    tool: str
    params: dict[str, Any]


class AuthorizeResult(TypedDict, total=False):
    """The body of ``POST /v1/authorize``. Only ``allow`` and ``sanitize``
    (with ``params`` replaced by the sanitized ones) mean go ahead.
    ``approval.outcome`` is set by the SDK when a wait ended without approval
    (``denied``, ``expired`` or ``timeout``)."""

    decision: str
    reasons: list[str]
    policy_version: str
    obligations: list[dict[str, Any]]
    params: dict[str, Any]
    approval: dict[str, Any] | None
    enforced: bool


# -- effects ---------------------------------------------------------------------


@dataclass(frozen=True)
class _GetToken:
    timeout: float | None


@dataclass(frozen=True)
class _Invalidate:
    token: str


@dataclass(frozen=True)
class _Http:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    timeout: float


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Effect = Union[_GetToken, _Invalidate, _Http, _Sleep]
_Flow = Generator[_Effect, Any, Any]


class _Base:
    def __init__(
        self,
        issuer: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | Iterable[str] | None = None,
        gateway_url: str | None = None,
        dry_run: bool = False,
        on_dry_run_decision: Callable[[AuthorizeResult, Action], None] | None = None,
        token_source: TokenSource | None = None,
        auth_method: str = "client_secret_basic",
        token_endpoint: str | Sequence[str] | None = None,
        control_plane_urls: Sequence[str] | None = None,
        refresh_window: tuple[float, float] = DEFAULT_WINDOW,
        retry: RetryPolicy | None = None,
        on_refresh: Callable[[RefreshInfo], None] | None = None,
        approval_origins: Sequence[str] | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if gateway_url is not None and urllib.parse.urlsplit(gateway_url).scheme not in ("http", "https"):
            raise TypeError("gateway_url must be an http(s) URL")
        self.transport: Transport = transport or UrllibTransport()
        self._clock = clock
        self._random = random
        if token_source is not None:
            self.token_source: TokenSource = token_source
            self._owns_source = False
        else:
            if not client_id or not client_secret:
                raise TypeError("client_id and client_secret are required without a token_source")
            self.token_source = ClientCredentialsSource(
                issuer, client_id, client_secret, auth_method=auth_method, scope=scope, audience=audience,
                token_endpoint=token_endpoint, control_plane_urls=control_plane_urls, refresh_window=refresh_window,
                retry=retry, on_refresh=on_refresh, transport=self.transport, clock=clock, random=random,
            )
            self._owns_source = True
        self.issuer = issuer
        self.gateway_url = gateway_url
        self._dry_run = dry_run
        self._on_dry_run_decision = on_dry_run_decision
        origins = list(approval_origins) if approval_origins is not None else [o for o in [gateway_url, issuer, *(control_plane_urls or [])] if o]
        self._approval_origins = {origin_of(o) for o in origins}
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, gateway_url={self.gateway_url!r})"

    # -- the flows -------------------------------------------------------------

    def _authorize_flow(self, action: Action, resource: str | None, dry_run: bool | None, wait_for_approval: bool, timeout: float | None) -> _Flow:
        if not self.gateway_url:
            raise TypeError("gateway_url is required for authorize")
        if not isinstance(action, Mapping) or not isinstance(action.get("tool"), str) or not action.get("tool"):
            raise TypeError("action['tool'] is required")
        dry = self._dry_run if dry_run is None else dry_run
        waiting = wait_for_approval and not dry
        budget = timeout if timeout is not None else (300.0 if waiting else 30.0)
        deadline = self._clock() + budget
        act: dict[str, Any] = {"tool": action["tool"]}
        if "params" in action and action["params"] is not None:
            act["params"] = action["params"]
        payload: dict[str, Any] = {"action": act}
        if resource is not None:
            payload["resource"] = resource
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        url = urllib.parse.urljoin(self.gateway_url, "/v1/authorize")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if dry:
            headers["Aegis-Dry-Run"] = "1"

        first = yield from self._decide(url, body, headers, deadline)
        if (dry or first.get("enforced") is False) and self._on_dry_run_decision:
            self._on_dry_run_decision(first, action)
        approval = first.get("approval")
        if not waiting or first["decision"] != "approval_needed" or not approval:
            return first
        status, override = yield from self._wait_for_approval(approval, deadline)
        if status != "approved":
            return {**first, "approval": {**approval, "outcome": status}}
        retried = yield from self._decide(url, body, {**headers, "Aegis-Override": override}, deadline)
        if retried.get("enforced") is False and self._on_dry_run_decision:
            self._on_dry_run_decision(retried, action)
        return retried

    def _decide(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> _Flow:
        """One decision request: one refresh+retry on invalid_token; an
        unreachable gateway and 429/502/503/504 retried with backoff until
        ``deadline`` (never sooner than Retry-After)."""
        refreshed = False
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise AegisUnavailableError("timeout", "authorize timed out")
            token = yield _GetToken(remaining)
            try:
                res: Response = yield _Http("POST", url, {**headers, "Authorization": f"Bearer {token}"}, body, max(0.05, deadline - self._clock()))
            except TransportError as err:
                # Refused or reset: a gateway restarting, or a blip. A claimed jti comes back as invalid_token, refreshed once.
                yield from self._retry_pause(attempt, None, deadline, AegisUnavailableError("network_error", f"gateway unreachable: {err.kind}"))
                attempt += 1
                continue
            if _is_invalid_token(res) and not refreshed:
                yield _Invalidate(token)
                refreshed = True
                continue
            if len(res.body) > MAX_DECISION_BYTES:
                raise AegisSdkError("invalid_response", "gateway response too large", status=res.status)
            data = res.json_object()
            if res.status in RETRIED_STATUSES:
                retry_after = parse_retry_after(res.header("retry-after"), self._clock)
                code = bounded_text(data.get("error") if data else None, 100) or ("rate_limited" if res.status == 429 else "temporarily_unavailable")
                desc = bounded_text(data.get("error_description") if data else None)
                err_u = AegisUnavailableError(code, f"{code}: {desc}" if desc else f"gateway answered {res.status}", status=res.status, retry_after=retry_after)
                yield from self._retry_pause(attempt, retry_after, deadline, err_u)
                attempt += 1
                continue
            if res.status != 200:
                code = bounded_text(data.get("error") if data else None, 100) or ("server_error" if res.status >= 500 else "invalid_request")
                desc = bounded_text(data.get("error_description") if data else None)
                cls = AegisUnavailableError if res.status >= 500 else AegisSdkError
                raise cls(code, f"{code}: {desc}" if desc else f"gateway answered {res.status}", status=res.status)
            return _to_result(data)

    def _retry_pause(self, attempt: int, retry_after: float | None, deadline: float, err: AegisUnavailableError) -> _Flow:
        delay = backoff_delay(attempt, GATEWAY_RETRY_BASE, GATEWAY_RETRY_CAP, self._random, retry_after)
        # A wait that would end after the deadline is not begun: the caller learns now.
        if self._clock() + delay >= deadline:
            raise err
        if not (yield _Sleep(delay)):
            raise AegisSdkError("closed", "client is closed")

    def _wait_for_approval(self, approval: Mapping[str, Any], deadline: float) -> _Flow:
        status_url = self._resolve_status_url(str(approval.get("status_url")))
        refreshed = False
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return "timeout", None
            try:
                token = yield _GetToken(remaining)
            except AegisUnavailableError as err:
                if err.code == "timeout":
                    return "timeout", None
                raise
            sent_at = self._clock()
            hold = min(remaining, LONG_POLL)
            try:
                res: Response = yield _Http("GET", status_url, {
                    "Authorization": f"Bearer {token}", "Accept": "application/json", "Prefer": f"wait={max(1, int(hold))}",
                }, None, hold + 5.0)
            except TransportError:
                # A dropped long poll or a blip: keep waiting, with backoff.
                if not (yield from self._poll_pause(attempt, None, deadline)):
                    return "timeout", None
                attempt += 1
                continue
            if _is_invalid_token(res) and not refreshed:
                yield _Invalidate(token)
                refreshed = True
                continue
            retry_after = parse_retry_after(res.header("retry-after"), self._clock)
            if res.status == 429 or res.status >= 500:
                if not (yield from self._poll_pause(attempt, retry_after, deadline)):
                    return "timeout", None
                attempt += 1
                continue
            data = res.json_object() if len(res.body) <= MAX_STATUS_BYTES else None
            st = data.get("status") if data else None
            if res.status != 200 or data is None or not isinstance(st, str) or st not in STATUSES:
                code = bounded_text(data.get("error") if data else None, 100) or "invalid_response"
                raise AegisSdkError(code, f"approval status answered {res.status}", status=res.status)
            if st == "approved":
                override = data.get("override_token")
                if not isinstance(override, str) or not override:
                    raise AegisSdkError("invalid_response", "approved without an override_token", status=200)
                return "approved", override
            if st in ("denied", "expired"):
                return st, None
            refreshed = False
            # The server held the request (long poll): ask again at once; otherwise back off.
            held = res.header("preference-applied") is not None and self._clock() - sent_at >= 1.0
            if held and retry_after is None:
                attempt = 0
                continue
            if not (yield from self._poll_pause(attempt, retry_after, deadline)):
                return "timeout", None
            attempt += 1

    def _poll_pause(self, attempt: int, retry_after: float | None, deadline: float) -> _Flow:
        ceiling = min(POLL_MAX, POLL_MIN * 1.5 ** attempt)
        delay = max(retry_after or 0.0, POLL_MIN / 2 + self._random() * (ceiling - POLL_MIN / 2))
        if self._clock() + delay >= deadline:
            return False
        if not (yield _Sleep(delay)):
            raise AegisSdkError("closed", "client is closed")
        return True

    def _resolve_status_url(self, status_url: str) -> str:
        """The bearer token goes to status_url, so it may only point where we already send it."""
        try:
            u = urllib.parse.urljoin(self.gateway_url or "", status_url)
            parts = urllib.parse.urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError
            origin = origin_of(u)
        except ValueError:
            raise AegisSdkError("invalid_response", "approval status_url is not a URL") from None
        if origin not in self._approval_origins:
            raise AegisSdkError("approval_url_untrusted", f"approval status_url points at an untrusted origin {origin}")
        return u

    def _request_flow(self, method: str, url: str, headers: Mapping[str, str] | None, body: bytes | None, timeout: float) -> _Flow:
        token = yield _GetToken(timeout)
        hdrs = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        res: Response = yield _Http(method, url, {**hdrs, "Authorization": f"Bearer {token}"}, body, timeout)
        if not _is_invalid_token(res):
            return res
        yield _Invalidate(token)
        fresh = yield _GetToken(timeout)
        return (yield _Http(method, url, {**hdrs, "Authorization": f"Bearer {fresh}"}, body, timeout))


class AegisClient(_Base):
    """The agent-side client (thread-safe; share one per process).

    >>> client = AegisClient(issuer, client_id, client_secret, gateway_url=gateway)
    >>> d = client.authorize({"tool": "crm.read", "params": {"id": "42"}}, wait_for_approval=True)
    >>> if d["decision"] in ("allow", "sanitize"): call_the_tool(d.get("params"))
    """

    def get_token(self, *, timeout: float | None = None) -> str:
        """A valid access token (cached; refreshed early with jitter; single flight)."""
        return self.token_source.get_token(timeout=timeout)

    def authorize(self, action: Action, *, resource: str | None = None, dry_run: bool | None = None,
                  wait_for_approval: bool = False, timeout: float | None = None) -> AuthorizeResult:
        """Asks the gateway (``POST {gateway_url}/v1/authorize``) whether ``action`` may run.

        With ``wait_for_approval`` and an ``approval_needed`` answer it polls
        the approval's ``status_url`` (its origin must be the gateway's, the
        issuer's or one of ``approval_origins``) until decided or ``timeout``
        seconds (default 300 when waiting, else 30) run out; when approved it
        repeats exactly this call once with ``Aegis-Override`` and returns
        that answer. Otherwise the ``approval_needed`` answer comes back with
        ``approval["outcome"]`` set, which never means go ahead.
        """
        return self._run(self._authorize_flow(action, resource, dry_run, wait_for_approval, timeout))  # type: ignore[no-any-return]

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None, timeout: float = 30.0) -> Response:
        """An HTTP request with the token attached; one refresh and retry on
        ``401 invalid_token``. (For requests/httpx use :mod:`aegis_sdk.auth`.)"""
        return self._run(self._request_flow(method, url, headers, body, timeout))  # type: ignore[no-any-return]

    def close(self) -> None:
        """Ends pending waits and, when the client created it, the token source."""
        self._closed.set()
        if self._owns_source:
            self.token_source.close()

    def __enter__(self) -> "AegisClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: _Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(effect, _GetToken):
                    value = self.token_source.get_token(timeout=effect.timeout)
                elif isinstance(effect, _Invalidate):
                    self.token_source.invalidate(effect.token)
                elif isinstance(effect, _Http):
                    value = self.transport.request(effect.method, effect.url, effect.headers, effect.body, effect.timeout)
                else:
                    value = not self._closed.wait(effect.seconds)
            except Exception as err:  # noqa: BLE001 - handed back into the flow
                error = err


class AsyncAegisClient(_Base):
    """The same client for asyncio. Token refresh is shared with threads
    (one refresh in flight per source); HTTP runs the standard-library
    transport in a worker thread (``asyncio.to_thread``), so the core keeps
    no dependency. Cancelling the task cancels the call.
    """

    async def get_token(self, *, timeout: float | None = None) -> str:
        return await self.token_source.aget_token(timeout=timeout)

    async def authorize(self, action: Action, *, resource: str | None = None, dry_run: bool | None = None,
                        wait_for_approval: bool = False, timeout: float | None = None) -> AuthorizeResult:
        """See :meth:`AegisClient.authorize`."""
        return await self._run(self._authorize_flow(action, resource, dry_run, wait_for_approval, timeout))  # type: ignore[no-any-return]

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None, timeout: float = 30.0) -> Response:
        return await self._run(self._request_flow(method, url, headers, body, timeout))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        if self._owns_source:
            self.token_source.close()

    async def __aenter__(self) -> "AsyncAegisClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _run(self, flow: _Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(effect, _GetToken):
                    value = await self.token_source.aget_token(timeout=effect.timeout)
                elif isinstance(effect, _Invalidate):
                    self.token_source.invalidate(effect.token)
                elif isinstance(effect, _Http):
                    value = await asyncio.to_thread(self.transport.request, effect.method, effect.url, effect.headers, effect.body, effect.timeout)
                else:
                    if self._closed.is_set():
                        value = False
                    else:
                        await asyncio.sleep(effect.seconds)
                        value = not self._closed.is_set()
            except Exception as err:  # noqa: BLE001 - handed back into the flow
                error = err


def _is_invalid_token(res: Response) -> bool:
    return res.status == 401 and bearer_challenge_error(res.header("www-authenticate")) == "invalid_token"


def _to_result(data: dict[str, Any] | None) -> AuthorizeResult:
    # Fail closed: anything that is not a well-formed decision is an error, never an allow.
    if data is None or not isinstance(data.get("decision"), str) or data["decision"] not in DECISIONS:
        raise AegisSdkError("invalid_response", "gateway answered without a valid decision", status=200)
    out: dict[str, Any] = dict(data)
    reasons = data.get("reasons")
    out["reasons"] = [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []
    obligations = data.get("obligations")
    out["obligations"] = [o for o in obligations if isinstance(o, dict) and isinstance(o.get("type"), str)] if isinstance(obligations, list) else []
    params = data.get("params")
    if not isinstance(params, dict):
        out.pop("params", None)
    if not isinstance(data.get("policy_version"), str):
        out.pop("policy_version", None)
    approval = data.get("approval")
    if isinstance(approval, dict) and isinstance(approval.get("id"), str) and isinstance(approval.get("status_url"), str):
        out["approval"] = {"id": approval["id"], "status_url": approval["status_url"]}
    else:
        out["approval"] = None
    out["enforced"] = data.get("enforced") is not False
    return out  # type: ignore[return-value]
