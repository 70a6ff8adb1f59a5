import { isUtf8 } from 'node:buffer'
import { constants, verify as cryptoVerify } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { systemClock, type Clock } from '../lib/clock.js'
import { sha256b64url } from '../lib/hash.js'
import { jsonDepth } from '../lib/json-limits.js'
import { VerifyError } from './errors.js'
import { decodeBase64url, type DecodedSegment } from './base64url.js'
import { ed25519Verifier, type Ed25519Backend } from './ed25519.js'
import { JwksClient, type VerificationKey, type VerifyAlgorithm } from './jwks-client.js'
import type { KeySource } from './jwk-set.js'

/** Sender constraint of a token (RFC 8705 §3.1, RFC 9449 §6.1). */
export interface ConfirmationClaim {
  /** SHA-256 thumbprint of the client certificate (mTLS). */
  readonly 'x5t#S256'?: string
  /** JWK SHA-256 thumbprint of the DPoP key. */
  readonly jkt?: string
  readonly [member: string]: unknown
}

/**
 * Claims of an Aegis access token (docs/reference.md "Token service", RFC 9068 §2.2).
 * `iss`, `sub`, `aud`, `exp`, `iat` and `jti` are always present and checked;
 * the Aegis-specific claims are checked to be strings when present.
 * Times are epoch seconds.
 */
export interface AccessTokenClaims {
  readonly iss: string
  /** The agent id. */
  readonly sub: string
  readonly aud: string | readonly string[]
  readonly exp: number
  readonly iat: number
  readonly jti: string
  readonly nbf?: number
  readonly agent_id?: string
  readonly client_id?: string
  readonly tenant?: string
  /** Space-separated scopes (RFC 9068 §2.2.3). */
  readonly scope?: string
  readonly policy_version?: string
  /** base64url(SHA-256(RFC 8785 JSON of the agent's capability manifest)). */
  readonly capability_hash?: string
  readonly cnf?: ConfirmationClaim
  /** RFC 8693 §4.1: the agent acting in a delegated token, earlier actors nested (docs/delegation.md). */
  readonly act?: ActorClaim
  readonly [claim: string]: unknown
}

/** RFC 8693 §4.1 `act`: who acts now, and the actor before it. */
export interface ActorClaim {
  readonly sub: string
  readonly act?: ActorClaim
}

/** The JWS protected header of a verified token. */
export interface VerifiedHeader {
  readonly alg: VerifyAlgorithm
  readonly typ: string
  readonly kid: string
  readonly [member: string]: unknown
}

/** Result of a successful verification. Frozen; shared between calls for the same token. */
export interface VerifiedToken {
  /** Verified claims. */
  readonly claims: AccessTokenClaims
  /** The `kid` of the key that verified the signature. */
  readonly kid: string
  /** The protected header. */
  readonly header: VerifiedHeader
  /** base64url(SHA-256(token)): a safe handle for logs, caches and audit. */
  readonly tokenHash: string
}

/** Options of {@link createVerifier}. */
export interface VerifierOptions {
  /** Expected `iss`, compared exactly. */
  issuer: string
  /**
   * Accepted audiences; `aud` must contain at least one. A function decides
   * each `aud` value instead, for a verifier that serves every audience (an
   * issuer checking its own tokens); `aud` must still be present and well-formed.
   */
  audience: string | string[] | ((aud: string) => boolean)
  /** JWK Set URL; default: discovered from the issuer's RFC 8414 metadata. Ignored when `jwks` is given. */
  jwksUrl?: string
  /**
   * Where keys come from, shared and not closed by the verifier's `close()`:
   * a {@link JwksClient}, or any {@link KeySource} (e.g. `localKeySet`).
   * Default: a JwksClient the verifier creates for `jwksUrl` or the issuer.
   */
  jwks?: KeySource
  /** Allowed clock skew for `exp`, `nbf` and `iat` (seconds). Default 30. */
  clockSkewSeconds?: number
  /** Largest accepted token (bytes), checked before any parsing. Default 8192. */
  maxTokenBytes?: number
  /** Allowed `alg` values. Default `['EdDSA']`. `none` and HMAC are never accepted. */
  algorithms?: VerifyAlgorithm[]
  /** Accepted `typ` values (compared case-insensitively). Default `['at+jwt', 'application/at+jwt']` (RFC 9068 §4). */
  typ?: string[]
  /**
   * Longest {@link Verifier.verify} waits for keys it does not hold (the first
   * load, or an unknown `kid`), in milliseconds. Default 10 000.
   */
  keyWaitMs?: number
  /** Capacity of the verified-token cache (entries); 0 disables it. Default 10 000. */
  cacheSize?: number
  /** Source of time. Default: system clock. */
  clock?: Clock
  /**
   * Ed25519 implementation: `'auto'` (default) uses libsodium through
   * `sodium-native` when its prebuilt addon loads, else node:crypto;
   * `'node:crypto'` forces OpenSSL; `'libsodium'` fails if it cannot load.
   */
  ed25519?: 'auto' | Ed25519Backend
}

