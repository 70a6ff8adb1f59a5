"""Compact JWS signing for client assertions and DPoP proofs, with
``cryptography`` (an optional dependency: ``pip install aegis-sdk[crypto]``)."""
from __future__ import annotations

import base64
import json
from typing import Any, Union

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError("this part of aegis_sdk needs the 'cryptography' package (pip install 'aegis-sdk[crypto]', or Debian's python3-cryptography)") from _err

PrivateKey = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_private_key(key: Any, password: bytes | None = None) -> PrivateKey:
    """A private key object from a key object, PEM text/bytes or a file path."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return key
    if isinstance(key, str) and "-----BEGIN" not in key:
        with open(key, "rb") as f:
            key = f.read()
    data = key.encode("ascii") if isinstance(key, str) else key
    loaded = serialization.load_pem_private_key(data, password=password)
    if not isinstance(loaded, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise TypeError("unsupported private key type (Ed25519, P-256 or RSA)")
    return loaded


def default_alg(key: PrivateKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise TypeError("only P-256 EC keys are supported (ES256)")
        return "ES256"
    return "PS256"


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of a private key (no private members)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        nums = key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}
    pn = key.public_key().public_numbers()
    return {"kty": "RSA", "n": b64url(pn.n.to_bytes((pn.n.bit_length() + 7) // 8, "big")), "e": b64url(pn.e.to_bytes((pn.e.bit_length() + 7) // 8, "big"))}


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 SHA-256 thumbprint (what ``cnf.jkt`` holds)."""
    import hashlib

    members = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _segment(v: Any) -> str:
    return b64url(json.dumps(v, separators=(",", ":")).encode("utf-8"))


def sign_jws(header: dict[str, Any], payload: dict[str, Any], key: PrivateKey, alg: str) -> str:
    """``header.payload.signature`` with ``alg`` set in the header."""
    signing_input = f"{_segment({**header, 'alg': alg})}.{_segment(payload)}".encode("ascii")
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(signing_input)
    elif alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256" and isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    else:
        raise TypeError(f"key cannot sign {alg}")
    return f"{signing_input.decode('ascii')}.{b64url(sig)}"
