"""The verifier's RFC 8725 checks and attack tokens: the same table as
aegis/verify's (test/unit/verify/verifier.test.ts), case for case, with the
same failure reasons."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from aegis_sdk.verify import JwksClient, Verifier, VerifyError

from jwt_fixtures import AUDIENCE, DROP, Decoy, JwksServer, b64, claims_at, ed25519_key, hmac_sign, raw_sign, rsa_key, sign_token

ISSUER = "https://aegis.test"
BOM_HEADER = "\ufeff" + '{"alg":"EdDSA"}'
NAN_HEADER = '{"alg":NaN}'


class ManualClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def refused(verifier: Verifier, token: Any, reasons: list[str] | None = None) -> VerifyError:
    with pytest.raises(VerifyError) as info:
        verifier.verify_local(token)
    err = info.value
    assert err.code == "invalid_token" and err.status == 401
    if reasons:
        assert err.reason in reasons, f"reason {err.reason} not in {reasons}"
    if isinstance(token, str):
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in str(err), "error message echoes the token"
    return err


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    k1 = ed25519_key("k1")
    jwks = JwksServer([k1])
    decoy = Decoy()
    clock = ManualClock(time.mktime((2026, 11, 29, 3, 0, 0, 0, 0, 0)))
    verifier = Verifier(ISSUER, AUDIENCE, jwks_url=jwks.jwks_url, clock=clock)
    assert verifier.jwks.ready.wait(5)
    yield {"k1": k1, "jwks": jwks, "decoy": decoy, "clock": clock, "v": verifier, "now": lambda: int(clock())}
    verifier.close()
    jwks.close()
    decoy.close()


def test_valid_token_frozen_claims_kid_header_hash(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    token = sign_token(k1, claims_at(ISSUER, env["now"](), cnf={"jkt": "abc"}))
    r = v.verify(token)
    assert r.claims["sub"] == "billing-bot" and r.claims["tenant"] == "acme"
    assert r.kid == "k1" and r.header["alg"] == "EdDSA" and r.header["typ"] == "at+jwt"
    assert r.token_hash == base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    with pytest.raises(TypeError):
        r.claims["sub"] = "root"  # type: ignore[index]
    with pytest.raises(TypeError):
        r.claims["cnf"]["jkt"] = "x"  # type: ignore[index]
    assert r.claims_dict()["cnf"] == {"jkt": "abc"}


def test_typ_application_at_jwt_and_audience_array(env: dict[str, Any]) -> None:
    v, k1, now = env["v"], env["k1"], env["now"]()
    assert v.verify(sign_token(k1, claims_at(ISSUER, now, aud=["other", AUDIENCE]), typ="application/at+jwt")).kid == "k1"
    assert v.verify(sign_token(k1, claims_at(ISSUER, now), typ="AT+JWT")).kid == "k1"


def test_alg_none_refused_with_or_without_signature(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    claims = claims_at(ISSUER, env["now"]())
    for alg in ("none", "None", "NONE"):
        refused(v, raw_sign({"alg": alg, "typ": "at+jwt", "kid": "k1"}, claims, None), ["malformed", "algorithm"])
        refused(v, raw_sign({"alg": alg, "typ": "at+jwt", "kid": "k1"}, claims, None) + b64(bytes(64)), ["algorithm"])
    refused(v, raw_sign({"typ": "at+jwt", "kid": "k1"}, claims, k1.private), ["algorithm"])


def test_hs256_with_public_key_bytes_refused(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    claims = claims_at(ISSUER, env["now"]())
    pem = k1.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = base64.urlsafe_b64decode(k1.jwk["x"] + "==")
    for secret in (pem, raw, json.dumps(k1.jwk).encode(), k1.jwk["x"].encode()):
        for alg in ("HS256", "HS384", "HS512"):
            refused(v, hmac_sign({"alg": alg, "typ": "at+jwt", "kid": "k1"}, claims, secret), ["algorithm"])
    with pytest.raises(TypeError):
        Verifier(ISSUER, AUDIENCE, jwks_url=env["jwks"].jwks_url, algorithms=["HS256"])


def test_unknown_and_malicious_kids_only_a_map_lookup(env: dict[str, Any]) -> None:
    v, k1, jwks = env["v"], env["k1"], env["jwks"]
    claims = claims_at(ISSUER, env["now"]())
    before = len(jwks.requests)
    for kid in ["nope", "../../../../etc/passwd", "..%2f..%2fjwks.json", "__proto__", "constructor", "toString", "k1' OR '1'='1", "k1\u0000", "k1 ", "K1"]:
        refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, claims, k1.private), ["unknown_kid"])
    for kid in ["x" * 257, "", 1, None, {"$ne": 1}, ["k1"], True]:
        refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, claims, k1.private), ["header"])
    refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt"}, claims, k1.private), ["header"])
    refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "x" * 9000}, claims, k1.private), ["too_large"])
    time.sleep(0.05)
    # The cooldown (clock not advanced since the initial load) holds back any refetch.
    assert len(jwks.requests) == before
    assert all(p == "/.well-known/jwks.json" for p, _ in jwks.requests)


def test_key_source_headers_refused_and_nothing_fetched(env: dict[str, Any]) -> None:
    v, k1, jwks, decoy = env["v"], env["k1"], env["jwks"], env["decoy"]
    claims = claims_at(ISSUER, env["now"]())
    attacker = ed25519_key("k1")
    before = len(jwks.requests)
    headers: list[dict[str, Any]] = [
        {"jku": f"{decoy.url}/jwks.json"}, {"x5u": f"{decoy.url}/cert.pem"}, {"jwk": attacker.jwk}, {"jwk": k1.jwk},
        {"x5c": [base64.b64encode(b"not really a cert").decode()]},
    ]
    for h in headers:
        for signer in (attacker, k1):
            token = raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", **h}, claims, signer.private)
            refused(v, token, ["header"])
            with pytest.raises(VerifyError):
                v.verify(token)
    refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "jwk": attacker.jwk}, claims, attacker.private), ["header"])
    time.sleep(0.05)
    assert decoy.hits == 0
    assert len(jwks.requests) == before


def test_wrong_or_missing_typ(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    claims = claims_at(ISSUER, env["now"]())
    for typ in ["JWT", "jwt", "application/jwt", "at+jwt2", "dpop+jwt", "logout+jwt", ""]:
        refused(v, sign_token(k1, claims, typ=typ), ["type"])
    refused(v, raw_sign({"alg": "EdDSA", "kid": "k1"}, claims, k1.private), ["type"])
    refused(v, raw_sign({"alg": "EdDSA", "kid": "k1", "typ": ["at+jwt"]}, claims, k1.private), ["type"])


def test_crit_and_b64_refused(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    claims = claims_at(ISSUER, env["now"]())
    for extra in [{"crit": ["exp"], "exp": 1}, {"crit": ["b64"], "b64": False}, {"crit": []}, {"crit": "x"}, {"b64": False}]:
        refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", **extra}, claims, k1.private), ["header"])


def test_altered_payload_or_header_fails_signature(env: dict[str, Any]) -> None:
    v, k1, now = env["v"], env["k1"], env["now"]()
    h, p, s = sign_token(k1, claims_at(ISSUER, now)).split(".")
    forged = b64(claims_at(ISSUER, now, sub="admin", scope="everything"))
    refused(v, f"{h}.{forged}.{s}", ["signature"])
    other = b64({"alg": "EdDSA", "typ": "application/at+jwt", "kid": "k1"})
    refused(v, f"{other}.{p}.{s}", ["signature"])


def test_truncated_padded_noncanonical_zero_signatures(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    h, p, s = sign_token(k1, claims_at(ISSUER, env["now"]())).split(".")
    refused(v, f"{h}.{p}.{s[:84]}", ["signature"])
    refused(v, f"{h}.{p}.{s[:40]}", ["signature", "malformed"])
    refused(v, f"{h}.{p}.{s}AA", ["signature", "malformed"])
    refused(v, f"{h}.{p}.{s}==", ["malformed"])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = alphabet[alphabet.index(s[-1]) ^ 1]
    refused(v, f"{h}.{p}.{s[:-1]}{sibling}", ["malformed"])
    refused(v, f"{h}.{p}.{b64(bytes(64))}", ["signature"])


def test_foreign_keys_refused(env: dict[str, Any]) -> None:
    v, now = env["v"], env["now"]()
    refused(v, sign_token(ed25519_key("k1"), claims_at(ISSUER, now)), ["signature"])
    refused(v, sign_token(ed25519_key("foreign-kid"), claims_at(ISSUER, now)), ["unknown_kid"])


def test_wrong_issuer(env: dict[str, Any]) -> None:
    v, k1, now = env["v"], env["k1"], env["now"]()
    for iss in ["https://evil.test", f"{ISSUER}/", ISSUER.upper(), DROP, 42]:
        refused(v, sign_token(k1, claims_at(ISSUER, now, iss=iss)), ["issuer"])


def test_wrong_audience(env: dict[str, Any]) -> None:
    v, k1, now = env["v"], env["k1"], env["now"]()
    for aud in ["other-gateway", ["a", "b"], [], [AUDIENCE, 3], 7, DROP, f"{AUDIENCE} "]:
        refused(v, sign_token(k1, claims_at(ISSUER, now, aud=aud)), ["audience"])


def test_expiry_and_skew(env: dict[str, Any]) -> None:
    v, k1, t = env["v"], env["k1"], env["now"]()
    refused(v, sign_token(k1, claims_at(ISSUER, t - 700, exp=t - 31)), ["expired"])
    refused(v, sign_token(k1, claims_at(ISSUER, t - 700, exp=t - 30)), ["expired"])
    assert v.verify(sign_token(k1, claims_at(ISSUER, t - 700, exp=t - 10)))
    for exp in [DROP, "9999999999", None, True, 10 ** 400]:
        refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}, claims_at(ISSUER, t, exp=exp), k1.private), ["claims"])


def test_not_yet_valid(env: dict[str, Any]) -> None:
    v, k1, t = env["v"], env["k1"], env["now"]()
    refused(v, sign_token(k1, claims_at(ISSUER, t, nbf=t + 31)), ["not_yet_valid"])
    refused(v, sign_token(k1, claims_at(ISSUER, t, iat=t + 120)), ["not_yet_valid"])
    assert v.verify(sign_token(k1, claims_at(ISSUER, t, nbf=t + 20, iat=t + 20)))
    refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}, claims_at(ISSUER, t, iat=DROP), k1.private), ["claims"])
    refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}, claims_at(ISSUER, t, nbf="soon"), k1.private), ["claims"])


def test_sub_jti_and_aegis_claim_types(env: dict[str, Any]) -> None:
    v, k1, t = env["v"], env["k1"], env["now"]()
    for extra in [{"sub": DROP}, {"sub": ""}, {"sub": 5}, {"jti": DROP}, {"jti": 12}, {"tenant": 1}, {"scope": ["a"]},
                  {"capability_hash": {}}, {"cnf": "x"}, {"cnf": []}]:
        refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}, claims_at(ISSUER, t, **extra), k1.private), ["claims"])
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}, claims_at(ISSUER, t, deep=deep), k1.private), ["claims"])


def test_oversized_before_parsing(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    big = sign_token(k1, claims_at(ISSUER, env["now"](), padding="x" * 9000))
    assert len(big) > 8192
    refused(v, big, ["too_large"])
    refused(v, "a" * 8193, ["too_large"])
    refused(v, "." * 100_000, ["too_large"])
    small = Verifier(ISSUER, AUDIENCE, jwks=v.jwks, max_token_bytes=100, clock=env["clock"])
    refused(small, sign_token(k1, claims_at(ISSUER, env["now"]())), ["too_large"])
    small.close()
    assert v.jwks.loaded, "closing a verifier must not close a shared JWKS client"


def test_garbage_segments_malformed(env: dict[str, Any]) -> None:
    v = env["v"]
    h = b64({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"})
    p = b64(claims_at(ISSUER, env["now"]()))
    s = b64(bytes(64))
    cases = [
        "", "abc", "a.b", "a.b.c.d", f"{h}.{p}.{s}.", "...", "..", f"{h}..{s}", f".{p}.{s}", f"{h}.{p}.",
        f"{h}$.{p}.{s}", f"{h}.{p} .{s}", f" {h}.{p}.{s}", f"{h}=.{p}.{s}", f"{h}.{p}.{s}\n",
        f"{b64('not json')}.{p}.{s}", f"{b64('[1,2]')}.{p}.{s}", f"{b64('null')}.{p}.{s}",
        f"{b64(bytes([0xFF, 0xFE, 0x7B, 0x7D]))}.{p}.{s}", f"{b64(BOM_HEADER)}.{p}.{s}", f"{b64(NAN_HEADER)}.{p}.{s}",
    ]
    for c in cases:
        refused(v, c, ["malformed"])
    for c in [None, 42, {}, ["a.b.c"]]:
        refused(v, c, ["malformed"])


def test_payload_not_an_object_with_good_signature(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    h = b64({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"})
    for body in ['{"iss":', "[1]", '"str"', ""]:
        signing_input = f"{h}.{b64(body)}" if body else f"{h}."
        if not body:
            refused(v, f"{signing_input}.{b64(k1.private.sign(signing_input.encode()))}", ["malformed"])
            continue
        refused(v, f"{signing_input}.{b64(k1.private.sign(signing_input.encode()))}", ["malformed"])


def test_valid_tokens_still_verify_after_attacks(env: dict[str, Any]) -> None:
    v, k1 = env["v"], env["k1"]
    token = sign_token(k1, claims_at(ISSUER, env["now"]()))
    assert v.verify(token).claims["iss"] == ISSUER


def test_rsa_pinning_and_weak_keys() -> None:
    ed, rs, ps, weak = ed25519_key("ed"), rsa_key("rs", "RS256"), rsa_key("ps", "PS256"), rsa_key("weak", "RS256", 1024)
    jwks = JwksServer([ed, rs, ps, weak])
    v = Verifier(ISSUER, AUDIENCE, jwks_url=jwks.jwks_url, algorithms=["EdDSA", "RS256", "PS256"])
    ed_only = Verifier(ISSUER, AUDIENCE, jwks_url=jwks.jwks_url)
    try:
        t = int(time.time())
        assert v.verify(sign_token(rs, claims_at(ISSUER, t))).header["alg"] == "RS256"
        assert v.verify(sign_token(ps, claims_at(ISSUER, t))).header["alg"] == "PS256"
        assert v.verify(sign_token(ed, claims_at(ISSUER, t))).header["alg"] == "EdDSA"
        assert sorted(v.jwks.kids()) == ["ed", "ps", "rs"]
        refused(v, raw_sign({"alg": "RS256", "typ": "at+jwt", "kid": "weak"}, claims_at(ISSUER, t), weak.private, "RS256"), ["unknown_kid"])
        claims = claims_at(ISSUER, t)
        refused(v, raw_sign({"alg": "PS256", "typ": "at+jwt", "kid": "rs"}, claims, rs.private, "RS256"), ["algorithm"])
        refused(v, raw_sign({"alg": "RS256", "typ": "at+jwt", "kid": "ps"}, claims, ps.private, "PS256"), ["algorithm"])
        refused(v, raw_sign({"alg": "EdDSA", "typ": "at+jwt", "kid": "rs"}, claims, ed.private), ["algorithm"])
        refused(v, raw_sign({"alg": "RS256", "typ": "at+jwt", "kid": "ed"}, claims, rs.private, "RS256"), ["algorithm"])
        ed_only.verify(sign_token(ed, claims_at(ISSUER, t)))
        refused(ed_only, sign_token(rs, claims_at(ISSUER, t)), ["algorithm"])
        assert ed_only.jwks.kids() == ["ed"]
    finally:
        v.close()
        ed_only.close()
        jwks.close()


def test_cache_reuse_key_retirement_and_exp() -> None:
    k1, k2 = ed25519_key("c1"), ed25519_key("c2")
    jwks = JwksServer([k1, k2])
    clock = ManualClock(time.time())
    v = Verifier(ISSUER, AUDIENCE, jwks_url=jwks.jwks_url, clock=clock)
    try:
        now = int(clock())
        token = sign_token(k2, claims_at(ISSUER, now))
        first = v.verify(token)
        assert v.verify(token) is first
        v.clear_cache()
        assert v.verify(token) is not first
        # A cached token stops verifying once its kid leaves the JWKS.
        t1 = sign_token(k1, claims_at(ISSUER, now))
        v.verify(t1)
        jwks.keys = [k2.jwk]
        v.jwks.refresh()
        refused(v, t1, ["unknown_kid"])
        # Another key under the same kid voids the entry too.
        other = sign_token(k2, claims_at(ISSUER, now))
        v.verify(other)
        jwks.keys = [ed25519_key("c2").jwk]
        v.jwks.refresh()
        refused(v, other, ["signature"])
        jwks.keys = [k1.jwk, k2.jwk]
        v.jwks.refresh()
        r = v.verify(t1)
        # An unchanged key set keeps cached entries (same key object across refetches).
        jwks.keys = [k2.jwk, k1.jwk]
        v.jwks.refresh()
        assert v.verify(t1) is r
        # Never served past exp; refused once expired beyond skew.
        short = sign_token(k1, claims_at(ISSUER, now, exp=now + 60))
        f = v.verify(short)
        clock.t += 59
        assert v.verify(short) is f
        clock.t += 2
        assert v.verify(short) is not f
        clock.t += 30
        refused(v, short, ["expired"])
        # Bounded LRU; 0 disables it.
        clock.t = now
        small = Verifier(ISSUER, AUDIENCE, jwks=v.jwks, clock=clock, cache_size=2)
        toks = [sign_token(k1, claims_at(ISSUER, now)) for _ in range(3)]
        r0 = small.verify(toks[0])
        small.verify(toks[1])
        small.verify(toks[2])
        assert small.verify(toks[0]) is not r0
        none = Verifier(ISSUER, AUDIENCE, jwks=v.jwks, clock=clock, cache_size=0)
        assert none.verify(toks[1]) is not none.verify(toks[1])
    finally:
        v.close()
        jwks.close()


def test_jwks_etag_cache_control_and_unknown_kid_cooldown() -> None:
    k1 = ed25519_key("j1")
    jwks = JwksServer([k1])
    jwks.max_age = 120
    clock = ManualClock(time.time())
    client = JwksClient(jwks_url=jwks.jwks_url, clock=clock, cooldown=10.0, background=False)
    try:
        assert client.ready.wait(5)
        assert jwks.jwks_requests() == 1
        # Revalidation carries the ETag and a 304 keeps the keys.
        client.refresh()
        assert jwks.requests[-1][1] is not None and client.stats["not_modified"] == 1 and client.kids() == ["j1"]
        # Unknown kids: one fetch per cooldown, however many misses.
        clock.t += 11
        for _ in range(20):
            client.refresh_on_miss(wait=True)
        assert jwks.jwks_requests() == 3
        clock.t += 11
        client.refresh_on_miss(wait=True)
        assert jwks.jwks_requests() == 4
        # A failing server keeps the last good keys.
        jwks.mode = "garbage"
        client.refresh()
        assert client.kids() == ["j1"] and client.stats["failures"] == 1
    finally:
        client.close()
        jwks.close()


def test_discovery_and_wait_for_first_load() -> None:
    k1 = ed25519_key("d1")
    jwks = JwksServer([k1])
    try:
        v = Verifier(jwks.url, AUDIENCE)
        # verify() right after creation waits for the first key load.
        assert v.verify(sign_token(k1, claims_at(jwks.url, int(time.time())))).kid == "d1"
        assert v.jwks.stats["discovery_fetches"] == 1
        v.close()
    finally:
        jwks.close()
