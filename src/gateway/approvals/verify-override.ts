/**
 * Gateway-side check of a one-time approval override token (DESIGN.md
 * "Approvals", pipeline step 6). The token arrives in `Aegis-Override` beside
 * the caller's access token; it is accepted only when
 * - it is a JWS signed by a key of the issuer's JWKS (the same key source the
 *   gateway verifies access tokens with: `aegis/verify`'s JwksClient), with
 *   `typ: aegis-override+jwt` (so an access token never passes as one) and no
 *   `jku`/`x5u`/`jwk`/`x5c` header;
 * - `iss`, `aud`, `exp`/`nbf` (with skew) hold, and its lifetime is short;
 * - it is bound to exactly this call: `agent_id`, `tenant`, `tool`,
 *   `params_hash` (base64url SHA-256 of RFC 8785 canonical params),
 *   `policy_version`, `resource` and, for a reverse-proxy call,
 *   `request_hash` (the forwarded method, path, query and opaque body
 *   digest); an override minted for a proxied request is good for no other
 *   request, and one minted elsewhere for no proxied request;
 * - its `jti` was not used before ({@link claimOverride}: the replay cache,
 *   until the token's `exp`).
 * The caller must also have verified the access token itself: an override
 * never stands alone. Claims are documented in
 * control-plane/approvals/override.ts.
 */
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import type { ReplayCache } from '../../store/gateway-state.js'
import type { VerificationKey } from '../../verify/jwks-client.js'

/** JOSE `typ` of override tokens; the control plane mints the same literal. */
export const OVERRIDE_TYP = 'aegis-override+jwt'

/** Longest override lifetime accepted whatever the token says (seconds). */
const MAX_LIFETIME_SECONDS = 3600

/** Why an override was refused (for audit and metrics; never shown verbatim with claim values). */
export type OverrideFailureReason = 'malformed' | 'too_large' | 'type' | 'header' | 'unknown_kid' | 'signature' | 'claims' | 'expired' | 'binding' | 'replayed' | 'unavailable'

/** An override token was refused. Maps to `invalid_token` (401) at the gateway. */
export class OverrideError extends Error {
  readonly code = 'invalid_token' as const
  constructor(readonly reason: OverrideFailureReason, message: string) {
    super(message)
    this.name = 'OverrideError'
  }
}

/** Where signing keys come from: structurally `JwksClient` from `aegis/verify`. */
export interface OverrideKeySource {
  getKey(kid: string): VerificationKey | undefined
  /** Refetch on an unknown kid (rate-limited by the client). */
  refreshOnMiss?(): Promise<void>
}

/** The concrete call the override must match. */
export interface OverrideExpectation {
  agentId: string
  tenant: string
  tool: string
  /** base64url SHA-256 of the RFC 8785 canonical params of this call. */
  paramsHash: string
  /** Policy version deciding this call. */
  policyVersion: string
  /** The call's resource (null for none). Omit to skip the check. */
  resource?: string | null
  /** base64url SHA-256 of the canonical forwarded request (reverse-proxy calls); null or omitted for other calls. */
  requestHash?: string | null
}

export interface VerifyOverrideOptions {
  keys: OverrideKeySource
  issuer: string
  audience: string
  expected: OverrideExpectation
  /** Default 30. */
  clockSkewSeconds?: number
  /** Default 8192. */
  maxTokenBytes?: number
  /** Epoch ms; default Date.now(). */
  now?: number
}

/** A verified override. */
export interface VerifiedOverride {
  jti: string
  /** Epoch seconds. */
  exp: number
  approvalId: string
}

/**
 * Verifies signature, type, issuer, audience, lifetime and binding. Does not
 * consume the jti: call {@link claimOverride} after every other check passed.
 * Throws {@link OverrideError}.
 */
