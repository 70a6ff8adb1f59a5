/**
 * Verifies a token this control plane (or a peer sharing its keys) issued,
 * for revocation and introspection: signature against the published keys,
 * `typ: at+jwt`, issuer, expiry with the configured skew.
 */
import { importJWK, jwtVerify, type CryptoKey, type JWTPayload, type KeyObject } from 'jose'
import type { ControlPlaneDeps } from '../deps.js'

/** Claims of one of our access tokens (DESIGN.md "Token service"). */
export interface AccessTokenClaims extends JWTPayload {
  iss: string
  sub: string
  agent_id: string
  client_id: string
  tenant: string
  scope: string
  iat: number
  exp: number
  jti: string
  policy_version: string
  capability_hash: string
}

export interface VerifiedToken {
  claims: AccessTokenClaims
  kid: string
}

function isClaims(p: JWTPayload): p is AccessTokenClaims {
  return typeof p.sub === 'string' && typeof p.agent_id === 'string' && typeof p.client_id === 'string' && typeof p.tenant === 'string' &&
    typeof p.jti === 'string' && typeof p.iat === 'number' && typeof p.exp === 'number' && typeof p.scope === 'string'
}

/** Resolves the claims, or null for anything not a live token of ours. Never throws. */
export class LocalTokenVerifier {
  private readonly keys = new Map<string, { x: unknown; key: CryptoKey | KeyObject | Uint8Array }>()

  constructor(private readonly deps: ControlPlaneDeps) {}

  private async key(kid: string): Promise<CryptoKey | KeyObject | Uint8Array | null> {
    const jwk = this.deps.keys.jwks().keys.find((k) => k.kid === kid)
    if (!jwk) return null
    const hit = this.keys.get(kid)
    if (hit && hit.x === jwk.x) return hit.key
    const key = await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')
    if (this.keys.size > 64) this.keys.clear()
    this.keys.set(kid, { x: jwk.x, key })
    return key
  }

  async verify(token: string): Promise<VerifiedToken | null> {
    if (token.length > this.deps.config.tokens.maxTokenBytes) return null
    let kid = ''
    try {
      const { payload, protectedHeader } = await jwtVerify(token, async (header) => {
        if (typeof header.kid !== 'string') throw new Error('no kid')
        kid = header.kid
        const k = await this.key(header.kid)
        if (!k) throw new Error('unknown kid')
        return k
      }, {
        issuer: this.deps.config.issuer,
        typ: 'at+jwt',
        algorithms: ['EdDSA'],
        clockTolerance: this.deps.config.tokens.clockSkewSeconds,
        currentDate: new Date(this.deps.clock.now()),
      })
      if (!isClaims(payload) || protectedHeader.kid !== kid) return null
      return { claims: payload, kid }
    } catch {
      return null
    }
  }
}