/** A token verifier bound to one issuer and audience set; `K` is where its keys come from. */
export interface Verifier<K extends KeySource = JwksClient> {
  /**
   * Verifies a compact JWS access token. Works right after creation: when the
   * keys are not loaded yet, or the token's `kid` is unknown, it waits for one
   * (shared, cooldown-limited) JWKS fetch, at most `keyWaitMs`, and tries once
   * more. Rejects with {@link VerifyError} (`code: 'invalid_token'`; reason
   * `keys_not_loaded` when no keys could be loaded in time).
   */
  verify(token: string): Promise<VerifiedToken>
  /**
   * The synchronous hot path: verifies with the keys already held, allocating
   * no promise (a cached token costs one map lookup). Throws {@link VerifyError};
   * `keys_not_loaded` before the first key load, `unknown_kid` for a key not
   * held yet (a cooldown-limited refetch then starts in the background, so a
   * retry, or {@link Verifier.verify}, can succeed).
   */
  verifySync(token: string): VerifiedToken
  /** @deprecated The same as {@link Verifier.verify}. */
  verifyAsync(token: string): Promise<VerifiedToken>
  /** The key source in use (the JwksClient, unless another source was given). */
  readonly jwks: K
  /** The Ed25519 implementation in use. */
  readonly ed25519Backend: Ed25519Backend
  /** Drops every cached verification result. */
  clearCache(): void
  /** Stops the JWKS client's timers if the verifier created it. */
  close(): void
}

interface CacheEntry {
  readonly result: VerifiedToken
  /** The key object that verified it: if the JWKS no longer maps the kid to this very key, the entry is void. */
  readonly key: VerificationKey
  readonly expMs: number
  /** The token itself when it is keyed by its last characters (a hit must be this very token); undefined when keyed by SHA-256. */
  readonly token: string | undefined
}

/** A protected header that passed every header check (the key lookup still runs per token). */
interface CheckedHeader {
  readonly header: VerifiedHeader
  readonly alg: VerifyAlgorithm
  readonly kid: string
}

const MAX_CACHED_HEADERS = 64
/** Longest token a cache entry holds (an Aegis token is 500–900 characters): at most 1 KiB an entry; longer ones go by SHA-256. */
const MAX_HELD_TOKEN = 1024
/** A held token's cache key: its last 64 characters (of its signature, 86 for Ed25519). */
const CACHE_KEY_SUFFIX = 64
/** The `header` failure for a missing or unusable `kid` (override checks name it apart; not exported by `aegis/verify`). */
export const KID_INVALID = 'token kid missing or invalid'
const MAX_KID_LENGTH = 256
const MAX_CLAIMS_DEPTH = 16
// Headers that would let the token choose its own key: never fetched, never trusted (RFC 8725 §3.10).
const KEY_SOURCE_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const
const OPTIONAL_STRING_CLAIMS = ['agent_id', 'client_id', 'tenant', 'scope', 'policy_version', 'capability_hash'] as const

function fail(reason: ConstructorParameters<typeof VerifyError>[0], message: string, kid?: string): never {
  throw new VerifyError(reason, message, kid)
}

