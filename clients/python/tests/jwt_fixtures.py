"""Keys, a JWKS server and token signers for the verifier tests: the Python
twin of test/unit/verify/fixtures.ts (honest signer + raw signer for attack
tokens nobody honest would make)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

AUDIENCE = "aegis-gateway"


def b64(v: Any) -> str:
    data = v if isinstance(v, bytes) else (v.encode() if isinstance(v, str) else json.dumps(v, separators=(",", ":")).encode())
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TestKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]


def ed25519_key(kid: str) -> TestKey:
    k = ed25519.Ed25519PrivateKey.generate()
    raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TestKey(kid, "EdDSA", k, {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": kid, "alg": "EdDSA", "use": "sig"})


def rsa_key(kid: str, alg: str, bits: int = 2048) -> TestKey:
    k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    n = k.public_key().public_numbers()
    return TestKey(kid, alg, k, {"kty": "RSA", "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64(n.e.to_bytes(3, "big")),
                                 "kid": kid, "alg": alg, "use": "sig"})


def claims_at(issuer: str, now: int, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": issuer, "sub": "billing-bot", "agent_id": "billing-bot", "client_id": "cl_1", "tenant": "acme",
        "aud": AUDIENCE, "scope": "payments:write crm:read", "iat": now, "nbf": now, "exp": now + 600,
        "jti": f"jti_{secrets.token_hex(6)}", "policy_version": "2026-11-28.1", "capability_hash": "h" * 43,
    }
    for k, v in extra.items():
        if v is _DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


_DROP = object()
DROP: Any = _DROP


def _sig(key: Any, data: bytes, alg: str | None = None) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if alg == "PS256":
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def sign_token(key: TestKey, claims: dict[str, Any], **header: Any) -> str:
    """What an honest issuer makes."""
    h = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid, **header}
    return raw_sign(h, claims, key.private, key.alg)


def raw_sign(header: dict[str, Any], payload: Any, key: Any, alg: str | None = None) -> str:
    """Any header/payload, signed as given (attack tokens)."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    if key is None:
        return f"{signing_input}."
    return f"{signing_input}.{b64(_sig(key, signing_input.encode(), alg))}"


def hmac_sign(header: dict[str, Any], payload: Any, secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


class JwksServer:
    """A real JWKS server on 127.0.0.1 (ETag, Cache-Control, metadata, request log)."""

    def __init__(self, keys: list[TestKey]) -> None:
        self.keys = [k.jwk for k in keys]
        self.mode = "ok"
        self.max_age: int | None = 300
        self.requests: list[tuple[str, str | None]] = []
        state = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                inm = self.headers.get("if-none-match")
                state.requests.append((path, inm))
                if path == "/.well-known/oauth-authorization-server":
                    return self._send(200, json.dumps({"issuer": state.url, "jwks_uri": state.jwks_url}).encode(), {"content-type": "application/json"})
                if path != "/.well-known/jwks.json":
                    return self._send(404, b"", {})
                if state.mode == "error":
                    return self._send(503, b"down", {})
                if state.mode == "garbage":
                    return self._send(200, b"<html>not json", {"content-type": "application/json"})
                body = json.dumps({"keys": state.keys}).encode()
                etag = '"' + b64(hashlib.sha256(body).digest()) + '"'
                headers = {"etag": etag}
                if state.max_age is not None:
                    headers["cache-control"] = f"public, max-age={state.max_age}"
                if inm == etag:
                    return self._send(304, b"", headers)
                self._send(200, body, {**headers, "content-type": "application/jwk-set+json"})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_url = f"{self.url}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwks_requests(self) -> int:
        return sum(1 for p, _ in self.requests if p == "/.well-known/jwks.json")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Decoy:
    """Counts requests: stands for an attacker's key URL."""

    def __init__(self) -> None:
        self.hits = 0
        decoy = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                decoy.hits += 1
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
