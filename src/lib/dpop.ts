/**
 * DPoP proofs (RFC 9449), verified the same way at the token endpoint and at
 * gateways, plus stateless server nonces. Pure apart from jose; the caller
 * claims the returned `jti` in its replay cache (single use, §11.1).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose'

/** Asymmetric algorithms accepted in proofs (`dpop_signing_alg_values_supported`). */
export const DPOP_ALGORITHMS: readonly string[] = ['EdDSA', 'ES256', 'RS256', 'PS256']

/** Longest proof accepted unparsed. */
export const MAX_DPOP_PROOF_BYTES = 4096

/** A proof that failed; `nonce` is true when only a (fresh) server nonce is missing (answer `use_dpop_nonce`). */
export class DpopProofError extends Error {
  constructor(
    message: string,
    readonly nonce = false,
  ) {
    super(message)
    this.name = 'DpopProofError'
  }
}

export interface DpopCheck {
  /** HTTP method of the request (`htm`). */
  method: string
  /** URL of the request (`htu`); query and fragment are ignored (§4.3). */
  url: string
  /** Epoch seconds. */
  now: number
  /** How old `iat` may be, seconds. */
  maxAgeSeconds: number
  /** Clock skew allowed either way, seconds. */
  skewSeconds: number
  /** At a resource: the access token, whose hash must be in `ath` (§4.3 #11). */
  accessToken?: string
  /** Decides an offered nonce; absent = nonces not used. `required` = a proof without a valid nonce is refused. */
  nonce?: { valid(n: string): boolean; required: boolean }
}

/** A verified proof. */
export interface VerifiedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof key (`cnf.jkt`). */
  jkt: string
  jti: string
  /** Epoch seconds. */
  iat: number
  /** When the jti may be forgotten (epoch seconds): after this the proof is stale anyway. */
  replayUntil: number
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

/** `scheme://host[:port]/path`, lower-cased scheme and host, default ports dropped, no query or fragment. */
export function normalizeHtu(url: string): string | null {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return null
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return null
  return `${u.protocol}//${u.host}${u.pathname}`
}

/** base64url(SHA-256(access token)), the `ath` value. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url')
}

/** Checks one `DPoP` header value (§4.3). Rejects with DpopProofError. */
export async function verifyDpopProof(proof: string, check: DpopCheck): Promise<VerifiedDpopProof> {
  if (proof.length === 0 || proof.length > MAX_DPOP_PROOF_BYTES) throw new DpopProofError('DPoP proof missing or too large')
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(proof)
  } catch {
    throw new DpopProofError('DPoP proof is not a JWS')
  }
  if (header.typ !== 'dpop+jwt') throw new DpopProofError('DPoP proof typ must be dpop+jwt')
  const alg = header.alg
  if (typeof alg !== 'string' || !DPOP_ALGORITHMS.includes(alg)) throw new DpopProofError('DPoP proof alg not allowed')
  const jwk = header.jwk as JWK | undefined
  if (!jwk || typeof jwk !== 'object' || typeof jwk.kty !== 'string' || jwk.kty === 'oct') throw new DpopProofError('DPoP proof needs a public jwk')
  if (PRIVATE_MEMBERS.some((m) => (jwk as Record<string, unknown>)[m] !== undefined))
    throw new DpopProofError('DPoP proof jwk must not hold private key material')
  let payload: Record<string, unknown>
  try {
    const key = await importJWK(jwk, alg)
    // jose checks exp/nbf when present; iat freshness is checked below with the configured window.
    const r = await jwtVerify(proof, key, { typ: 'dpop+jwt', algorithms: [alg], clockTolerance: check.skewSeconds, currentDate: new Date(check.now * 1000) })
    payload = r.payload as Record<string, unknown>
  } catch {
    throw new DpopProofError('DPoP proof signature or claims invalid')
  }
  const { htm, htu, iat, jti, ath, nonce } = payload
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 256) throw new DpopProofError('DPoP proof jti missing')
  if (htm !== check.method.toUpperCase()) throw new DpopProofError('DPoP proof htm does not match the request method')
  const want = normalizeHtu(check.url)
  if (typeof htu !== 'string' || htu.length > 2048 || want === null || normalizeHtu(htu) !== want)
    throw new DpopProofError('DPoP proof htu does not match the request URL')
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new DpopProofError('DPoP proof iat missing')
  if (iat > check.now + check.skewSeconds || iat < check.now - check.maxAgeSeconds - check.skewSeconds)
    throw new DpopProofError('DPoP proof iat outside the accepted window')
  if (check.accessToken !== undefined) {
    if (typeof ath !== 'string' || !safeEqual(ath, accessTokenHash(check.accessToken)))
      throw new DpopProofError('DPoP proof ath does not match the access token')
  }
  if (check.nonce) {
    if (nonce === undefined) {
      if (check.nonce.required) throw new DpopProofError('a DPoP nonce is required', true)
    } else if (typeof nonce !== 'string' || nonce.length > 256 || !check.nonce.valid(nonce)) {
      throw new DpopProofError('DPoP nonce invalid or stale', true)
    }
  }
  const jkt = await calculateJwkThumbprint(jwk, 'sha256')
  return { jkt, jti, iat, replayUntil: Math.floor(iat) + check.maxAgeSeconds + 2 * check.skewSeconds }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/**
 * Stateless server nonces (§8, §9): `bucket.HMAC(secret, bucket)` for the
 * current time bucket, valid through the next bucket, so every control plane
 * and gateway sharing the secret accepts every other's nonces without shared
 * state. Hand-written because no library offers it.
 */
export class DpopNonces {
  private readonly secret: Buffer

  /** `secret` empty/undefined = a random per-process secret (nonces then hold only for this process). */
  constructor(
    secret: string | undefined,
    private readonly bucketSeconds = 120,
  ) {
    this.secret = secret ? Buffer.from(secret, 'utf8') : randomBytes(32)
  }

  private mac(bucket: number): string {
    return createHmac('sha256', this.secret).update(`aegis-dpop-nonce:${bucket}`).digest('base64url').slice(0, 32)
  }

  /** A nonce for `nowSeconds`. */
  issue(nowSeconds: number): string {
    const bucket = Math.floor(nowSeconds / this.bucketSeconds)
    return `${bucket.toString(36)}.${this.mac(bucket)}`
  }

  /** True for a nonce of the current or the previous bucket. */
  valid(nonce: string, nowSeconds: number): boolean {
    const dot = nonce.indexOf('.')
    if (dot < 1 || dot > 12) return false
    const bucket = parseInt(nonce.slice(0, dot), 36)
    const cur = Math.floor(nowSeconds / this.bucketSeconds)
    if (!Number.isSafeInteger(bucket) || (bucket !== cur && bucket !== cur - 1)) return false
    return safeEqual(nonce.slice(dot + 1), this.mac(bucket))
  }
}

/** The `DPoP` scheme's `WWW-Authenticate` value (RFC 9449 §7.1). */
export function dpopChallenge(error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce', description: string): string {
  return `DPoP error="${error}", error_description="${description.replace(/["\\]/g, '')}", algs="${DPOP_ALGORITHMS.join(' ')}"`
}