/** Decodes `token[start, end)`; refuses what is not base64url (and, when `canonical`, other spellings of the same bytes). */
function decodeSegment(token: string, start: number, end: number, canonical: boolean): DecodedSegment {
  const decoded = decodeBase64url(token, start, end, canonical)
  if (decoded === null) fail('malformed', canonical ? 'token segment is not canonical base64url' : 'token segment is not base64url')
  return decoded
}

function parseJsonObject(segment: DecodedSegment, what: string): Record<string, unknown> {
  const { bytes } = segment
  // Strict UTF-8 (invalid sequences refused); a BOM is kept, which JSON.parse then refuses.
  // ASCII, the usual case, is read as latin1: same text, no validation pass.
  if (!segment.ascii && !isUtf8(bytes)) fail('malformed', `token ${what} is not UTF-8`)
  let value: unknown
  try {
    // JSON.parse keeps the last of duplicate members, which RFC 7515 §4 allows ("lexically last").
    value = JSON.parse(bytes.toString(segment.ascii ? 'latin1' : 'utf8'))
  } catch {
    fail('malformed', `token ${what} is not valid JSON`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('malformed', `token ${what} is not a JSON object`)
  return value as Record<string, unknown>
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    const record = value as Record<string, unknown>
    // for…in rather than Object.values: no array per object on the fresh-token path.
    for (const key in record) if (Object.hasOwn(record, key)) deepFreeze(record[key])
  }
  return value
}

function isNumericDate(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v)
}

/**
 * Creates a verifier for Aegis access tokens (RFC 9068 JWTs) that applies
 * the RFC 8725 checks of docs/reference.md "Gateway" step 1, in this order: size
 * bound, three canonical base64url segments, strict header JSON, allow-listed
 * `alg`, `typ`, no `crit`, no `jku`/`x5u`/`jwk`/`x5c`, known `kid` whose key
 * is pinned to the header's `alg`, signature, then `iss`, `aud`, `exp`,
 * `nbf`, `iat`, `sub`, `jti`.
 *
 * Verified tokens are cached (the token itself, or its SHA-256 past
 * {@link MAX_HELD_TOKEN} characters) until their `exp` (never past it),
 * in a bounded LRU; a cached result is ignored once its `kid` left
 * the JWKS or now maps to another key, so key retirement takes effect at once.
 */

