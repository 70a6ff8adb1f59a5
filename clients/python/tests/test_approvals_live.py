"""Approvals end to end against a real `aegis dev` (sync and async clients),
the httpx/requests auth hooks refreshing on invalid_token, and the examples
run as their own processes."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import pytest

from aegis_sdk import AegisClient, AsyncAegisClient, ClientCredentialsSource, UrllibTransport

from conftest import APPROVAL_POLICY, Aegis, report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TRANSFER = {"tool": "payments.transfer", "params": {"amount": 5000, "currency": "EUR"}}


def transfer(amount: int) -> dict[str, Any]:
    # Distinct parameters per test: a gateway answers an identical ask from a
    # 2 s cache of the approval it opened (src/gateway/approvals/hook.ts),
    # even once that approval's override was used.
    return {"tool": "payments.transfer", "params": {"amount": amount, "currency": "EUR"}}


@pytest.fixture(scope="module")
def approvals(aegis: Aegis) -> dict[str, Any]:
    tenant = aegis.tenant(APPROVAL_POLICY)
    aegis.agent(tenant, "payer", ["crm.read", "payments.transfer"])
    cid, secret = aegis.credential(tenant, "payer")
    # The gateway follows the policy through its feed: wait until it decides with it (a dry run opens nothing).
    with AegisClient(aegis.issuer, cid, secret, gateway_url=aegis.gateway) as c:
        deadline = time.time() + 15
        while c.authorize(TRANSFER, dry_run=True)["decision"] != "approval_needed":
            assert time.time() < deadline, "the gateway never loaded the policy"
            time.sleep(0.1)
    return {"tenant": tenant, "client_id": cid, "client_secret": secret}


def decide_when_pending(aegis: Aegis, tenant: str, verb: str, delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        pending = aegis.pending_approval(tenant)
        time.sleep(delay)
        aegis.admin("POST", f"/approvals/{pending['id']}/{verb}", {"reason": "python sdk test"})

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_approval_followed_to_its_override_sync(aegis: Aegis, approvals: dict[str, Any]) -> None:
    with AegisClient(aegis.issuer, approvals["client_id"], approvals["client_secret"], gateway_url=aegis.gateway) as c:
        approver = decide_when_pending(aegis, approvals["tenant"], "approve")
        started = time.monotonic()
        d = c.authorize(transfer(5001), wait_for_approval=True, timeout=30)
        approver.join()
        assert d["decision"] == "allow" and d["enforced"] is True
        assert any("approv" in r for r in d["reasons"]), d["reasons"]
        report("approval_sync", waited_s=round(time.monotonic() - started, 2), reasons=d["reasons"])
        # Without waiting, the same call opens another approval and says so.
        nowait = c.authorize(transfer(5002))
        assert nowait["decision"] == "approval_needed" and nowait["approval"]["status_url"].startswith(aegis.issuer)
        assert "outcome" not in nowait["approval"]
        aegis.admin("POST", f"/approvals/{nowait['approval']['id']}/deny", {"reason": "cleanup"}, expect=(200, 409))


def test_approval_followed_to_its_override_async(aegis: Aegis, approvals: dict[str, Any]) -> None:
    async def run() -> Any:
        async with AsyncAegisClient(aegis.issuer, approvals["client_id"], approvals["client_secret"], gateway_url=aegis.gateway) as c:
            # The event loop keeps running while the approval is awaited.
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            t = asyncio.create_task(ticker())
            d = await c.authorize(transfer(5003), wait_for_approval=True, timeout=30)
            t.cancel()
            return d, ticks

    approver = decide_when_pending(aegis, approvals["tenant"], "approve", delay=0.5)
    d, ticks = asyncio.run(run())
    approver.join()
    assert d["decision"] == "allow"
    assert ticks >= 5


def test_denied_and_timed_out_approvals_never_mean_go(aegis: Aegis, approvals: dict[str, Any]) -> None:
    with AegisClient(aegis.issuer, approvals["client_id"], approvals["client_secret"], gateway_url=aegis.gateway) as c:
        denier = decide_when_pending(aegis, approvals["tenant"], "deny")
        d = c.authorize(transfer(5004), wait_for_approval=True, timeout=30)
        denier.join()
        assert d["decision"] == "approval_needed" and d["approval"]["outcome"] == "denied"
        started = time.monotonic()
        t = c.authorize(transfer(5005), wait_for_approval=True, timeout=2)
        assert t["decision"] == "approval_needed" and t["approval"]["outcome"] == "timeout"
        assert time.monotonic() - started < 4
        aegis.admin("POST", f"/approvals/{t['approval']['id']}/deny", {"reason": "cleanup"}, expect=(200, 409))


def _jti(token: str) -> str:
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["jti"]  # type: ignore[no-any-return]


def _revoke_and_wait(aegis: Aegis, tenant: str, token: str) -> None:
    aegis.admin("POST", "/revocations", {"type": "jti", "value": _jti(token), "tenant": tenant, "reason": "python sdk test"})
    deadline = time.time() + 5
    while True:
        r = UrllibTransport().request("POST", f"{aegis.gateway}/v1/authorize", {"content-type": "application/json", "authorization": f"Bearer {token}"},
                                      b'{"action":{"tool":"crm.read"}}', 5)
        if r.status == 401:
            return
        assert time.time() < deadline, "revocation never reached the gateway"
        time.sleep(0.05)


def test_httpx_auth_refreshes_and_retries_once_on_invalid_token(aegis: Aegis, approvals: dict[str, Any]) -> None:
    import httpx

    from aegis_sdk.auth import AegisHttpxAuth

    src = ClientCredentialsSource(aegis.issuer, approvals["client_id"], approvals["client_secret"])
    body = {"action": {"tool": "crm.read", "params": {"id": "1"}}}
    try:
        with httpx.Client(auth=AegisHttpxAuth(src)) as http:
            assert http.post(f"{aegis.gateway}/v1/authorize", json=body).json()["decision"] == "allow"
            old = src.get_token()
            _revoke_and_wait(aegis, approvals["tenant"], old)
            r = http.post(f"{aegis.gateway}/v1/authorize", json=body)
            assert r.status_code == 200 and r.json()["decision"] == "allow"
            assert src.get_token() != old
            assert len(r.history) == 0 or r.history[0].status_code == 401

        async def run_async() -> None:
            async with httpx.AsyncClient(auth=AegisHttpxAuth(src)) as ahttp:
                old2 = await src.aget_token()
                await asyncio.to_thread(_revoke_and_wait, aegis, approvals["tenant"], old2)
                r2 = await ahttp.post(f"{aegis.gateway}/v1/authorize", json=body)
                assert r2.status_code == 200 and (await src.aget_token()) != old2

        asyncio.run(run_async())
    finally:
        src.close()


def test_requests_auth_refreshes_and_retries_once_on_invalid_token(aegis: Aegis, approvals: dict[str, Any]) -> None:
    requests = pytest.importorskip("requests")
    from aegis_sdk.auth import AegisRequestsAuth

    src = ClientCredentialsSource(aegis.issuer, approvals["client_id"], approvals["client_secret"])
    try:
        auth = AegisRequestsAuth(src)
        body = {"action": {"tool": "crm.read"}}
        assert requests.post(f"{aegis.gateway}/v1/authorize", json=body, auth=auth).json()["decision"] == "allow"
        old = src.get_token()
        _revoke_and_wait(aegis, approvals["tenant"], old)
        r = requests.post(f"{aegis.gateway}/v1/authorize", json=body, auth=auth)
        assert r.status_code == 200 and r.history[0].status_code == 401
    finally:
        src.close()


# -- the examples, as a user runs them ---------------------------------------------


def _env(aegis: Aegis, approvals: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "AEGIS_ISSUER": aegis.issuer, "AEGIS_GATEWAY_URL": aegis.gateway,
            "AEGIS_CLIENT_ID": approvals["client_id"], "AEGIS_CLIENT_SECRET": approvals["client_secret"], **extra}


@pytest.fixture(scope="module")
def tool_server(aegis: Aegis) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "asgi_tool_server.py")],
                            env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "AEGIS_ISSUER": aegis.issuer, "TOOL_PORT": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield json.loads(line)["listening"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_asgi_tool_server_refuses_without_token(tool_server: str) -> None:
    r = UrllibTransport().request("GET", f"{tool_server}/crm/records/42", {}, None, 5)
    assert r.status == 401 and (r.header("www-authenticate") or "").startswith("Bearer")
    assert r.json_object() == {"error": "invalid_token", "error_description": "missing bearer token"}
    assert UrllibTransport().request("GET", f"{tool_server}/healthz", {}, None, 5).status == 200


def test_agent_example_with_approval_and_tool_call(aegis: Aegis, approvals: dict[str, Any], tool_server: str) -> None:
    approver = decide_when_pending(aegis, approvals["tenant"], "approve")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "agent_call.py")],
                          env=_env(aegis, approvals, AEGIS_TOOL_URL=tool_server, AEGIS_APPROVAL_TIMEOUT="30"),
                          capture_output=True, text=True, timeout=60)
    approver.join()
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"step"')]
    names = [s["step"] for s in steps]
    assert names == ["would_be", "dry_run", "authorize", "tool_call", "authorize"], names
    assert steps[1]["decision"] == "approval_needed" and steps[1]["enforced"] is False
    assert steps[3]["status"] == 200 and steps[3]["body"]["served_to"]["agent_id"] == "payer"
    assert steps[4]["decision"] == "allow"
    assert approvals["client_secret"] not in done.stdout + done.stderr


def test_tool_wrapper_example(aegis: Aegis, approvals: dict[str, Any], tool_server: str) -> None:
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tool_wrapper.py")], env=_env(aegis, approvals, AEGIS_TOOL_URL=tool_server),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["tool"] == "crm.read" and lines[0]["result"]["record"]["id"] == "42"
    assert lines[0]["schema"]["required"] == ["id"]
    assert lines[1]["tool"] == "crm.delete" and "deny" in lines[1]["refused"]
