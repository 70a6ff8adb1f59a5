"""DPoP (RFC 9449) on the agent side: a key pair that signs a fresh proof for
every request, and a transport wrapper that adds them. Token requests get a
proof, so the token comes back bound to the key (``token_type: DPoP``);
requests carrying ``Authorization: Bearer <token>`` are sent as
``Authorization: DPoP <token>`` with a proof holding the token's hash
(``ath``). A ``use_dpop_nonce`` answer is retried once with the server's
``DPoP-Nonce``. Needs ``cryptography``.

    key = DpopKey.generate()
    transport = key.transport()
    client = AegisClient(issuer, client_id, secret, gateway_url=gw, transport=transport)
"""
from __future__ import annotations

import hashlib
import threading
import time
import urllib.parse
import uuid
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ._http import Response, Transport, UrllibTransport
from ._jws import PrivateKey, b64url, default_alg, jwk_thumbprint, load_private_key, public_jwk, sign_jws
from ._util import bearer_challenge_error, origin_of

__all__ = ["DpopKey", "DpopTransport"]


class DpopKey:
    """A DPoP key pair. Keep one per agent process; the private key never leaves it."""

    def __init__(self, key: PrivateKey, alg: str | None = None) -> None:
        self._key = key
        self.alg = alg or default_alg(key)
        self.public_jwk = public_jwk(key)
        #: RFC 7638 thumbprint: the ``cnf.jkt`` of tokens bound to this key.
        self.thumbprint = jwk_thumbprint(self.public_jwk)
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DpopKey(alg={self.alg!r}, jkt={self.thumbprint!r})"

    @classmethod
    def generate(cls, alg: str = "ES256") -> "DpopKey":
        """A fresh key pair: ``ES256`` (P-256, default) or ``EdDSA`` (Ed25519)."""
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate(), "EdDSA")
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), "ES256")
        raise ValueError("alg must be ES256 or EdDSA")

    @classmethod
    def from_private_key(cls, key: Any, alg: str | None = None) -> "DpopKey":
        return cls(load_private_key(key), alg)

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None, iat: int | None = None) -> str:
        """A proof for one request (§4.2): ``htu`` without query and fragment."""
        u = urllib.parse.urlsplit(url)
        payload: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method.upper(),
            "htu": f"{u.scheme}://{u.netloc}{u.path}",
            "iat": int(time.time()) if iat is None else iat,
        }
        if access_token is not None:
            payload["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        with self._lock:
            n = nonce if nonce is not None else self._nonces.get(origin_of(url))
        if n is not None:
            payload["nonce"] = n
        return sign_jws({"typ": "dpop+jwt", "jwk": self.public_jwk}, payload, self._key, self.alg)

    def remember_nonce(self, url: str, nonce: str) -> None:
        if 0 < len(nonce) <= 256:
            with self._lock:
                self._nonces[origin_of(url)] = nonce

    def transport(self, base: Transport | None = None) -> "DpopTransport":
        """A transport that adds proofs; give it to the token source and the client."""
        return DpopTransport(self, base or UrllibTransport())


class DpopTransport:
    """Wraps a transport: a proof on every request, Bearer → DPoP, nonce retry."""

    #: Token sources accept ``token_type: DPoP`` only through a transport that holds the key.
    aegis_dpop = True

    def __init__(self, key: DpopKey, base: Transport) -> None:
        self.key = key
        self.base = base

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float) -> Response:
        def send() -> Response:
            hdrs = dict(headers)
            token: str | None = None
            for name in list(hdrs):
                if name.lower() == "authorization":
                    value = hdrs.pop(name)
                    scheme, _, rest = value.partition(" ")
                    if scheme.lower() in ("bearer", "dpop") and rest.strip():
                        token = rest.strip()
                        hdrs["Authorization"] = f"DPoP {token}"
                    else:
                        hdrs[name] = value
            hdrs["DPoP"] = self.key.proof(method, url, access_token=token)
            res = self.base.request(method, url, hdrs, body, timeout)
            nonce = res.header("dpop-nonce")
            if nonce:
                self.key.remember_nonce(url, nonce)
            return res

        first = send()
        if not _wants_nonce(first):
            return first
        return send()


def _wants_nonce(res: Response) -> bool:
    if res.header("dpop-nonce") is None:
        return False
    if res.status == 401:
        return bearer_challenge_error(res.header("www-authenticate")) == "use_dpop_nonce" or "use_dpop_nonce" in (res.header("www-authenticate") or "")
    if res.status != 400:
        return False
    data = res.json_object()
    return data is not None and data.get("error") == "use_dpop_nonce"
