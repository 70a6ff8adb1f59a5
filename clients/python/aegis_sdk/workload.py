"""Workload identity tokens for :class:`~aegis_sdk.TokenExchangeSource` (RFC 8693)."""
from __future__ import annotations

from typing import Callable

__all__ = ["subject_token_file"]


def subject_token_file(path: str) -> Callable[[], str]:
    """A subject-token provider that re-reads a file at every exchange, as a
    Kubernetes projected service-account token or a SPIFFE JWT-SVID file rotates."""

    def read() -> str:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if not token or len(token) > 16_384:
            raise ValueError(f"subject token file {path} is empty or too large")
        return token

    return read
