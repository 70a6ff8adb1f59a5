"""``client_credentials`` with private_key_jwt client authentication
(RFC 7523 §2.2): a short-lived assertion signed with the agent's private
key, a new ``jti`` every request. Needs ``cryptography``."""
from __future__ import annotations

import time
import uuid
from typing import Any

from ._jws import default_alg, load_private_key, sign_jws
from .token_source import FormParams, OAuthTokenSource

__all__ = ["PrivateKeyJwtSource", "CLIENT_ASSERTION_TYPE"]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class PrivateKeyJwtSource(OAuthTokenSource):
    """Token source authenticating with a signed client assertion.

    ``private_key``: a ``cryptography`` private key (Ed25519, P-256, RSA), PEM
    text/bytes or a PEM file path; the matching public key is registered as
    the agent's ``jwks``.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        private_key: Any,
        *,
        kid: str | None = None,
        alg: str | None = None,
        assertion_audience: str | None = None,
        assertion_lifetime: int = 60,
        **options: Any,
    ) -> None:
        super().__init__(issuer, **options)
        if not isinstance(client_id, str) or not client_id:
            raise TypeError("client_id is required")
        self._client_id = client_id
        self._key = load_private_key(private_key)
        self._alg = alg or default_alg(self._key)
        self._kid = kid
        self._aud = assertion_audience or issuer
        self._lifetime = min(300, max(5, assertion_lifetime))

    def __repr__(self) -> str:
        return f"PrivateKeyJwtSource(issuer={self.issuer!r}, client_id={self._client_id!r})"

    def assertion(self, now: int | None = None) -> str:
        """A fresh client assertion."""
        iat = int(time.time()) if now is None else now
        header: dict[str, Any] = {"typ": "JWT", **({"kid": self._kid} if self._kid else {})}
        claims = {"iss": self._client_id, "sub": self._client_id, "aud": self._aud, "jti": str(uuid.uuid4()), "iat": iat, "exp": iat + self._lifetime}
        return sign_jws(header, claims, self._key, self._alg)

    def _token_request(self) -> tuple[FormParams, dict[str, str]]:
        return [
            ("grant_type", "client_credentials"),
            ("client_id", self._client_id),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", self.assertion()),
        ], {}