export async function verifyOverride(token: string, opts: VerifyOverrideOptions): Promise<VerifiedOverride> {
  if (typeof token !== 'string' || token.length === 0) throw new OverrideError('malformed', 'override token missing')
  if (token.length > (opts.maxTokenBytes ?? 8192)) throw new OverrideError('too_large', 'override token too large')
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw new OverrideError('malformed', 'override token malformed')
  let header: ReturnType<typeof decodeProtectedHeader>
  try { header = decodeProtectedHeader(token) } catch { throw new OverrideError('malformed', 'override token malformed') }
  if (header.typ !== OVERRIDE_TYP) throw new OverrideError('type', 'not an override token')
  if ('jku' in header || 'x5u' in header || 'jwk' in header || 'x5c' in header) throw new OverrideError('header', 'override token header not accepted')
  if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 256) throw new OverrideError('header', 'override token has no key id')
  let key = opts.keys.getKey(header.kid)
  if (!key && opts.keys.refreshOnMiss) {
    await opts.keys.refreshOnMiss().catch(() => {})
    key = opts.keys.getKey(header.kid)
  }
  if (!key) throw new OverrideError('unknown_kid', 'override token signed by an unknown key')
  if (header.alg !== key.alg) throw new OverrideError('signature', 'override token algorithm not accepted')

  const now = opts.now ?? Date.now()
  let payload: JWTPayload
  try {
    ({ payload } = await jwtVerify(token, key.key, {
      algorithms: [key.alg],
      typ: OVERRIDE_TYP,
      issuer: opts.issuer,
      audience: opts.audience,
      clockTolerance: opts.clockSkewSeconds ?? 30,
      currentDate: new Date(now),
      requiredClaims: ['jti', 'exp', 'iat', 'sub'],
    }))
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new OverrideError('expired', 'override token expired')
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw new OverrideError('signature', 'override token signature invalid')
    if (err instanceof joseErrors.JWTClaimValidationFailed) throw new OverrideError('claims', 'override token claims not accepted')
    throw new OverrideError('malformed', 'override token not accepted')
  }
  const c = payload as JWTPayload & Record<string, unknown>
  if (typeof c.jti !== 'string' || c.jti.length === 0 || c.jti.length > 200) throw new OverrideError('claims', 'override token has no jti')
  if (typeof c.exp !== 'number' || typeof c.iat !== 'number' || c.exp - c.iat > MAX_LIFETIME_SECONDS) throw new OverrideError('claims', 'override token lifetime not accepted')
  if (typeof c.approval_id !== 'string') throw new OverrideError('claims', 'override token has no approval_id')
  const e = opts.expected
  const bound =
    c.agent_id === e.agentId && c.sub === e.agentId &&
    c.tenant === e.tenant &&
    c.tool === e.tool &&
    c.params_hash === e.paramsHash &&
    c.policy_version === e.policyVersion &&
    (e.resource === undefined || (c.resource ?? null) === e.resource) &&
    (c.request_hash ?? null) === (e.requestHash ?? null)
  if (!bound) throw new OverrideError('binding', 'override token was approved for a different call')
  return { jti: c.jti, exp: c.exp, approvalId: c.approval_id }
}

/**
 * Consumes the override's jti in the replay cache (shared by every gateway),
 * until the token's `exp`. Throws `replayed` when it was used before, and
 * `unavailable` when the cache cannot be reached (fail closed: an override is
 * always treated as high risk).
 */
export async function claimOverride(replay: ReplayCache, v: VerifiedOverride): Promise<void> {
  let fresh: boolean
  try {
    fresh = await replay.claim(`override:${v.jti}`, v.exp)
  } catch {
    throw new OverrideError('unavailable', 'override cannot be checked right now')
  }
  if (!fresh) throw new OverrideError('replayed', 'override token already used')
}

/** verifyOverride then claimOverride: the whole gateway-side check. */
export async function checkOverride(token: string, opts: VerifyOverrideOptions & { replay: ReplayCache }): Promise<VerifiedOverride> {
  const v = await verifyOverride(token, opts)
  await claimOverride(opts.replay, v)
  return v
}
