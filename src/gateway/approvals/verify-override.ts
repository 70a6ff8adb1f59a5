/**
 * Gateway-side check of a one-time approval override token (docs/reference.md
 * "Approvals", pipeline step 6). The token arrives in `Aegis-Override` beside
 * the caller's access token; it is accepted only when
 * - it passes `aegis/verify`'s verifier (the one access tokens pass too)
 *   with `typ: aegis-override+jwt` (so an access token never passes as one),
 *   over the key source the gateway verifies access tokens with (its
 *   JwksClient): signature, no `jku`/`x5u`/`jwk`/`x5c`/`crit` header;
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
import type { ReplayCache } from '../../store/replay-cache.js'
import { createVerifier, VerifyError, type AccessTokenClaims, type KeySource, type VerifyAlgorithm, type VerifyFailureReason } from '../../verify/index.js'
import { KID_INVALID } from '../../verify/index.js'

/** JOSE `typ` of override tokens; the control plane mints the same literal. */
export const OVERRIDE_TYP = 'aegis-override+jwt'

/** Longest override lifetime accepted whatever the token says (seconds). */
const MAX_LIFETIME_SECONDS = 3600

/** Why an override was refused (for audit and metrics; never shown verbatim with claim values). */
export type OverrideFailureReason =
  | 'malformed'
  | 'too_large'
  | 'type'
  | 'header'
  | 'unknown_kid'
  | 'signature'
  | 'claims'
  | 'expired'
  | 'binding'
  | 'replayed'
  | 'unavailable'

/** An override token was refused. Maps to `invalid_token` (401) at the gateway. */
export class OverrideError extends Error {
  readonly code = 'invalid_token' as const
  constructor(
    readonly reason: OverrideFailureReason,
    message: string,
  ) {
    super(message)
    this.name = 'OverrideError'
  }
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
  /** The gateway's key source (`deps.verifier.jwks`). */
  keys: KeySource
  issuer: string
  audience: string
  expected: OverrideExpectation
  /** Default 30. */
  clockSkewSeconds?: number
  /** Default 8192. */
  maxTokenBytes?: number
  /** Epoch ms; default Date.now(). */
  now?: number
  /** Ed25519 implementation (`keys.ed25519`); default 'auto'. */
  ed25519?: 'auto' | 'node:crypto' | 'libsodium'
}

/** A verified override. */
export interface VerifiedOverride {
  jti: string
  /** Epoch seconds. */
  exp: number
  approvalId: string
}

/**
 * Every algorithm `aegis/verify` knows: each key of the source is pinned to
 * its own `alg`, and a header naming another one is refused, so the key
 * source decides (the gateway's JwksClient imports EdDSA keys only).
 */
const ALGORITHMS: VerifyAlgorithm[] = ['EdDSA', 'RS256', 'PS256']

/** What the gateway answers for each verifier refusal of an override (these messages reach the client). */
const REFUSALS: Record<VerifyFailureReason, readonly [OverrideFailureReason, string]> = {
  malformed: ['malformed', 'override token malformed'],
  too_large: ['too_large', 'override token too large'],
  algorithm: ['signature', 'override token algorithm not accepted'],
  type: ['type', 'not an override token'],
  header: ['header', 'override token header not accepted'],
  keys_not_loaded: ['unknown_kid', 'override token signed by an unknown key'],
  unknown_kid: ['unknown_kid', 'override token signed by an unknown key'],
  signature: ['signature', 'override token signature invalid'],
  issuer: ['claims', 'override token claims not accepted'],
  audience: ['claims', 'override token claims not accepted'],
  expired: ['expired', 'override token expired'],
  not_yet_valid: ['claims', 'override token claims not accepted'],
  claims: ['claims', 'override token claims not accepted'],
}

function refusal(err: VerifyError): OverrideError {
  if (err.reason === 'header' && err.message === KID_INVALID) return new OverrideError('header', 'override token has no key id')
  const [reason, message] = REFUSALS[err.reason]
  return new OverrideError(reason, message)
}

/**
 * Verifies signature, type, issuer, audience, lifetime and binding. Does not
 * consume the jti: call {@link claimOverride} after every other check passed.
 * Throws {@link OverrideError}.
 */
export async function verifyOverride(token: string, opts: VerifyOverrideOptions): Promise<VerifiedOverride> {
  if (typeof token !== 'string' || token.length === 0) throw new OverrideError('malformed', 'override token missing')
  const now = opts.now ?? Date.now()
  // A verifier per check, cheap to make (it holds no keys of its own): each check has its own
  // time, and nothing is worth caching since every override is single-use.
  const verifier = createVerifier({
    issuer: opts.issuer,
    audience: opts.audience,
    jwks: opts.keys,
    typ: [OVERRIDE_TYP],
    algorithms: ALGORITHMS,
    clockSkewSeconds: opts.clockSkewSeconds ?? 30,
    maxTokenBytes: opts.maxTokenBytes ?? 8192,
    ed25519: opts.ed25519 ?? 'auto',
    clock: { now: () => now },
    cacheSize: 0,
  })
  let c: AccessTokenClaims
  try {
    c = (await verifier.verify(token)).claims
  } catch (err) {
    if (err instanceof VerifyError) throw refusal(err)
    throw err
  }
  if (c.jti.length > 200) throw new OverrideError('claims', 'override token has no jti')
  if (c.exp - c.iat > MAX_LIFETIME_SECONDS) throw new OverrideError('claims', 'override token lifetime not accepted')
  if (typeof c.approval_id !== 'string') throw new OverrideError('claims', 'override token has no approval_id')
  const e = opts.expected
  const bound =
    c.agent_id === e.agentId &&
    c.sub === e.agentId &&
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
