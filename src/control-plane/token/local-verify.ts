/**
 * Verifies a token this control plane (or a peer sharing its keys) issued,
 * for revocation, introspection and the approval status endpoint, with the
 * one verifier of `aegis/verify` over the keys this process publishes:
 * `typ: at+jwt`, this issuer, any audience it mints for, `exp`/`nbf`/`iat`
 * with the configured skew, plus the claims every issuance sets.
 */
import { createVerifier, localKeySet, type AccessTokenClaims, type KeySource, type VerifiedToken, type Verifier } from '../../verify/index.js'
import type { ControlPlaneDeps } from '../deps.js'

/** Claims of a token this control plane issued: what `aegis/verify` checks, and the Aegis claims every issuance sets (docs/reference.md "Token service"). */
export type OwnTokenClaims = AccessTokenClaims & {
  readonly agent_id: string
  readonly client_id: string
  readonly tenant: string
  readonly scope: string
}

/** A verified token of this issuer. */
export type VerifiedOwnToken = VerifiedToken & { readonly claims: OwnTokenClaims }

function isOwn(v: VerifiedToken): v is VerifiedOwnToken {
  const c = v.claims
  // The verifier has checked these are strings when present; ours are always present.
  return c.agent_id !== undefined && c.client_id !== undefined && c.tenant !== undefined && c.scope !== undefined
}

/** Resolves a live token of ours, or null for anything else. Never throws. */
export class LocalTokenVerifier {
  private readonly verifier: Verifier<KeySource>

  constructor(deps: ControlPlaneDeps) {
    this.verifier = createVerifier({
      issuer: deps.config.issuer,
      // The issuer answers for every audience it mints for (RFC 7662 and RFC 7009 are not audience-restricted).
      audience: () => true,
      // The very set the JWKS endpoint serves: a key the gateways know is a key this check knows.
      jwks: localKeySet(() => deps.keys.jwks()),
      clockSkewSeconds: deps.config.tokens.clockSkewSeconds,
      maxTokenBytes: deps.config.tokens.maxTokenBytes,
      ed25519: deps.config.keys.ed25519,
      clock: deps.clock,
    })
  }

  async verify(token: string): Promise<VerifiedOwnToken | null> {
    try {
      const verified = this.verifier.verifySync(token)
      return isOwn(verified) ? verified : null
    } catch {
      return null
    }
  }
}
