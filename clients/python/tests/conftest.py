"""Shared fixtures. Integration tests run against a real `aegis dev` whose
URLs and admin token come from the environment (the Node test
test/integration/python-sdk.test.ts starts it and sets them); without
AEGIS_TEST_ISSUER they are skipped, the unit tests still run."""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

ISSUER = os.environ.get("AEGIS_TEST_ISSUER")
GATEWAY = os.environ.get("AEGIS_TEST_GATEWAY_URL")
ADMIN = os.environ.get("AEGIS_TEST_ADMIN_TOKEN")

APPROVAL_POLICY = """
@id("crm-read") permit (principal, action == Action::"crm.read", resource);
@id("transfer-permit") permit (principal, action == Action::"payments.transfer", resource);
@id("transfer-approval") @approval("finance") @reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 } unless { context.override };
"""


def report(name: str, **figures: Any) -> None:
    """Appends measured figures to $AEGIS_TEST_REPORT (the Node test prints them)."""
    path = os.environ.get("AEGIS_TEST_REPORT")
    line = json.dumps({"test": name, **figures})
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    print(line)


class Aegis:
    """The running `aegis dev`, seen through its admin API."""

    def __init__(self, issuer: str, gateway: str, admin_token: str) -> None:
        self.issuer = issuer
        self.gateway = gateway
        self.admin_token = admin_token
        self.env = os.environ

    def admin(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201, 204)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.issuer}/admin/v1{path}", data=data, method=method, headers={
            "authorization": f"Bearer {self.admin_token}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                status, text = res.status, res.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        assert status in expect, f"{method} {path} answered {status}: {text}"
        return json.loads(text) if text else {}

    def tenant(self, policy: str | None = None) -> str:
        t = f"py-{secrets.token_hex(4)}"
        self.admin("POST", "/tenants", {"id": t, "name": "python sdk tests"})
        if policy is not None:
            pol = self.admin("POST", f"/tenants/{t}/policies", {"version": f"2026-12-01.{secrets.token_hex(3)}", "cedar": policy, "mode": "enforce"})
            self.admin("POST", f"/tenants/{t}/policies/{pol['id']}/activate")
        return t

    def agent(self, tenant: str, agent_id: str, capabilities: list[str], **extra: Any) -> dict[str, Any]:
        body = {"agent_id": agent_id, "scopes": ["crm:read", "payments:write"], "capabilities": capabilities, "max_ttl_seconds": 900, **extra}
        return self.admin("POST", f"/tenants/{tenant}/agents", body)  # type: ignore[no-any-return]

    def credential(self, tenant: str, agent_id: str, single_use: bool = False) -> tuple[str, str]:
        c = self.admin("POST", f"/tenants/{tenant}/agents/{agent_id}/bootstrap-credentials", {"ttl_seconds": 3600, "single_use": single_use})
        return c["client_id"], c["client_secret"]

    def pending_approval(self, tenant: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            listed = self.admin("GET", f"/approvals?status=pending&tenant={tenant}")
            items = listed["approvals"]
            mine = [a for a in items if a.get("tenant") == tenant]
            if mine:
                return mine[0]  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise AssertionError("no pending approval appeared")


@pytest.fixture(scope="session")
def aegis() -> Aegis:
    if not (ISSUER and GATEWAY and ADMIN):
        pytest.skip("no running aegis dev: set AEGIS_TEST_ISSUER, AEGIS_TEST_GATEWAY_URL, AEGIS_TEST_ADMIN_TOKEN (npm test -- python does)")
    return Aegis(ISSUER, GATEWAY, ADMIN)


class StubServer:
    """A scripted HTTP server on 127.0.0.1 for the client's failure paths."""

    def __init__(self, handler: Callable[["StubServer", BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes] | None]) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                stub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = stub.handler(stub, self)
                if answer is None:
                    time.sleep(30)
                    return
                status, headers, payload = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[..., StubServer]]:
    made: list[StubServer] = []

    def make(handler: Callable[..., Any]) -> StubServer:
        s = StubServer(handler)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def json_answer(status: int, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}, json.dumps(body).encode()
