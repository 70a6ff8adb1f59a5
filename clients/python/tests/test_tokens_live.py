"""Token sources against a real `aegis dev`: refresh jitter spread over the
window (measured), single flight under 50 threads and 50 asyncio tasks,
every credential kind, DPoP-bound calls."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import threading
import time
from typing import Any

import pytest

from aegis_sdk import (
    TOKEN_TYPE_ACCESS_TOKEN, AegisAuthError, AegisClient, ClientCredentialsSource, RefreshInfo, TlsClientAuthSource,
    TokenExchangeSource, UrllibTransport, discover_mtls_token_endpoint, mtls_transport, subject_token_file,
)
from aegis_sdk._http import Response
from aegis_sdk.verify import Verifier

from conftest import Aegis, report


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


class CountingTransport:
    """Counts token requests (what single flight must keep at one)."""

    def __init__(self) -> None:
        self.base = UrllibTransport()
        self.token_requests = 0
        self.lock = threading.Lock()

    def request(self, method: str, url: str, headers: Any, body: Any, timeout: float) -> Response:
        if url.endswith("/oauth2/token"):
            with self.lock:
                self.token_requests += 1
            # Slow enough that every waiter arrives while the request is in flight.
            time.sleep(0.2)
        return self.base.request(method, url, headers, body, timeout)


@pytest.fixture(scope="module")
def tenant(aegis: Aegis) -> str:
    return aegis.tenant()


def test_refresh_jitter_spreads_refreshes_over_the_window(aegis: Aegis, tenant: str) -> None:
    lifetime = 8
    aegis.agent(tenant, "jitter", ["crm.read"], max_ttl_seconds=lifetime)
    cid, secret = aegis.credential(tenant, "jitter")
    n = 40
    events: list[list[RefreshInfo]] = [[] for _ in range(n)]
    sources = [ClientCredentialsSource(aegis.issuer, cid, secret, on_refresh=events[i].append) for i in range(n)]
    try:
        threads = [threading.Thread(target=s.get_token) for s in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.time() + lifetime + 3
        while time.time() < deadline and not all(any(e.background and e.outcome == "success" for e in ev) for ev in events):
            time.sleep(0.2)
        fractions = []
        for ev in events:
            first = next(e for e in ev if not e.background and e.outcome == "success")
            bg = next(e for e in ev if e.background and e.outcome == "success")
            assert first.expires_at is not None and first.refresh_at is not None
            assert first.expires_at - first.started_at == pytest.approx(lifetime, abs=0.01)
            fractions.append((bg.started_at - first.started_at) / lifetime)
        lo, hi = min(fractions), max(fractions)
        spread_s = (hi - lo) * lifetime
        quartiles = [sum(1 for f in fractions if 0.6 + q * 0.0625 <= f < 0.6 + (q + 1) * 0.0625 + (0.05 if q == 3 else 0)) for q in range(4)]
        stdev_s = statistics.pstdev(fractions) * lifetime
        report("refresh_jitter", clients=n, lifetime_s=lifetime, window="60-85 %", earliest_pct=round(lo * 100, 1), latest_pct=round(hi * 100, 1),
               spread_s=round(spread_s, 2), stdev_s=round(stdev_s, 3), uniform_stdev_s=round(0.25 * lifetime / 12 ** 0.5, 3), per_quarter_of_window=quartiles)
        # Every refresh inside the window (timers fire a little late, never early).
        assert lo >= 0.6 - 0.01 and hi <= 0.85 + 0.05, fractions
        # Spread over it, not bunched: most of the window used, every quarter of it hit.
        assert spread_s >= 0.6 * 0.25 * lifetime, fractions
        assert all(q > 0 for q in quartiles), quartiles
        assert stdev_s >= 0.5 * 0.25 * lifetime / 12 ** 0.5
    finally:
        for s in sources:
            s.close()


def test_single_flight_under_50_threads_and_50_tasks(aegis: Aegis, tenant: str) -> None:
    aegis.agent(tenant, "flight", ["crm.read"])
    cid, secret = aegis.credential(tenant, "flight")
    counting = CountingTransport()
    src = ClientCredentialsSource(aegis.issuer, cid, secret, transport=counting, token_endpoint=f"{aegis.issuer}/oauth2/token")
    try:
        barrier = threading.Barrier(50)
        got: list[str] = []

        def worker() -> None:
            barrier.wait()
            got.append(src.get_token())

        threads = [threading.Thread(target=worker) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 50 and len(set(got)) == 1
        assert counting.token_requests == 1

        async def tasks() -> list[str]:
            return await asyncio.gather(*(src.aget_token(force_refresh=True) for _ in range(50)))

        tokens = asyncio.run(tasks())
        assert len(set(tokens)) == 1 and tokens[0] != got[0]
        assert counting.token_requests == 2

        # Threads and tasks (of two event loops) at once, after the token was refused: still one request.
        src.invalidate(tokens[0])
        mixed: list[str] = []
        start = threading.Barrier(27)

        def thread_caller() -> None:
            start.wait()
            mixed.append(src.get_token())

        def loop_caller() -> None:
            async def many() -> list[str]:
                return await asyncio.gather(*(src.aget_token() for _ in range(25)))

            start.wait()
            mixed.extend(asyncio.run(many()))

        ts = [threading.Thread(target=thread_caller) for _ in range(25)] + [threading.Thread(target=loop_caller) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(mixed) == 75 and len(set(mixed)) == 1 and mixed[0] != tokens[0]
        assert counting.token_requests == 3
        report("single_flight", threads=50, tasks=50, mixed="25 threads + 2 loops x 25 tasks", token_requests=[1, 1, 1])
    finally:
        src.close()


def test_client_secret_basic_and_post(aegis: Aegis, tenant: str) -> None:
    aegis.agent(tenant, "basic", ["crm.read"])
    for method in ("client_secret_basic", "client_secret_post"):
        cid, secret = aegis.credential(tenant, "basic")
        with AegisClient(aegis.issuer, cid, secret, gateway_url=aegis.gateway, auth_method=method, scope="crm:read") as c:
            assert c.authorize({"tool": "crm.read", "params": {"id": "1"}})["decision"] == "allow"
            assert claims_of(c.get_token())["scope"] == "crm:read"
    with pytest.raises(AegisAuthError) as info:
        ClientCredentialsSource(aegis.issuer, cid, "wrong-secret").get_token()
    assert info.value.code == "invalid_client" and "wrong-secret" not in str(info.value)


def test_private_key_jwt(aegis: Aegis, tenant: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from aegis_sdk._jws import public_jwk
    from aegis_sdk.private_key_jwt import PrivateKeyJwtSource

    key = ed25519.Ed25519PrivateKey.generate()
    jwk = {**public_jwk(key), "kid": "py-1", "alg": "EdDSA", "use": "sig"}
    client_id = aegis.agent(tenant, "pkjwt", ["crm.read"], token_endpoint_auth_method="private_key_jwt", jwks={"keys": [jwk]})["client_id"]
    src = PrivateKeyJwtSource(aegis.issuer, client_id, key, kid="py-1")
    try:
        a = src.get_token()
        b = src.get_token(force_refresh=True)
        assert a != b and claims_of(b)["client_id"] == client_id and claims_of(b)["agent_id"] == "pkjwt"
        with AegisClient(aegis.issuer, token_source=src, gateway_url=aegis.gateway) as c:
            assert c.authorize({"tool": "crm.read"})["decision"] == "allow"
    finally:
        src.close()


def test_workload_identity_token_exchange(aegis: Aegis, tenant: str, tmp_path: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from aegis_sdk._jws import public_jwk, sign_jws

    aegis.agent(tenant, "wl", ["crm.read"])
    key = ec.generate_private_key(ec.SECP256R1())
    iss = f"https://kubernetes.{tenant}.test"
    aegis.admin("POST", f"/tenants/{tenant}/trusted-issuers", {
        "issuer": iss, "jwks": {"keys": [{**public_jwk(key), "kid": "k8s", "alg": "ES256"}]}, "audience": "aegis",
        "rules": [{"claims": {"sub": "system:serviceaccount:ns:wl"}, "agent_id": "wl"}],
    })
    now = int(time.time())
    path = tmp_path / "token"
    path.write_text(sign_jws({"kid": "k8s", "typ": "JWT"}, {"iss": iss, "sub": "system:serviceaccount:ns:wl", "aud": "aegis", "iat": now, "exp": now + 600},
                             key, "ES256"))
    src = TokenExchangeSource(aegis.issuer, subject_token_file(str(path)))
    try:
        at = src.get_access_token()
        assert at.issued_token_type == TOKEN_TYPE_ACCESS_TOKEN
        assert claims_of(at.access_token)["agent_id"] == "wl"
        assert at.access_token not in repr(at)
    finally:
        src.close()


def test_mtls_tls_client_auth_and_bound_token(aegis: Aegis, tenant: str) -> None:
    env = aegis.env
    needed = ("AEGIS_TEST_CA_FILE", "AEGIS_TEST_CLIENT_CERT", "AEGIS_TEST_CLIENT_KEY", "AEGIS_TEST_CLIENT_SAN_URI", "AEGIS_TEST_GATEWAY_TLS_URL")
    if not all(env.get(n) for n in needed):
        pytest.skip("aegis dev was started without TLS listeners")
    client_id = aegis.agent(tenant, "mt", ["crm.read"], token_endpoint_auth_method="tls_client_auth",
                            tls_client_auth_san_uri=env["AEGIS_TEST_CLIENT_SAN_URI"])["client_id"]
    transport = mtls_transport(env["AEGIS_TEST_CLIENT_CERT"], env["AEGIS_TEST_CLIENT_KEY"], env["AEGIS_TEST_CA_FILE"])
    endpoint = discover_mtls_token_endpoint(aegis.issuer)
    assert endpoint.startswith("https://")
    src = TlsClientAuthSource(aegis.issuer, client_id, token_endpoint=endpoint, transport=transport)
    try:
        with AegisClient(aegis.issuer, token_source=src, gateway_url=env["AEGIS_TEST_GATEWAY_TLS_URL"], transport=transport) as c:
            assert c.authorize({"tool": "crm.read"})["decision"] == "allow"
        token = src.get_token()
        assert claims_of(token)["cnf"]["x5t#S256"]
        # The bound token without the certificate is refused.
        with AegisClient(aegis.issuer, token_source=src, gateway_url=aegis.gateway) as bare:
            with pytest.raises(Exception) as info:
                bare.authorize({"tool": "crm.read"})
            assert getattr(info.value, "code", None) == "invalid_token"
    finally:
        src.close()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_dpop_bound_token_and_calls(aegis: Aegis, tenant: str, alg: str) -> None:
    from aegis_sdk.auth import AegisHttpxAuth
    from aegis_sdk.dpop import DpopKey

    agent = f"dp-{alg.lower()}"
    aegis.agent(tenant, agent, ["crm.read"])
    cid, secret = aegis.credential(tenant, agent)
    key = DpopKey.generate(alg)
    with AegisClient(aegis.issuer, cid, secret, gateway_url=aegis.gateway, transport=key.transport()) as c:
        at = c.token_source.get_access_token()
        assert at.token_type == "DPoP" and claims_of(at.access_token)["cnf"]["jkt"] == key.thumbprint
        assert c.authorize({"tool": "crm.read", "params": {}})["decision"] == "allow"
        assert c.authorize({"tool": "crm.read", "params": {}})["decision"] == "allow"
        # Without the key the same token is refused.
        bare = UrllibTransport().request("POST", f"{aegis.gateway}/v1/authorize",
                                         {"content-type": "application/json", "authorization": f"Bearer {at.access_token}"},
                                         b'{"action":{"tool":"crm.read"}}', 5)
        assert bare.status == 401
        # The httpx hook with the key sends DPoP + a fresh proof.
        import httpx

        with httpx.Client(auth=AegisHttpxAuth(c.token_source, dpop=key)) as http:
            r = http.post(f"{aegis.gateway}/v1/authorize", json={"action": {"tool": "crm.read"}})
            assert r.status_code == 200 and r.json()["decision"] == "allow"


def test_python_verifier_accepts_real_tokens_and_refuses_tampered(aegis: Aegis, tenant: str) -> None:
    aegis.agent(tenant, "ver", ["crm.read"])
    cid, secret = aegis.credential(tenant, "ver")
    src = ClientCredentialsSource(aegis.issuer, cid, secret)
    v = Verifier(aegis.issuer, "aegis-gateway")
    try:
        token = src.get_token()
        assert v.verify(token).claims["agent_id"] == "ver"
        h, p, s = token.split(".")
        forged = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        forged["agent_id"] = "admin"
        fp = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        with pytest.raises(Exception) as info:
            v.verify(f"{h}.{fp}.{s}")
        assert getattr(info.value, "reason", None) == "signature"
    finally:
        src.close()
        v.close()
