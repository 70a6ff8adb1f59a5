"""The client's failure paths against scripted servers: retries bounded by
Retry-After and the caller's deadline, the status-URL origin check, fail
closed on garbage, and no secret in errors or reprs."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from aegis_sdk import AegisAuthError, AegisClient, AegisSdkError, AegisUnavailableError, AsyncAegisClient, ClientCredentialsSource, RetryPolicy

from conftest import json_answer

SECRET = "s3cr3t-value-never-shown"


def token_answer(expires_in: int = 600, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    return json_answer(200, {"access_token": f"tok-{time.monotonic_ns()}", "token_type": "Bearer", "expires_in": expires_in, **extra})


def test_5xx_retried_with_backoff_never_sooner_than_retry_after(stub: Any) -> None:
    calls: list[float] = []

    def handler(s: Any, req: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return json_answer(503, {"error": "temporarily_unavailable"}, retry_after="1")
        return token_answer()

    s = stub(handler)
    events: list[Any] = []
    src = ClientCredentialsSource(s.url, "cid", SECRET, token_endpoint=f"{s.url}/oauth2/token", on_refresh=events.append, retry=RetryPolicy(base_delay=0.01))
    assert src.get_token().startswith("tok-")
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.95 and calls[2] - calls[1] >= 0.95
    assert [e.outcome for e in events] == ["retry", "retry", "success"]
    assert events[0].status == 503 and events[0].delay >= 1.0
    src.close()


def test_connection_refused_retried_then_unavailable(stub: Any) -> None:
    s = stub(lambda *_: token_answer())
    url = s.url
    s.close()
    src = ClientCredentialsSource(url, "cid", SECRET, token_endpoint=f"{url}/oauth2/token", retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    with pytest.raises(AegisUnavailableError) as info:
        src.get_token()
    assert info.value.code == "network_error"
    assert SECRET not in repr(info.value) and SECRET not in str(info.value)
    src.close()


def test_retry_after_beyond_max_delay_fails_at_once(stub: Any) -> None:
    s = stub(lambda *_: json_answer(503, {}, retry_after="120"))
    src = ClientCredentialsSource(s.url, "cid", SECRET, token_endpoint=f"{s.url}/oauth2/token")
    started = time.monotonic()
    with pytest.raises(AegisUnavailableError) as info:
        src.get_token()
    assert time.monotonic() - started < 2 and info.value.retry_after == 120
    src.close()


def test_callers_deadline_ends_the_wait_not_the_refresh(stub: Any) -> None:
    def handler(s: Any, req: Any) -> Any:
        time.sleep(1.0)
        return token_answer()

    s = stub(handler)
    src = ClientCredentialsSource(s.url, "cid", SECRET, token_endpoint=f"{s.url}/oauth2/token")
    started = time.monotonic()
    with pytest.raises(AegisUnavailableError) as info:
        src.get_token(timeout=0.2)
    assert info.value.code == "timeout" and time.monotonic() - started < 0.6
    # The refresh went on: the next caller gets its token without a second request.
    assert src.get_token(timeout=3).startswith("tok-")
    assert len(s.requests) == 1

    async def task_deadline() -> None:
        with pytest.raises(AegisUnavailableError):
            await src.aget_token(timeout=0.1, force_refresh=True)
        assert (await src.aget_token(timeout=3, force_refresh=True)).startswith("tok-")

    asyncio.run(task_deadline())
    assert len(s.requests) == 2
    src.close()


def test_auth_errors_not_retried_and_never_echo_the_secret(stub: Any) -> None:
    s = stub(lambda *_: json_answer(401, {"error": "invalid_client", "error_description": "bad credentials"}))
    src = ClientCredentialsSource(s.url, "cid", SECRET, token_endpoint=f"{s.url}/oauth2/token")
    with pytest.raises(AegisAuthError) as info:
        src.get_token()
    assert info.value.code == "invalid_client" and info.value.status == 401
    assert len(s.requests) == 1
    assert SECRET not in repr(src) and SECRET not in str(info.value)
    src.close()


def test_basic_and_post_client_authentication(stub: Any) -> None:
    s = stub(lambda *_: token_answer())
    for method in ("client_secret_basic", "client_secret_post"):
        src = ClientCredentialsSource(s.url, "c id", "p:w&d", auth_method=method, token_endpoint=f"{s.url}/oauth2/token", scope=["a", "b"], audience="aud-1")
        src.get_token()
        src.close()
    basic, post = s.requests[-2], s.requests[-1]
    assert basic[2]["authorization"] == "Basic YytpZDpwJTNBdyUyNmQ="
    assert b"client_secret" not in basic[3] and b"scope=a+b" in basic[3] and b"audience=aud-1" in basic[3]
    assert b"client_id=c+id" in post[3] and b"client_secret=p%3Aw%26d" in post[3] and "authorization" not in post[2]


def test_dpop_token_type_refused_without_a_dpop_transport(stub: Any) -> None:
    s = stub(lambda *_: json_answer(200, {"access_token": "x", "token_type": "DPoP", "expires_in": 60}))
    src = ClientCredentialsSource(s.url, "cid", SECRET, token_endpoint=f"{s.url}/oauth2/token")
    with pytest.raises(AegisSdkError) as info:
        src.get_token()
    assert info.value.code == "invalid_response"
    src.close()


def _gateway(status_url: str, decisions: list[dict[str, Any]]) -> Any:
    def handler(s: Any, req: Any) -> Any:
        if req.path == "/oauth2/token":
            return token_answer()
        if req.path == "/v1/authorize":
            return json_answer(200, decisions.pop(0) if decisions else {"decision": "allow", "enforced": True})
        return json_answer(200, {"id": "apr_1", "status": "approved", "override_token": "ovr"})

    return handler


def test_status_url_on_an_untrusted_origin_is_never_called(stub: Any) -> None:
    evil = stub(lambda *_: json_answer(200, {"id": "apr_1", "status": "approved", "override_token": "x"}))
    gw = stub(_gateway("", []))
    first = {"decision": "approval_needed", "approval": {"id": "apr_1", "status_url": f"{evil.url}/v1/approvals/apr_1"}, "enforced": True}
    gw.handler = _gateway("", [dict(first)])
    client = AegisClient(gw.url, "cid", SECRET, gateway_url=gw.url, token_endpoint=f"{gw.url}/oauth2/token")
    with pytest.raises(AegisSdkError) as info:
        client.authorize({"tool": "payments.transfer", "params": {"amount": 5000}}, wait_for_approval=True, timeout=5)
    assert info.value.code == "approval_url_untrusted"
    assert evil.requests == []

    async def run_async() -> None:
        gw.handler = _gateway("", [dict(first)])
        ac = AsyncAegisClient(gw.url, "cid", SECRET, gateway_url=gw.url, token_endpoint=f"{gw.url}/oauth2/token")
        with pytest.raises(AegisSdkError) as ainfo:
            await ac.authorize({"tool": "payments.transfer", "params": {"amount": 5000}}, wait_for_approval=True, timeout=5)
        assert ainfo.value.code == "approval_url_untrusted"
        ac.close()

    asyncio.run(run_async())
    assert evil.requests == []
    # A relative status_url resolves against the gateway, a trusted origin.
    gw.handler = _gateway("", [{"decision": "approval_needed", "approval": {"id": "apr_1", "status_url": "/v1/approvals/apr_1"}, "enforced": True}])
    d = client.authorize({"tool": "payments.transfer", "params": {"amount": 5000}}, wait_for_approval=True, timeout=5)
    assert d["decision"] == "allow"
    retried = [r for r in gw.requests if r[1] == "/v1/authorize"][-1]
    assert retried[2]["aegis-override"] == "ovr"
    client.close()


def test_gateway_garbage_fails_closed_and_503_is_retried_within_the_deadline(stub: Any) -> None:
    answers = [json_answer(503, {"error": "temporarily_unavailable"}, retry_after="0"), json_answer(200, {"decision": "maybe"})]

    def handler(s: Any, req: Any) -> Any:
        if req.path == "/oauth2/token":
            return token_answer()
        return answers.pop(0) if answers else json_answer(503, {}, retry_after="60")

    gw = stub(handler)
    client = AegisClient(gw.url, "cid", SECRET, gateway_url=gw.url, token_endpoint=f"{gw.url}/oauth2/token")
    with pytest.raises(AegisSdkError) as info:
        client.authorize({"tool": "crm.read"})
    assert info.value.code == "invalid_response"
    started = time.monotonic()
    with pytest.raises(AegisUnavailableError) as info2:
        client.authorize({"tool": "crm.read"}, timeout=5)
    # A Retry-After past the deadline fails now, not at the deadline.
    assert info2.value.retry_after == 60 and time.monotonic() - started < 1.5
    client.close()


def test_request_refreshes_once_on_invalid_token(stub: Any) -> None:
    seen: list[str] = []

    def handler(s: Any, req: Any) -> Any:
        if req.path == "/oauth2/token":
            return token_answer()
        seen.append(req.headers["authorization"])
        if len(seen) == 1:
            return 401, {"www-authenticate": 'Bearer error="invalid_token"'}, b""
        return json_answer(200, {"ok": True})

    s = stub(handler)
    client = AegisClient(s.url, "cid", SECRET, token_endpoint=f"{s.url}/oauth2/token")
    res = client.request("GET", f"{s.url}/tool")
    assert res.status == 200 and json.loads(res.body) == {"ok": True}
    assert len(seen) == 2 and seen[0] != seen[1]
    client.close()
