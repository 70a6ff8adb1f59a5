"""aegis_sdk: the Python SDK of Aegis.

Agent side (standard library only)::

    from aegis_sdk import AegisClient
    client = AegisClient(issuer, client_id, client_secret, gateway_url=gateway)
    d = client.authorize({"tool": "crm.read", "params": {"id": "42"}}, wait_for_approval=True)

Optional modules need ``cryptography``: :mod:`aegis_sdk.dpop`,
:mod:`aegis_sdk.private_key_jwt`, :mod:`aegis_sdk.verify`,
:mod:`aegis_sdk.middleware`. :mod:`aegis_sdk.auth` holds the
``httpx`` / ``requests`` auth hooks. The SDK never logs: tokens and secrets
appear in no error, ``repr`` or :class:`RefreshInfo`.
"""
from ._http import Response, Transport, TransportError, UrllibTransport
from .client import AegisClient, AsyncAegisClient, AuthorizeResult, Action
from .errors import AegisAuthError, AegisSdkError, AegisUnavailableError
from .mtls import TlsClientAuthSource, discover_mtls_token_endpoint, mtls_transport
from .token_source import (
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_JWT,
    AccessToken,
    ClientCredentialsSource,
    OAuthTokenSource,
    RefreshInfo,
    RetryPolicy,
    TokenExchangeSource,
    TokenSource,
)
from .workload import subject_token_file

__version__ = "0.1.0"

__all__ = [
    "AegisClient", "AsyncAegisClient", "AuthorizeResult", "Action",
    "AegisSdkError", "AegisAuthError", "AegisUnavailableError",
    "TokenSource", "OAuthTokenSource", "ClientCredentialsSource", "TokenExchangeSource",
    "TlsClientAuthSource", "AccessToken", "RefreshInfo", "RetryPolicy",
    "TOKEN_TYPE_JWT", "TOKEN_TYPE_ACCESS_TOKEN",
    "mtls_transport", "discover_mtls_token_endpoint", "subject_token_file",
    "Response", "Transport", "TransportError", "UrllibTransport",
]
