/**
 * RFC 8693 token exchange for workload identity (with an `actor_token`:
 * delegation, grants/delegation.ts): a `subject_token` JWT from
 * an issuer the tenant trusts (Kubernetes service account, CI OIDC, SPIFFE
 * JWT-SVID), verified against that issuer's keys, audience and lifetime,
 * and mapped by the issuer's claim rules to exactly one agent. No static
 * secret is involved; the token minted never outlives the subject token.
 *
 * Tenant isolation. Several tenants may trust the same issuer, and each
 * tenant admin writes their own entries, so no tenant's entries may change
 * what another tenant's exchanges get:
 * - the exchange's tenant is the authenticated client's, else the `tenant`
 *   parameter (an Aegis extension); only that tenant's entries are tried;
 * - without either, every tenant whose entry names the token's `iss` and
 *   one of its audiences is tried, each on its own: an entry that fails
 *   (keys unreachable, signature, claims) is "no match", never an error for
 *   the exchange; the exchange succeeds only when exactly one tenant maps
 *   the token to an agent (two tenants: refused, name the tenant);
 * - at most MAX_ENTRIES_PER_TENANT entries per tenant are tried (oldest
 *   first), so one tenant's entries cannot push another's out.
 * Keys are fetched by subject-keys.ts (no internal addresses, bounded, one
 * error for every failure); an exchange answers 503 only when the tenant's
 * own entries could not get their keys.
 */
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import { AegisError, InvalidRequest, Unavailable } from '../../../errors.js'
import { parseNetworks } from '../../../lib/outbound-address.js'
import type { Agent, Tenant, TrustedIssuer } from '../../../store/types.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { IssueRequest } from '../issue.js'
import { single } from '../params.js'
import { resolveAudiences, resolveScope } from '../request-scope.js'
import { prepareDelegation } from './delegation.js'
import { JwksUnavailable, RemoteJwksCache } from './subject-keys.js'
import type { GrantContext, GrantHandler } from './types.js'

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt'
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token'
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
/** Signature algorithms accepted on subject tokens (RFC 8725 §3.1: an allow-list). */
export const SUBJECT_TOKEN_ALGORITHMS = ['RS256', 'ES256', 'EdDSA', 'PS256']
const MAX_SUBJECT_TOKEN = 8192
/** Entries of one tenant tried for one exchange. */
export const MAX_ENTRIES_PER_TENANT = 20
/** Tenants tried for one exchange that names no tenant; beyond, the client must name it. */
export const MAX_TENANTS_UNNAMED = 20

/** One remote-key cache per control plane (its config decides the outbound policy). */
const caches = new WeakMap<ControlPlaneDeps, RemoteJwksCache>()

function remoteKeys(deps: ControlPlaneDeps): RemoteJwksCache {
  let c = caches.get(deps)
  if (!c) {
    const te = deps.config.tokenExchange
    c = new RemoteJwksCache({
      policy: { allowed: parseNetworks(te.jwksAllowedNetworks).networks },
      clock: deps.clock,
      timeoutMs: te.jwksTimeoutMs,
      maxBytes: te.jwksMaxBytes,
    })
    caches.set(deps, c)
  }
  return c
}

async function keysOf(deps: ControlPlaneDeps, ti: TrustedIssuer): Promise<JWTVerifyGetKey> {
  if (ti.jwks) return createLocalJWKSet(ti.jwks as JSONWebKeySet)
  return remoteKeys(deps).resolver(ti.jwksUri!)
}

/** True when every claim the rule lists equals the token's (string claims only). */
export function ruleMatches(rule: { claims: Record<string, string> }, payload: JWTPayload): boolean {
  return Object.entries(rule.claims).every(([k, v]) => typeof payload[k] === 'string' && payload[k] === v)
}

interface Match {
  issuer: TrustedIssuer
  payload: JWTPayload
  agentId: string
}

/** What one trusted-issuer entry made of the subject token. */
export type Outcome = { payload: JWTPayload } | 'invalid' | 'unavailable'

/** Verifies the subject token against one trusted issuer entry. Never throws: a failure is this entry's outcome. */
export async function verifyWith(deps: ControlPlaneDeps, ti: TrustedIssuer, token: string): Promise<Outcome> {
  const skew = deps.config.tokens.clockSkewSeconds
  const now = Math.floor(deps.clock.now() / 1000)
  try {
    const { payload } = await jwtVerify(token, await keysOf(deps, ti), {
      issuer: ti.issuer,
      audience: ti.audience,
      algorithms: SUBJECT_TOKEN_ALGORITHMS,
      clockTolerance: skew,
      currentDate: new Date(now * 1000),
      requiredClaims: ['exp', 'sub'],
    })
    if (typeof payload.iat === 'number' && payload.iat > now + skew) return 'invalid'
    return { payload }
  } catch (err) {
    if (err instanceof JwksUnavailable) {
      deps.logger.warn(
        { issuer: ti.issuer, tenant: ti.tenant, trusted_issuer_id: ti.id, err: (err.cause as Error | undefined)?.message },
        'trusted issuer keys unavailable',
      )
      return 'unavailable'
    }
    deps.logger.info({ issuer: ti.issuer, tenant: ti.tenant, err: (err as Error).message }, 'subject token refused')
    return 'invalid'
  }
}

/** One tenant's outcome: its rule matches, and whether its entries verified or could not get keys. */
interface TenantOutcome {
  tenant: string
  matches: Match[]
  verified: boolean
  unavailable: boolean
}

