"""Tool-server guards built on :class:`aegis_sdk.verify.Verifier`: a
framework-free request check, a WSGI middleware and an ASGI middleware.
Same answers as ``aegis/verify``'s middleware: 401 ``invalid_token`` (with
``WWW-Authenticate``), 403 ``insufficient_scope``, 503 when the deny-list
check fails. Sender-constrained tokens (``cnf``) are refused unless
``check_sender_constraint`` proves the binding: a bound token is never
accepted as a plain bearer token.

    app = AegisASGIMiddleware(app, verifier, required_scopes=["crm:read"])
    # handlers read scope["aegis"] (a VerifiedToken)

    app = AegisWSGIMiddleware(app, verifier)
    # handlers read environ["aegis.token"]
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from .verify import VerifiedToken, Verifier, VerifyError

__all__ = ["Refusal", "bearer_token", "verify_request", "averify_request", "AegisWSGIMiddleware", "AegisASGIMiddleware"]

_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)

IsDenied = Callable[[Mapping[str, Any], VerifiedToken], bool]
CheckCnf = Callable[[Mapping[str, Any], VerifiedToken], bool]


@dataclass(frozen=True)
class Refusal:
    """An error answer: status, headers and JSON body to send."""

    status: int
    error: str
    description: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def body(self) -> bytes:
        return json.dumps({"error": self.error, "error_description": self.description}).encode("utf-8")

    def response_headers(self) -> list[tuple[str, str]]:
        return [*self.headers.items(), ("content-type", "application/json; charset=utf-8"), ("cache-control", "no-store"),
                ("content-length", str(len(self.body)))]


def _quoted(text: str) -> str:
    return re.sub(r'["\\\r\n]', "", text)


def _refuse(status: int, error: str, description: str, scope: str | None = None) -> Refusal:
    headers: dict[str, str] = {}
    if status != 503:
        challenge = f'Bearer error="{error}", error_description="{_quoted(description)}"'
        if scope is not None:
            challenge += f', scope="{_quoted(scope)}"'
        headers["www-authenticate"] = challenge
    return Refusal(status, error, description, headers)


def bearer_token(authorization: str | Sequence[str] | None) -> str | None:
    """The bearer token of an ``Authorization`` header (RFC 6750 §2.1)."""
    if isinstance(authorization, (list, tuple)):
        authorization = authorization[0] if len(authorization) == 1 else None
    if not isinstance(authorization, str):
        return None
    m = _BEARER.fullmatch(authorization)
    return m.group(1) if m else None


def _after_verify(verified: VerifiedToken, required_scopes: Sequence[str] | None, is_denied: IsDenied | None,
                  check_sender_constraint: CheckCnf | None) -> VerifiedToken | Refusal:
    cnf = verified.claims.get("cnf")
    if cnf is not None:
        try:
            proven = check_sender_constraint is not None and check_sender_constraint(cnf, verified)
        except Exception:  # noqa: BLE001 - a failing proof check is no proof
            proven = False
        if not proven:
            return _refuse(401, "invalid_token", "sender-constrained token presented without proof of possession")
    if is_denied is not None:
        try:
            denied = is_denied(verified.claims, verified)
        except Exception:  # noqa: BLE001 - unreadable revocation state must not let a token pass
            return _refuse(503, "temporarily_unavailable", "revocation state unavailable")
        if denied:
            return _refuse(401, "invalid_token", "token revoked")
    if required_scopes:
        scope = verified.claims.get("scope")
        granted = set(scope.split(" ")) if isinstance(scope, str) else set()
        if not all(s in granted for s in required_scopes):
            return _refuse(403, "insufficient_scope", "token lacks a required scope", " ".join(required_scopes))
    return verified


def verify_request(verifier: Verifier, authorization: str | Sequence[str] | None, *, required_scopes: Sequence[str] | None = None,
                   is_denied: IsDenied | None = None, check_sender_constraint: CheckCnf | None = None) -> VerifiedToken | Refusal:
    """Checks a request's ``Authorization`` header. Never raises for a bad
    token: returns the :class:`Refusal` to send instead."""
    token = bearer_token(authorization)
    if token is None:
        return _refuse(401, "invalid_token", "missing bearer token")
    try:
        verified = verifier.verify(token)
    except VerifyError as err:
        return _refuse(401, "invalid_token", str(err))
    return _after_verify(verified, required_scopes, is_denied, check_sender_constraint)


async def averify_request(verifier: Verifier, authorization: str | Sequence[str] | None, *, required_scopes: Sequence[str] | None = None,
                          is_denied: IsDenied | None = None, check_sender_constraint: CheckCnf | None = None) -> VerifiedToken | Refusal:
    """:func:`verify_request` for asyncio (a JWKS fetch runs in a worker thread)."""
    token = bearer_token(authorization)
    if token is None:
        return _refuse(401, "invalid_token", "missing bearer token")
    try:
        verified = await verifier.averify(token)
    except VerifyError as err:
        return _refuse(401, "invalid_token", str(err))
    return _after_verify(verified, required_scopes, is_denied, check_sender_constraint)


class AegisWSGIMiddleware:
    """WSGI middleware: verifies the bearer token, puts the
    :class:`VerifiedToken` in ``environ["aegis.token"]`` and calls the app,
    or answers 401/403/503 itself. ``public_paths`` skip the check."""

    def __init__(self, app: Callable[..., Iterable[bytes]], verifier: Verifier, *, public_paths: Iterable[str] = (), **options: Any) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)
        self.options = options

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.public_paths:
            return self.app(environ, start_response)
        result = verify_request(self.verifier, environ.get("HTTP_AUTHORIZATION"), **self.options)
        if isinstance(result, Refusal):
            start_response(f"{result.status} {_REASONS[result.status]}", result.response_headers())
            return [result.body]
        environ["aegis.token"] = result
        return self.app(environ, start_response)


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


class AegisASGIMiddleware:
    """ASGI middleware (Starlette, FastAPI, plain ASGI): verifies the bearer
    token of every HTTP request, puts the :class:`VerifiedToken` in
    ``scope["aegis"]``, or answers 401/403/503 itself. Other scope types
    (lifespan, websocket) pass through; ``public_paths`` skip the check."""

    def __init__(self, app: ASGIApp, verifier: Verifier, *, public_paths: Iterable[str] = (), **options: Any) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)
        self.options = options

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope.get("type") != "http" or scope.get("path") in self.public_paths:
            await self.app(scope, receive, send)
            return
        values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        result = await averify_request(self.verifier, values, **self.options)
        if isinstance(result, Refusal):
            await send({"type": "http.response.start", "status": result.status,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in result.response_headers()]})
            await send({"type": "http.response.body", "body": result.body})
            return
        await self.app({**scope, "aegis": result}, receive, send)


_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
