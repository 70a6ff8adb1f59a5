/**
 * private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9): a JWT signed with
 * a key of the agent's registered `jwks`, `iss` = `sub` = client_id, `aud`
 * naming this token endpoint (or the issuer), a short `exp`, and a `jti`
 * used once (replay cache until exp).
 */
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose'
import { Unavailable } from '../../../errors.js'
import type { AegisConfig } from '../../../config/schema.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { Directory } from '../directory.js'
import { ClientAuthFailure } from './failure.js'
import type { AuthPurpose, AuthenticatedClient, ClientAuthenticator, ClientClaim } from './types.js'

/** `client_assertion_type` for RFC 7523 client authentication. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/** Algorithms accepted for client assertions (metadata `token_endpoint_auth_signing_alg_values_supported`). */
export const ASSERTION_ALGORITHMS = ['EdDSA', 'ES256', 'RS256', 'PS256']
/** Longest client assertion accepted. */
export const MAX_ASSERTION_BYTES = 8192
/** How far ahead an assertion's `exp` may lie, seconds. */
export const MAX_ASSERTION_LIFETIME = 300

/** The URLs of the token endpoint (plain and mTLS alias), without trailing slash. */
export function tokenEndpointUrls(config: AegisConfig): string[] {
  const base = config.issuer.replace(/\/+$/, '')
  const out = [`${base}/oauth2/token`]
  if (config.control.tlsPort !== undefined && config.tls.cert) {
    const u = new URL(base)
    u.protocol = 'https:'
    u.port = String(config.control.tlsPort)
    out.push(`${u.toString().replace(/\/+$/, '')}/oauth2/token`)
  }
  return out
}

/** The client id an assertion claims (`iss`), for requests without `client_id`; undefined when unreadable. */
export function assertionIssuer(assertion: string): string | undefined {
  try {
    const iss = decodeJwt(assertion).iss
    return typeof iss === 'string' && iss.length > 0 && iss.length <= 128 ? iss : undefined
  } catch {
    return undefined
  }
}

/** The private_key_jwt authenticator. */
export function privateKeyJwtAuthenticator(deps: ControlPlaneDeps, dir: Directory): ClientAuthenticator {
  const audiences = [...tokenEndpointUrls(deps.config), deps.config.issuer, deps.config.issuer.replace(/\/+$/, '')]
  return {
    methods: ['private_key_jwt'],
    async authenticate(claim: ClientClaim, _purpose: AuthPurpose): Promise<AuthenticatedClient> {
      const assertion = claim.assertion
      if (!assertion || assertion.length > MAX_ASSERTION_BYTES) throw new ClientAuthFailure('malformed')
      const agent = await deps.store.agents.getByClientId(claim.clientId)
      if (!agent) throw new ClientAuthFailure('unknown_client')
      if (agent.tokenEndpointAuthMethod !== 'private_key_jwt' || !agent.jwks) throw new ClientAuthFailure('method_not_allowed', agent.tenant)
      const skew = deps.config.tokens.clockSkewSeconds
      const now = Math.floor(deps.clock.now() / 1000)
      let payload: Record<string, unknown>
      try {
        const r = await jwtVerify(assertion, createLocalJWKSet(agent.jwks as JSONWebKeySet), {
          issuer: agent.clientId,
          subject: agent.clientId,
          audience: audiences,
          algorithms: ASSERTION_ALGORITHMS,
          clockTolerance: skew,
          currentDate: new Date(now * 1000),
          requiredClaims: ['exp', 'jti'],
        })
        payload = r.payload as Record<string, unknown>
      } catch {
        throw new ClientAuthFailure('bad_assertion', agent.tenant)
      }
      const exp = payload.exp as number
      const jti = payload.jti
      if (exp > now + MAX_ASSERTION_LIFETIME + skew) throw new ClientAuthFailure('bad_assertion', agent.tenant)
      if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw new ClientAuthFailure('bad_assertion', agent.tenant)
      const tenant = await dir.tenant(agent.tenant)
      if (!tenant) throw new ClientAuthFailure('tenant_missing', agent.tenant)
      // RFC 7523 §3 item 7: one use per jti. Claimed at once so two parallel requests cannot both pass.
      let first: boolean
      try {
        first = await deps.replay.claim(`pkjwt:${agent.clientId}:${jti}`, exp + skew)
      } catch (err) {
        // Fail closed: without the replay cache an assertion could be used twice.
        throw new Unavailable('client assertion replay check unavailable; retry later', { cause: err })
      }
      if (!first) throw new ClientAuthFailure('replayed', agent.tenant)
      return { method: 'private_key_jwt', clientId: agent.clientId, tenant, agent, credential: null, commit: noCommit }
    },
  }
}

async function noCommit(): Promise<void> {}