async function tryTenant(deps: ControlPlaneDeps, tenant: string, entries: TrustedIssuer[], token: string): Promise<TenantOutcome> {
  const out: TenantOutcome = { tenant, matches: [], verified: false, unavailable: false }
  for (const ti of entries) {
    const r = await verifyWith(deps, ti, token)
    if (r === 'unavailable') out.unavailable = true
    if (typeof r === 'string') continue
    out.verified = true
    for (const rule of ti.rules) if (ruleMatches(rule, r.payload)) out.matches.push({ issuer: ti, payload: r.payload, agentId: rule.agentId })
  }
  return out
}

/** The `aud` values of a JWT payload (not yet verified: only to pick candidate entries). */
function audiences(payload: JWTPayload): string[] {
  if (typeof payload.aud === 'string') return [payload.aud]
  return Array.isArray(payload.aud) ? payload.aud.filter((a): a is string => typeof a === 'string') : []
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
    const actorToken = single(body, 'actor_token', MAX_SUBJECT_TOKEN)
    if (actorToken !== undefined) {
      const requested = single(body, 'requested_token_type', 256)
      if (requested !== undefined && requested !== TOKEN_TYPE_ACCESS_TOKEN) throw new InvalidRequest('only access tokens can be requested')
      return prepareDelegation(ctx, subjectToken, subjectType, actorToken)
    }
    if (single(body, 'actor_token_type', 256) !== undefined) throw new InvalidRequest('actor_token_type without actor_token')
    if (subjectType !== TOKEN_TYPE_JWT && subjectType !== TOKEN_TYPE_ID_TOKEN)
      throw new InvalidRequest('subject_token_type must be urn:ietf:params:oauth:token-type:jwt or :id_token')
    const requested = single(body, 'requested_token_type', 256)
    if (requested !== undefined && requested !== TOKEN_TYPE_ACCESS_TOKEN) throw new InvalidRequest('only access tokens can be requested')

    let unverified: JWTPayload
    try {
      unverified = decodeJwt(subjectToken)
    } catch {
      throw new AegisError('invalid_grant', 'subject_token is not a JWT')
    }
    const iss = unverified.iss
    if (typeof iss !== 'string' || iss.length === 0 || iss.length > 512) throw new AegisError('invalid_grant', 'subject_token has no issuer')
    const named = single(body, 'tenant', 128)
    if (client && named !== undefined && named !== client.tenant.id) throw new InvalidRequest("tenant differs from the authenticated client's tenant")
    const bound = client?.tenant.id ?? named

    // Candidates: the bound tenant's entries for this iss, or every tenant's; only entries whose
    // audience the token carries (the others could not verify), oldest first, grouped by tenant.
    const aud = new Set(audiences(unverified))
    const found =
      bound !== undefined ? (await deps.store.trustedIssuers.list(bound)).filter((t) => t.issuer === iss) : await deps.store.trustedIssuers.findByIssuer(iss)
    const byTenant = new Map<string, TrustedIssuer[]>()
    for (const t of found.filter((x) => aud.has(x.audience)).sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))) {
      const list = byTenant.get(t.tenant) ?? []
      if (list.length < MAX_ENTRIES_PER_TENANT) list.push(t)
      byTenant.set(t.tenant, list)
    }
    // Same answer for an unknown tenant and a tenant that does not trust this issuer.
    if (byTenant.size === 0) throw new AegisError('invalid_grant', "the subject token's issuer is not trusted for this audience")
    if (byTenant.size > MAX_TENANTS_UNNAMED) throw new InvalidRequest('this issuer is trusted by many tenants: name yours with the tenant parameter')

    const outcomes = await Promise.all([...byTenant].map(([t, entries]) => tryTenant(deps, t, entries, subjectToken)))
    const matched = outcomes.filter((o) => o.matches.length > 0)
    if (matched.length > 1)
      throw new AegisError('invalid_grant', 'the subject token maps to agents of more than one tenant; name the tenant with the tenant parameter')
    if (matched.length === 0) {
      // Only the exchange's own tenant's unreachable keys make it a 503; another tenant's failing entry is no match.
      if (outcomes.length === 1 && outcomes[0]!.unavailable && !outcomes[0]!.verified) {
        throw new Unavailable("the subject token issuer's keys could not be fetched; retry later")
      }
      if (!outcomes.some((o) => o.verified)) throw new AegisError('invalid_grant', 'subject_token is invalid, expired or not for this audience')
      throw new AegisError('invalid_grant', 'no trusted-issuer rule maps the subject token to an agent')
    }
    const matches = matched[0]!.matches
    const distinct = new Set(matches.map((m) => m.agentId))
    if (distinct.size > 1) throw new AegisError('invalid_grant', 'the subject token maps to more than one agent; make the rules exclusive')
    const m = matches[0]!

    const tenant: Tenant | null = await ctx.dir.tenant(m.issuer.tenant)
    const agent: Agent | null = await ctx.dir.agent(m.issuer.tenant, m.agentId)
    if (!tenant || !agent) throw new AegisError('invalid_grant', 'the mapped agent no longer exists')
    if (client && client.agent.agentId !== agent.agentId)
      throw new AegisError('invalid_grant', 'the subject token maps to another agent than the authenticated client')

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
      auditData: {
        subject_issuer: m.issuer.issuer,
        subject: typeof m.payload.sub === 'string' ? m.payload.sub.slice(0, 512) : null,
        trusted_issuer_id: m.issuer.id,
      },
    }
  },
}
