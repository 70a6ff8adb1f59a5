"""Errors the SDK raises.

None of them ever carries a token, a client secret or a response body
verbatim: only OAuth error codes, HTTP statuses and the server's
length-bounded ``error_description`` (as ``aegis/sdk`` does).
"""
from __future__ import annotations

__all__ = ["AegisSdkError", "AegisAuthError", "AegisUnavailableError"]


class AegisSdkError(Exception):
    """Base class of every error ``aegis_sdk`` raises.

    ``code`` is an OAuth error code (RFC 6749 §5.2, RFC 6750 §3.1) when the
    server sent one, otherwise one of the SDK's own: ``network_error``,
    ``invalid_response``, ``closed``, ``discovery_failed``,
    ``approval_url_untrusted``, ``timeout``.
    """

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={str(self)!r})"


class AegisAuthError(AegisSdkError):
    """The token endpoint refused the credentials or the request (400/401).

    Never retried: retrying a wrong secret only locks the client out faster.
    """

    def __init__(self, code: str, description: str | None, status: int) -> None:
        super().__init__(code, f"{code}: {description}" if description else code, status=status)
        self.description = description


class AegisUnavailableError(AegisSdkError):
    """The server could not be reached, kept answering 429/5xx after every
    retry, or the caller's deadline passed (``code == "timeout"``).

    ``retry_after`` is how long the server last asked to wait, in seconds.
    """

    def __init__(self, code: str, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(code, message, status=status)
        self.retry_after = retry_after