export function createVerifier(options: VerifierOptions & { jwks?: JwksClient }): Verifier
export function createVerifier<K extends KeySource>(options: VerifierOptions & { jwks: K }): Verifier<K>
export function createVerifier(options: VerifierOptions): Verifier<KeySource> {
  const issuer = options.issuer
  if (typeof issuer !== 'string' || issuer.length === 0) throw new TypeError('issuer is required')
  const audienceOption = options.audience
  let acceptsAudience: (aud: string) => boolean
  if (typeof audienceOption === 'function') {
    acceptsAudience = audienceOption
  } else {
    const audiences = new Set(typeof audienceOption === 'string' ? [audienceOption] : audienceOption)
    if (audiences.size === 0) throw new TypeError('audience is required')
    acceptsAudience = (a) => audiences.has(a)
  }
  const algorithms = new Set<string>(options.algorithms ?? ['EdDSA'])
  for (const a of algorithms) if (a !== 'EdDSA' && a !== 'RS256' && a !== 'PS256') throw new TypeError(`unsupported algorithm ${a}`)
  const typs = new Set((options.typ ?? ['at+jwt', 'application/at+jwt']).map((t) => t.toLowerCase()))
  const skew = options.clockSkewSeconds ?? 30
  const maxTokenBytes = options.maxTokenBytes ?? 8192
  const clock = options.clock ?? systemClock
  // Created here only when none is given, and then also closed here.
  let owned: JwksClient | undefined
  const jwks: KeySource =
    options.jwks ??
    (owned = new JwksClient({
      issuer,
      ...(options.jwksUrl !== undefined ? { jwksUrl: options.jwksUrl } : {}),
      algorithms: [...algorithms] as VerifyAlgorithm[],
      clock,
    }))
  const ed25519 = ed25519Verifier(options.ed25519 ?? 'auto')
  const cacheSize = options.cacheSize ?? 10_000
  const cache = cacheSize > 0 ? new LRUCache<string, CacheEntry>({ max: cacheSize }) : undefined

  // Every token signed by one key has the same header segment, so its checks run once per
  // distinct segment. Bounded: a flood of distinct (valid) headers only empties it.
  const headers = new Map<string, CheckedHeader>()

  function checkedHeader(token: string, end: number): CheckedHeader {
    const segment = token.slice(0, end)
    const known = headers.get(segment)
    if (known !== undefined) return known
    const header = parseJsonObject(decodeSegment(token, 0, end, false), 'header')
    const alg = header.alg
    // The allow-list, not the header, decides the algorithm family; `none` and HS* never pass.
    if (typeof alg !== 'string' || !algorithms.has(alg)) fail('algorithm', 'token alg not allowed')
    const typ = header.typ
    if (typeof typ !== 'string' || !typs.has(typ.toLowerCase())) fail('type', 'token typ not accepted')
    // No extension is understood, so any crit (RFC 7515 §4.1.11) means refuse; b64 (RFC 7797) likewise.
    if (header.crit !== undefined) fail('header', 'token crit header not supported')
    if (header.b64 !== undefined) fail('header', 'token b64 header not supported')
    for (const name of KEY_SOURCE_HEADERS) if (header[name] !== undefined) fail('header', 'token key-source headers (jku, x5u, jwk, x5c) are not accepted')
    const kid = header.kid
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_KID_LENGTH) fail('header', KID_INVALID)
    const checked: CheckedHeader = { header: deepFreeze(header) as unknown as VerifiedHeader, alg: alg as VerifyAlgorithm, kid }
    if (headers.size >= MAX_CACHED_HEADERS) headers.clear()
    headers.set(segment, checked)
    return checked
  }

  function verifySync(token: string): VerifiedToken {
    // Size first: nothing unbounded is parsed, hashed or cached.
    if (typeof token !== 'string' || token.length === 0) fail('malformed', 'token missing')
    if (token.length > maxTokenBytes) fail('too_large', 'token too large')
    const nowMs = clock.now()
    // A hit costs no SHA-256 (3 % of a decision's CPU, issue 20): the entry holds the token, as Envoy's
    // jwt_authn cache does, and is found by the token's last characters (its signature's: a short key is
    // cheap to hash), then compared whole. A longer token is found by its SHA-256 (43 characters, so the
    // two kinds of key never meet) and not held.
    const held = token.length <= MAX_HELD_TOKEN
    const cacheKey = held ? (token.length > CACHE_KEY_SUFFIX ? token.slice(-CACHE_KEY_SUFFIX) : token) : sha256b64url(token)
    if (cache !== undefined) {
      const hit = cache.get(cacheKey)
      if (hit !== undefined && hit.token === (held ? token : undefined)) {
        if (hit.expMs > nowMs && jwks.getKey(hit.result.kid) === hit.key) return hit.result
        cache.delete(cacheKey)
      }
    }

    const dot1 = token.indexOf('.')
    const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1)
    if (dot1 <= 0 || dot2 <= dot1 + 1 || dot2 === token.length - 1 || token.indexOf('.', dot2 + 1) !== -1) {
      fail('malformed', 'token is not a compact JWS (three segments)')
    }

    // Header and payload are signed as text, so their spelling cannot vary: only the signature must be canonical.
    const payload = decodeSegment(token, dot1 + 1, dot2, false)
    const { header, alg, kid } = checkedHeader(token, dot1)

    const key = jwks.getKey(kid)
    if (key === undefined) {
      if (!jwks.loaded) {
        void jwks.refreshOnMiss()
        fail('keys_not_loaded', 'verification keys not loaded', kid)
      }
      void jwks.refreshOnMiss()
      fail('unknown_kid', 'token kid unknown', kid)
    }
    // The key pins its algorithm: a header naming another one never selects a key type.
    if (key.alg !== alg) fail('algorithm', 'token alg does not match its key')

    // Non-canonical trailing bits would give one signature several spellings (and cache keys).
    const signature = decodeSegment(token, dot2 + 1, token.length, true).bytes
    if (signature.length !== key.signatureBytes) fail('signature', 'token signature invalid')
    // Segments were checked to be base64url, so latin1 gives the exact ASCII signing input.
    const signingInput = Buffer.from(token.slice(0, dot2), 'latin1')
    // Compact JWS verification is written out (not jose's jwtVerify) because jwtVerify is async
    // WebCrypto and about 2x slower on the gateway hot path; Ed25519 goes to libsodium when it loads.
    let valid: boolean
    try {
      if (alg === 'EdDSA') valid = ed25519.verify(signingInput, signature, key.raw, key.key)
      else if (alg === 'RS256') valid = cryptoVerify('sha256', signingInput, key.key, signature)
      else valid = cryptoVerify('sha256', signingInput, { key: key.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
    } catch {
      valid = false
    }
    if (!valid) fail('signature', 'token signature invalid')

    const claims = parseJsonObject(payload, 'payload')
    if (jsonDepth(claims, MAX_CLAIMS_DEPTH) > MAX_CLAIMS_DEPTH) fail('claims', 'token claims nested too deeply')
    const now = nowMs / 1000
    if (claims.iss !== issuer) fail('issuer', 'token issuer not accepted')
    const aud = claims.aud
    if (typeof aud === 'string') {
      if (!acceptsAudience(aud)) fail('audience', 'token audience not accepted')
    } else if (Array.isArray(aud) && aud.length > 0 && aud.every((a) => typeof a === 'string')) {
      if (!aud.some((a: string) => acceptsAudience(a))) fail('audience', 'token audience not accepted')
    } else {
      fail('audience', 'token audience missing or invalid')
    }
    const exp = claims.exp
    if (!isNumericDate(exp)) fail('claims', 'token exp missing or invalid')
    if (exp <= now - skew) fail('expired', 'token expired')
    if (claims.nbf !== undefined) {
      if (!isNumericDate(claims.nbf)) fail('claims', 'token nbf invalid')
      if (claims.nbf > now + skew) fail('not_yet_valid', 'token not yet valid')
    }
    if (!isNumericDate(claims.iat)) fail('claims', 'token iat missing or invalid')
    if (claims.iat > now + skew) fail('not_yet_valid', 'token issued in the future')
    if (typeof claims.sub !== 'string' || claims.sub.length === 0) fail('claims', 'token sub missing')
    if (typeof claims.jti !== 'string' || claims.jti.length === 0) fail('claims', 'token jti missing')
    for (const name of OPTIONAL_STRING_CLAIMS) {
      if (claims[name] !== undefined && typeof claims[name] !== 'string') fail('claims', `token ${name} invalid`)
    }
    if (claims.cnf !== undefined && (typeof claims.cnf !== 'object' || claims.cnf === null || Array.isArray(claims.cnf))) fail('claims', 'token cnf invalid')

    const tokenHash = held ? sha256b64url(token) : cacheKey
    const result: VerifiedToken = Object.freeze({ claims: deepFreeze(claims) as unknown as AccessTokenClaims, kid, header, tokenHash })
    const expMs = exp * 1000
    if (cache !== undefined && expMs > nowMs) cache.set(cacheKey, { result, key, expMs, token: held ? token : undefined })
    return result
  }

  const keyWaitMs = options.keyWaitMs ?? 10_000

  /** Waits for the key source's refetch, at most keyWaitMs (a source's own fetch may be slower). */
  async function awaitKeys(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, keyWaitMs)
    })
    try {
      await Promise.race([jwks.refreshOnMiss(), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async function verify(token: string): Promise<VerifiedToken> {
    try {
      return verifySync(token)
    } catch (err) {
      if (!(err instanceof VerifyError) || (err.reason !== 'unknown_kid' && err.reason !== 'keys_not_loaded')) throw err
      await awaitKeys()
      return verifySync(token)
    }
  }

  return {
    verify,
    verifySync,
    verifyAsync: verify,
    jwks,
    ed25519Backend: ed25519.backend,
    clearCache: () => cache?.clear(),
    close: () => {
      owned?.close()
    },
  }
}
