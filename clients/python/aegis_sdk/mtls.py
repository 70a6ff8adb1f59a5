"""mTLS (RFC 8705) on the agent side with the standard library's ``ssl``: a
transport presenting a client certificate, a token source for
``tls_client_auth``, and discovery of the token endpoint's mTLS alias.
Tokens obtained over mTLS are bound to the certificate (``cnf.x5t#S256``):
use the same transport towards the gateway's TLS port."""
from __future__ import annotations

import ssl
from typing import Any

from ._http import Transport, UrllibTransport
from ._util import strip_slash, well_known_url
from .errors import AegisSdkError
from .token_source import FormParams, OAuthTokenSource

__all__ = ["mtls_transport", "TlsClientAuthSource", "discover_mtls_token_endpoint"]


def mtls_transport(cert_file: str, key_file: str, ca_file: str | None = None, *, key_password: str | None = None) -> UrllibTransport:
    """A transport presenting the client certificate on every https request.
    ``ca_file`` trusts a private CA for the server (default: the system's)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.load_cert_chain(cert_file, key_file, password=key_password)
    return UrllibTransport(ssl_context=ctx)


class TlsClientAuthSource(OAuthTokenSource):
    """``client_credentials`` authenticated by the TLS client certificate
    (RFC 8705 §2.1). ``token_endpoint`` is the mTLS alias (see
    :func:`discover_mtls_token_endpoint`); ``transport`` an :func:`mtls_transport`."""

    def __init__(self, issuer: str, client_id: str, *, token_endpoint: str, transport: Transport, **options: Any) -> None:
        if not token_endpoint:
            raise TypeError("token_endpoint (the mTLS alias) is required")
        super().__init__(issuer, token_endpoint=token_endpoint, transport=transport, **options)
        if not isinstance(client_id, str) or not client_id:
            raise TypeError("client_id is required")
        self._client_id = client_id

    def __repr__(self) -> str:
        return f"TlsClientAuthSource(issuer={self.issuer!r}, client_id={self._client_id!r})"

    def _token_request(self) -> tuple[FormParams, dict[str, str]]:
        return [("grant_type", "client_credentials"), ("client_id", self._client_id)], {}


def discover_mtls_token_endpoint(issuer: str, transport: Transport | None = None, timeout: float = 10.0) -> str:
    """``mtls_endpoint_aliases.token_endpoint`` from RFC 8414 metadata (RFC 8705 §5)."""
    res = (transport or UrllibTransport()).request("GET", well_known_url(issuer), {"Accept": "application/json"}, None, timeout)
    meta = res.json_object()
    if res.status != 200 or meta is None:
        raise AegisSdkError("discovery_failed", f"authorization server metadata answered {res.status}", status=res.status)
    iss = meta.get("issuer")
    if not isinstance(iss, str) or strip_slash(iss) != strip_slash(issuer):
        raise AegisSdkError("discovery_failed", "authorization server metadata names a different issuer")
    aliases = meta.get("mtls_endpoint_aliases")
    ep = aliases.get("token_endpoint") if isinstance(aliases, dict) else None
    if not isinstance(ep, str) or not ep.startswith("https://"):
        raise AegisSdkError("discovery_failed", "the server advertises no mTLS token endpoint")
    return ep
