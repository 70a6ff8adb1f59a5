/**
 * RFC 8693 token exchange for workload identity: a `subject_token` JWT from
 * an issuer the tenant trusts (Kubernetes service account, CI OIDC, SPIFFE
 * JWT-SVID), verified against that issuer's keys, audience and lifetime,
 * and mapped by the issuer's claim rules to exactly one agent. No static
 * secret is involved; the token minted never outlives the subject token.
 */
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import { AegisError, InvalidRequest } from '../../../errors.js'
import type { Agent, Tenant, TrustedIssuer } from '../../../store/types.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { IssueRequest } from '../issue.js'
import { single } from '../params.js'
import { resolveAudiences, resolveScope } from '../request-scope.js'
import type { GrantContext, GrantHandler } from './types.js'

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt'
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token'
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
/** Signature algorithms accepted on subject tokens (RFC 8725 §3.1: an allow-list). */
export const SUBJECT_TOKEN_ALGORITHMS = ['RS256', 'ES256', 'EdDSA', 'PS256']
const MAX_SUBJECT_TOKEN = 8192

/** Remote JWKS per URL, with jose's own caching and cooldown; bounded. */
const remoteSets = new Map<string, JWTVerifyGetKey>()

function keysOf(ti: TrustedIssuer): JWTVerifyGetKey {
  if (ti.jwks) return createLocalJWKSet(ti.jwks as JSONWebKeySet)
  const uri = ti.jwksUri!
  let set = remoteSets.get(uri)
  if (!set) {
    if (remoteSets.size >= 1000) remoteSets.delete(remoteSets.keys().next().value!)
    set = createRemoteJWKSet(new URL(uri), { timeoutDuration: 3000, cooldownDuration: 30_000, cacheMaxAge: 600_000 })
    remoteSets.set(uri, set)
  }
  return set
}

/** True when every claim the rule lists equals the token's (string claims only). */
export function ruleMatches(rule: { claims: Record<string, string> }, payload: JWTPayload): boolean {
  return Object.entries(rule.claims).every(([k, v]) => typeof payload[k] === 'string' && payload[k] === v)
}

function fetchFailure(err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'ERR_JWKS_TIMEOUT' || (typeof code !== 'string' && err instanceof TypeError) || (code === 'ERR_JOSE_GENERIC' && /fetch|network|status/i.test(String((err as Error).message)))
}

interface Match { issuer: TrustedIssuer; payload: JWTPayload; agentId: string }

/** Verifies the subject token against one trusted issuer entry; null when it does not verify. */
async function verifyWith(deps: ControlPlaneDeps, ti: TrustedIssuer, token: string): Promise<JWTPayload | null> {
  const skew = deps.config.tokens.clockSkewSeconds
  const now = Math.floor(deps.clock.now() / 1000)
  try {
    const { payload } = await jwtVerify(token, keysOf(ti), {
      issuer: ti.issuer,
      audience: ti.audience,
      algorithms: SUBJECT_TOKEN_ALGORITHMS,
      clockTolerance: skew,
      currentDate: new Date(now * 1000),
      requiredClaims: ['exp', 'sub'],
    })
    if (typeof payload.iat === 'number' && payload.iat > now + skew) return null
    return payload
  } catch (err) {
    if (fetchFailure(err)) throw new AegisError('temporarily_unavailable', 'the subject token issuer\'s keys are unreachable; retry later', { cause: err })
    deps.logger.info({ issuer: ti.issuer, tenant: ti.tenant, err: (err as Error).message }, 'subject token refused')
    return null
  }
}

/** The token-exchange grant handler. */
export const tokenExchangeGrant: GrantHandler = {
  grantType: TOKEN_EXCHANGE_GRANT,
  clientAuth: 'optional',
  async prepare(ctx: GrantContext): Promise<IssueRequest> {
    const { deps, body, client } = ctx
    const subjectToken = single(body, 'subject_token', MAX_SUBJECT_TOKEN)
    const subjectType = single(body, 'subject_token_type', 256)
    if (subjectToken === undefined) throw new InvalidRequest('subject_token is required')
    if (subjectType === undefined) throw new InvalidRequest('subject_token_type is required')
    if (subjectType !== TOKEN_TYPE_JWT && subjectType !== TOKEN_TYPE_ID_TOKEN) throw new InvalidRequest('subject_token_type must be urn:ietf:params:oauth:token-type:jwt or :id_token')
    const requested = single(body, 'requested_token_type', 256)
    if (requested !== undefined && requested !== TOKEN_TYPE_ACCESS_TOKEN) throw new InvalidRequest('only access tokens can be requested')
    if (single(body, 'actor_token', MAX_SUBJECT_TOKEN) !== undefined) throw new InvalidRequest('actor_token is not supported')

    let iss: unknown
    try {
      iss = decodeJwt(subjectToken).iss
    } catch {
      throw new AegisError('invalid_grant', 'subject_token is not a JWT')
    }
    if (typeof iss !== 'string' || iss.length === 0 || iss.length > 512) throw new AegisError('invalid_grant', 'subject_token has no issuer')
    let candidates = await deps.store.trustedIssuers.findByIssuer(iss)
    // An authenticated client exchanges only for its own tenant.
    if (client) candidates = candidates.filter((t) => t.tenant === client.tenant.id)
    if (candidates.length === 0) throw new AegisError('invalid_grant', 'the subject token\'s issuer is not trusted')

    const matches: Match[] = []
    let verified = false
    for (const ti of candidates.slice(0, 20)) {
      const payload = await verifyWith(deps, ti, subjectToken)
      if (!payload) continue
      verified = true
      for (const rule of ti.rules) if (ruleMatches(rule, payload)) matches.push({ issuer: ti, payload, agentId: rule.agentId })
    }
    if (!verified) throw new AegisError('invalid_grant', 'subject_token is invalid, expired or not for this audience')
    const distinct = new Set(matches.map((m) => `${m.issuer.tenant}\u0000${m.agentId}`))
    if (distinct.size === 0) throw new AegisError('invalid_grant', 'no trusted-issuer rule maps the subject token to an agent')
    if (distinct.size > 1) throw new AegisError('invalid_grant', 'the subject token maps to more than one agent; make the rules exclusive')
    const m = matches[0]!

    const tenant: Tenant | null = await ctx.dir.tenant(m.issuer.tenant)
    const agent: Agent | null = await ctx.dir.agent(m.issuer.tenant, m.agentId)
    if (!tenant || !agent) throw new AegisError('invalid_grant', 'the mapped agent no longer exists')
    if (client && client.agent.agentId !== agent.agentId) throw new AegisError('invalid_grant', 'the subject token maps to another agent than the authenticated client')

    const remaining = (m.payload.exp as number) - Math.floor(deps.clock.now() / 1000)
    if (remaining <= 0) throw new AegisError('invalid_grant', 'subject_token expired')
    return {
      tenant,
      agent,
      clientId: agent.clientId,
      scope: resolveScope(agent, body),
      audiences: resolveAudiences(agent, deps.config, body),
      grant: TOKEN_EXCHANGE_GRANT,
      maxLifetimeSeconds: remaining,
      issuedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
      auditData: { subject_issuer: m.issuer.issuer, subject: typeof m.payload.sub === 'string' ? m.payload.sub.slice(0, 512) : null, trusted_issuer_id: m.issuer.id },
    }
  },
}
