"""Local verification of Aegis access tokens for Python tool servers: the
same RFC 8725 checks, in the same order and with the same failure reasons,
as ``aegis/verify``. Ed25519 (and optionally RS256/PS256) through
``cryptography``; JWKS cached honouring ``Cache-Control`` and ``ETag``, with
an unknown-``kid`` cooldown.

    from aegis_sdk.verify import Verifier, VerifyError
    verifier = Verifier(issuer="http://127.0.0.1:7400", audience="aegis-gateway")
    try:
        claims = verifier.verify(token).claims
    except VerifyError as err:   # err.reason: "expired", "signature", …
        answer 401 with WWW-Authenticate: Bearer error="invalid_token"

Needs ``cryptography`` (``pip install 'aegis-sdk[crypto]'``).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import re
import threading
import time
import types
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError("aegis_sdk.verify needs the 'cryptography' package (pip install 'aegis-sdk[crypto]', or Debian's python3-cryptography)") from _err

from ._http import Transport, TransportError, UrllibTransport
from ._util import is_http_url, well_known_url

__all__ = ["Verifier", "VerifyError", "VerifiedToken", "JwksClient", "VerificationKey", "JwksFetchEvent", "REASONS"]

#: Every ``VerifyError.reason``, as ``aegis/verify``'s ``VerifyFailureReason``.
REASONS = frozenset({
    "malformed", "too_large", "algorithm", "type", "header", "keys_not_loaded", "unknown_kid",
    "signature", "issuer", "audience", "expired", "not_yet_valid", "claims",
})
KNOWN_ALGORITHMS = frozenset({"EdDSA", "RS256", "PS256"})
MAX_KID_LENGTH = 256
MAX_CLAIMS_DEPTH = 16
MIN_RSA_BITS = 2048
#: Headers that would let the token choose its own key: never fetched, never trusted (RFC 8725 §3.10).
KEY_SOURCE_HEADERS = ("jku", "x5u", "jwk", "x5c")
OPTIONAL_STRING_CLAIMS = ("agent_id", "client_id", "tenant", "scope", "policy_version", "capability_hash")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class VerifyError(Exception):
    """A token failed verification. ``code`` is always ``invalid_token``
    (RFC 6750 §3.1, HTTP 401); the message is a fixed, safe text that never
    echoes the token or any of its header or claim values. ``kid`` (for
    ``unknown_kid``/``keys_not_loaded``) is attacker-controlled: never put it
    in a response."""

    code = "invalid_token"
    status = 401

    def __init__(self, reason: str, message: str, kid: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.kid = kid

    def __repr__(self) -> str:
        return f"VerifyError(reason={self.reason!r}, message={str(self)!r})"


def _fail(reason: str, message: str, kid: str | None = None) -> Any:
    raise VerifyError(reason, message, kid)


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    alg: str
    key: Any
    signature_bytes: int


@dataclass(frozen=True)
class JwksFetchEvent:
    result: str  # "updated" | "not_modified" | "failed"
    trigger: str  # "initial" | "scheduled" | "retry" | "unknown_kid" | "manual"
    keys: int
    duration: float
    error: str | None = None


@dataclass(frozen=True)
class VerifiedToken:
    """Result of a successful verification; shared between calls for one token.
    ``claims`` and ``header`` are read-only views (nested objects too)."""

    claims: Mapping[str, Any]
    kid: str
    header: Mapping[str, Any]
    #: base64url(SHA-256(token)): a safe handle for logs, caches and audit.
    token_hash: str

    def claims_dict(self) -> dict[str, Any]:
        """A plain (mutable, JSON-serialisable) copy of the claims."""
        return _thaw(self.claims)  # type: ignore[no-any-return]


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return types.MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def _freshness(headers: Mapping[str, str]) -> float | None:
    """``max-age`` minus ``Age`` in seconds; 0 for no-store/no-cache; None when absent."""
    cc = next((v for k, v in headers.items() if k.lower() == "cache-control"), None)
    if cc is None:
        return None
    max_age: float | None = None
    for directive in cc.lower().split(","):
        d = directive.strip()
        if d in ("no-store", "no-cache"):
            return 0.0
        m = re.fullmatch(r'max-age\s*=\s*"?(\d{1,10})"?', d)
        if m:
            max_age = float(m.group(1))
    if max_age is None:
        return None
    age_raw = next((v for k, v in headers.items() if k.lower() == "age"), "0")
    try:
        age = float(age_raw)
    except ValueError:
        age = 0.0
    return max(0.0, max_age - (age if math.isfinite(age) and age > 0 else 0.0))


def _fingerprint(jwk: Mapping[str, Any]) -> str:
    return json.dumps([jwk.get(m) for m in ("kty", "crv", "x", "n", "e", "alg")])


def _b64decode_strict(text: str) -> bytes | None:
    if not text or len(text) % 4 == 1 or not _B64URL.fullmatch(text):
        return None
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class JwksClient:
    """Fetches and caches an issuer's JWK Set (as ``aegis/verify``'s JwksClient):

    - honours ``Cache-Control: max-age`` (bounded by ``min_refresh`` /
      ``max_refresh``) and revalidates with ``If-None-Match``; a 304 keeps the keys;
    - refreshes on a daemon timer before the set goes stale;
    - an unknown ``kid`` causes at most one fetch per ``cooldown`` seconds,
      and concurrent misses share one request;
    - keeps the last good set while the server is down or answers garbage;
    - imports only signing keys with a ``kid`` and an allowed ``alg`` that
      matches the key type (Ed25519 for EdDSA, RSA ≥ 2048 bits); keys
      sharing a ``kid`` are all dropped.
    """

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        algorithms: Iterable[str] = ("EdDSA",),
        cooldown: float = 10.0,
        min_refresh: float = 5.0,
        max_refresh: float = 3600.0,
        default_max_age: float = 300.0,
        timeout: float = 5.0,
        max_response_bytes: int = 512 * 1024,
        max_keys: int = 100,
        clock: Callable[[], float] = time.time,
        on_fetch: Callable[[JwksFetchEvent], None] | None = None,
        transport: Transport | None = None,
        background: bool = True,
    ) -> None:
        if jwks_url is None and issuer is None:
            raise TypeError("JwksClient needs jwks_url or issuer")
        if jwks_url is not None and not is_http_url(jwks_url):
            raise TypeError("jwks_url must be an http(s) URL")
        if jwks_url is None and not is_http_url(issuer):
            raise TypeError("issuer must be an http(s) URL")
        algs = list(algorithms)
        for a in algs:
            if a not in KNOWN_ALGORITHMS:
                raise TypeError(f"unsupported algorithm {a}")
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._algorithms = frozenset(algs)
        self._cooldown = cooldown
        self._min_refresh = min_refresh
        self._max_refresh = max_refresh
        self._default_max_age = default_max_age
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._max_keys = max_keys
        self._clock = clock
        self._on_fetch = on_fetch
        self._transport = transport or UrllibTransport(max_body=max_response_bytes)
        self._background = background
        self._keys: dict[str, VerificationKey] = {}
        self._fingerprints: dict[str, str] = {}
        self._etag: str | None = None
        self._lock = threading.Lock()
        self._inflight: threading.Event | None = None
        self._timer: threading.Timer | None = None
        self._last_attempt = float("-inf")
        self._failures = 0
        self._closed = False
        #: Set once keys were loaded for the first time.
        self.ready = threading.Event()
        self.stats = {"fetches": 0, "updates": 0, "not_modified": 0, "failures": 0, "discovery_fetches": 0}
        self._start("initial", wait=False)

    @property
    def loaded(self) -> bool:
        return self.ready.is_set()

    def get_key(self, kid: str) -> VerificationKey | None:
        """The key for ``kid``; None when unknown or before the first load. Never fetches."""
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return list(self._keys)

    def refresh_on_miss(self, wait: bool = True) -> None:
        """A fetch because a token named an unknown ``kid``: joins one in
        flight, else fetches only when the last attempt is ``cooldown`` old."""
        with self._lock:
            inflight = self._inflight
            cooling = self._clock() - self._last_attempt < self._cooldown
        if inflight is not None:
            if wait:
                inflight.wait(self._timeout * 2 + 1)
            return
        if self._closed or cooling:
            return
        self._start("unknown_kid", wait=wait)

    def refresh(self) -> None:
        """Fetches now regardless of cooldown (joins one in flight)."""
        if not self._closed:
            self._start("manual", wait=True)

    def close(self) -> None:
        """Stops background refreshes; keys stay usable."""
        self._closed = True
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None

    def _start(self, trigger: str, wait: bool) -> None:
        with self._lock:
            done = self._inflight
            if done is None:
                done = self._inflight = threading.Event()
                self._last_attempt = self._clock()
                owner = True
            else:
                owner = False
        if owner:
            def run() -> None:
                try:
                    self._fetch(trigger)
                finally:
                    with self._lock:
                        self._inflight = None
                    done.set()
            if wait:
                run()
            else:
                threading.Thread(target=run, name="aegis-jwks", daemon=True).start()
        elif wait:
            done.wait(self._timeout * 2 + 1)

    def _fetch(self, trigger: str) -> None:
        started = self._clock()
        error: str | None = None
        freshness: float | None = None
        try:
            url = self._resolve_jwks_url()
            headers = {"Accept": "application/jwk-set+json, application/json"}
            if self._etag is not None and self.loaded:
                headers["If-None-Match"] = self._etag
            self.stats["fetches"] += 1
            res = self._transport.request("GET", url, headers, None, self._timeout)
            freshness = _freshness(res.headers)
            if res.status == 304 and self.loaded:
                result = "not_modified"
                self.stats["not_modified"] += 1
            elif res.status == 200:
                keys, fps = self._parse_set(res.body)
                with self._lock:
                    self._keys, self._fingerprints = keys, fps
                    self._etag = res.header("etag")
                result = "updated"
                self.stats["updates"] += 1
            else:
                raise ValueError(f"JWKS answered HTTP {res.status}")
            self._failures = 0
            self.ready.set()
        except (ValueError, TransportError) as err:
            result = "failed"
            error = str(err)[:200]
            self.stats["failures"] += 1
            self._failures += 1
        self._schedule(None if result == "failed" else (freshness if freshness is not None else self._default_max_age))
        if self._on_fetch is not None:
            try:
                self._on_fetch(JwksFetchEvent(result, trigger, len(self._keys), self._clock() - started, error))
            except Exception:  # noqa: BLE001 - a metrics hook must never break key refresh
                pass

    def _resolve_jwks_url(self) -> str:
        if self._jwks_url is not None:
            return self._jwks_url
        assert self._issuer is not None
        self.stats["discovery_fetches"] += 1
        res = self._transport.request("GET", well_known_url(self._issuer), {"Accept": "application/json"}, None, self._timeout)
        if res.status != 200:
            raise ValueError(f"metadata answered HTTP {res.status}")
        meta = res.json_object()
        if meta is None:
            raise ValueError("metadata is not a JSON object")
        # RFC 8414 §3.3: metadata for another issuer must not be used.
        if meta.get("issuer") != self._issuer:
            raise ValueError("metadata issuer mismatch")
        uri = meta.get("jwks_uri")
        if not is_http_url(uri):
            raise ValueError("metadata has no usable jwks_uri")
        assert isinstance(uri, str)
        self._jwks_url = uri
        return uri

    def _parse_set(self, body: bytes) -> tuple[dict[str, VerificationKey], dict[str, str]]:
        try:
            doc = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("JWKS is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("JWKS has no keys array")
        if len(doc["keys"]) > self._max_keys:
            raise ValueError("JWKS has too many keys")
        keys: dict[str, VerificationKey] = {}
        fps: dict[str, str] = {}
        duplicated: set[str] = set()
        for jwk in doc["keys"]:
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            kid = jwk["kid"]
            if kid in keys or kid in duplicated:
                keys.pop(kid, None)
                fps.pop(kid, None)
                duplicated.add(kid)
                continue
            fp = _fingerprint(jwk)
            # The same object for an unchanged key keeps verified-token cache entries valid.
            previous = self._keys.get(kid)
            imported = previous if previous is not None and self._fingerprints.get(kid) == fp else self._import(jwk)
            if imported is None:
                continue
            keys[kid] = imported
            fps[kid] = fp
        return keys, fps

    def _import(self, jwk: Mapping[str, Any]) -> VerificationKey | None:
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            return None
        if not isinstance(alg, str) or alg not in self._algorithms:
            return None
        if jwk.get("use") is not None and jwk.get("use") != "sig":
            return None
        ops = jwk.get("key_ops")
        if ops is not None and not (isinstance(ops, list) and "verify" in ops):
            return None
        # A published private key is a misconfiguration; refuse rather than derive its public half.
        if any(jwk.get(m) is not None for m in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")):
            return None
        try:
            if alg == "EdDSA":
                if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
                    return None
                raw = _b64decode_strict(jwk["x"])
                if raw is None or len(raw) != 32:
                    return None
                return VerificationKey(kid, alg, Ed25519PublicKey.from_public_bytes(raw), 64)
            if jwk.get("kty") != "RSA" or not isinstance(jwk.get("n"), str) or not isinstance(jwk.get("e"), str):
                return None
            n_raw, e_raw = _b64decode_strict(jwk["n"]), _b64decode_strict(jwk["e"])
            if n_raw is None or e_raw is None:
                return None
            n, e = int.from_bytes(n_raw, "big"), int.from_bytes(e_raw, "big")
            if n.bit_length() < MIN_RSA_BITS:
                return None
            return VerificationKey(kid, alg, rsa.RSAPublicNumbers(e, n).public_key(), (n.bit_length() + 7) // 8)
        except (ValueError, TypeError):
            return None

    def _schedule(self, freshness: float | None) -> None:
        if self._closed or not self._background:
            return
        if freshness is None:
            # Failed: back off exponentially (1 s … 60 s) with jitter, keeping the last good keys meanwhile.
            delay = min(60.0, 2.0 ** min(self._failures - 1, 6)) * (0.8 + random.random() * 0.4)
            trigger = "retry"
        else:
            fresh = min(self._max_refresh, max(self._min_refresh, freshness))
            # Before the set goes stale, spread so many verifiers do not fetch in step.
            delay = max(self._min_refresh, fresh * (0.7 + random.random() * 0.1))
            trigger = "scheduled"
        timer = threading.Timer(delay, self._start, args=(trigger, False))
        timer.daemon = True
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = timer
        timer.start()


def _parse_json_object(segment: bytes, what: str) -> dict[str, Any]:
    try:
        # Strict UTF-8; a BOM stays and json refuses it, as JSON.parse does.
        text = segment.decode("utf-8")
    except UnicodeDecodeError:
        return _fail("malformed", f"token {what} is not UTF-8")  # type: ignore[no-any-return]
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return _fail("malformed", f"token {what} is not valid JSON")  # type: ignore[no-any-return]
    if not isinstance(value, dict):
        _fail("malformed", f"token {what} is not a JSON object")
    return value


def _no_constant(name: str) -> Any:
    # JSON has no NaN or Infinity (JSON.parse refuses them).
    raise ValueError(name)


def _depth(value: Any, depth: int, limit: int) -> int:
    if not isinstance(value, (dict, list)) or depth > limit:
        return depth
    best = depth
    for item in value.values() if isinstance(value, dict) else value:
        best = max(best, _depth(item, depth + 1, limit))
        if best > limit:
            return best
    return best


def _numeric_date(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class _CacheEntry:
    result: VerifiedToken
    key: VerificationKey
    exp: float


class Verifier:
    """Verifies Aegis access tokens (RFC 9068 JWTs) for one issuer and
    audience set, in this order: size bound, three base64url segments
    (canonical signature), strict header JSON, allow-listed ``alg``, ``typ``,
    no ``crit``/``b64``, no ``jku``/``x5u``/``jwk``/``x5c``, known ``kid``
    whose key is pinned to the header's ``alg``, signature, then ``iss``,
    ``aud``, ``exp``, ``nbf``, ``iat``, ``sub``, ``jti``, Aegis claim types.

    Verified tokens are cached by SHA-256 until their ``exp``; a cached
    result is ignored once its ``kid`` left the JWKS or maps to another key.
    Thread-safe.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Iterable[str],
        *,
        jwks_url: str | None = None,
        jwks: JwksClient | None = None,
        clock_skew: float = 30.0,
        max_token_bytes: int = 8192,
        algorithms: Iterable[str] = ("EdDSA",),
        typ: Iterable[str] = ("at+jwt", "application/at+jwt"),
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        **jwks_options: Any,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise TypeError("issuer is required")
        self.issuer = issuer
        self._audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not self._audiences:
            raise TypeError("audience is required")
        self._algorithms = frozenset(algorithms)
        for a in self._algorithms:
            if a not in KNOWN_ALGORITHMS:
                raise TypeError(f"unsupported algorithm {a}")
        self._typs = frozenset(t.lower() for t in typ)
        self._skew = clock_skew
        self._max_token_bytes = max_token_bytes
        self._clock = clock
        self._owns_jwks = jwks is None
        self.jwks = jwks or JwksClient(issuer=issuer, jwks_url=jwks_url, algorithms=self._algorithms, clock=clock, **jwks_options)
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Verifier(issuer={self.issuer!r}, audience={sorted(self._audiences)!r})"

    def verify(self, token: str) -> VerifiedToken:
        """Verifies ``token``; raises :class:`VerifyError`. When keys are not
        loaded yet or the ``kid`` is unknown it waits for one (shared,
        cooldown-limited) JWKS fetch and tries once more."""
        try:
            return self.verify_local(token)
        except VerifyError as err:
            if err.reason not in ("unknown_kid", "keys_not_loaded"):
                raise
        self.jwks.refresh_on_miss(wait=True)
        return self.verify_local(token)

    async def averify(self, token: str) -> VerifiedToken:
        """:meth:`verify` for asyncio: CPU-only unless a JWKS fetch is needed,
        which then runs in a worker thread."""
        try:
            return self.verify_local(token)
        except VerifyError as err:
            if err.reason not in ("unknown_kid", "keys_not_loaded"):
                raise
        await asyncio.to_thread(self.jwks.refresh_on_miss, True)
        return self.verify_local(token)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Stops the JWKS client's timers if the verifier created it."""
        if self._owns_jwks:
            self.jwks.close()

    def verify_local(self, token: str) -> VerifiedToken:
        """Verifies with the keys already cached; never waits for the network
        (an unknown ``kid`` starts a cooldown-limited refetch in the background)."""
        # Size first: nothing unbounded is parsed, hashed or cached.
        if not isinstance(token, str) or not token:
            _fail("malformed", "token missing")
        if len(token) > self._max_token_bytes:
            _fail("too_large", "token too large")
        now = self._clock()
        try:
            token_bytes = token.encode("ascii")
        except UnicodeEncodeError:
            return _fail("malformed", "token segment is not base64url")  # type: ignore[no-any-return]
        token_hash = base64.urlsafe_b64encode(hashlib.sha256(token_bytes).digest()).rstrip(b"=").decode("ascii")
        if self._cache_size > 0:
            with self._lock:
                hit = self._cache.get(token_hash)
                if hit is not None:
                    if hit.exp > now and self.jwks.get_key(hit.result.kid) is hit.key:
                        self._cache.move_to_end(token_hash)
                        return hit.result
                    del self._cache[token_hash]

        parts = token.split(".")
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
            _fail("malformed", "token is not a compact JWS (three segments)")
        h64, p64, s64 = parts
        payload = _b64decode_strict(p64)
        if payload is None:
            _fail("malformed", "token segment is not base64url")
        header_bytes = _b64decode_strict(h64)
        if header_bytes is None:
            _fail("malformed", "token segment is not base64url")
        header = _parse_json_object(header_bytes, "header")  # type: ignore[arg-type]
        alg = header.get("alg")
        # The allow-list, not the header, decides the algorithm family; none and HS* never pass.
        if not isinstance(alg, str) or alg not in self._algorithms:
            _fail("algorithm", "token alg not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in self._typs:
            _fail("type", "token typ not accepted")
        # No extension is understood, so any crit (RFC 7515 §4.1.11) means refuse; b64 (RFC 7797) likewise.
        if "crit" in header:
            _fail("header", "token crit header not supported")
        if "b64" in header:
            _fail("header", "token b64 header not supported")
        if any(name in header for name in KEY_SOURCE_HEADERS):
            _fail("header", "token key-source headers (jku, x5u, jwk, x5c) are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            _fail("header", "token kid missing or invalid")

        key = self.jwks.get_key(kid)
        if key is None:
            loaded = self.jwks.loaded
            self.jwks.refresh_on_miss(wait=False)
            if not loaded:
                _fail("keys_not_loaded", "verification keys not loaded", kid)
            _fail("unknown_kid", "token kid unknown", kid)
        assert key is not None
        # The key pins its algorithm: a header naming another one never selects a key type.
        if key.alg != alg:
            _fail("algorithm", "token alg does not match its key")

        # Non-canonical trailing bits would give one signature several spellings (and cache keys).
        signature = _b64decode_strict(s64)
        if signature is None or base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii") != s64:
            _fail("malformed", "token signature is not canonical base64url")
        assert signature is not None
        if len(signature) != key.signature_bytes:
            _fail("signature", "token signature invalid")
        signing_input = token_bytes[: len(h64) + 1 + len(p64)]
        try:
            if alg == "EdDSA":
                key.key.verify(signature, signing_input)
            elif alg == "RS256":
                key.key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            else:
                key.key.verify(signature, signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        except (InvalidSignature, ValueError):
            _fail("signature", "token signature invalid")

        claims = _parse_json_object(payload, "payload")  # type: ignore[arg-type]
        if _depth(claims, 0, MAX_CLAIMS_DEPTH) > MAX_CLAIMS_DEPTH:
            _fail("claims", "token claims nested too deeply")
        if claims.get("iss") != self.issuer or not isinstance(claims.get("iss"), str):
            _fail("issuer", "token issuer not accepted")
        aud = claims.get("aud")
        if isinstance(aud, str):
            if aud not in self._audiences:
                _fail("audience", "token audience not accepted")
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            if not any(a in self._audiences for a in aud):
                _fail("audience", "token audience not accepted")
        else:
            _fail("audience", "token audience missing or invalid")
        exp = _numeric_date(claims.get("exp"))
        if exp is None:
            _fail("claims", "token exp missing or invalid")
        assert exp is not None
        if exp <= now - self._skew:
            _fail("expired", "token expired")
        if "nbf" in claims:
            nbf = _numeric_date(claims["nbf"])
            if nbf is None:
                _fail("claims", "token nbf invalid")
            elif nbf > now + self._skew:
                _fail("not_yet_valid", "token not yet valid")
        iat = _numeric_date(claims.get("iat"))
        if iat is None:
            _fail("claims", "token iat missing or invalid")
        elif iat > now + self._skew:
            _fail("not_yet_valid", "token issued in the future")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            _fail("claims", "token sub missing")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            _fail("claims", "token jti missing")
        for name in OPTIONAL_STRING_CLAIMS:
            if name in claims and not isinstance(claims[name], str):
                _fail("claims", f"token {name} invalid")
        if "cnf" in claims and not isinstance(claims["cnf"], dict):
            _fail("claims", "token cnf invalid")

        result = VerifiedToken(_freeze(claims), kid, _freeze(header), token_hash)
        if self._cache_size > 0 and exp > now:
            with self._lock:
                self._cache[token_hash] = _CacheEntry(result, key, exp)
                self._cache.move_to_end(token_hash)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return result
