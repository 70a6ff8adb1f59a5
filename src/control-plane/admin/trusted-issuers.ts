/**
 * `/admin/v1/tenants/{t}/trusted-issuers`: workload-identity issuers trusted
 * for token exchange (RFC 8693, token/grants/token-exchange.ts). Store CRUD.
 * A `jwks_uri` is something the control plane will fetch on the tenant
 * admin's say-so, so it must be https and resolve to public addresses only
 * (or into `tokenExchange.jwksAllowedNetworks`); the fetch checks again.
 */
import type { FastifyInstance } from 'fastify'
import { InvalidRequest, NotFound } from '../../errors.js'
import { assertTenantAccess, requireRole } from '../../http/admin-auth.js'
import { randomId } from '../../lib/ids.js'
import { OutboundRefused, parseNetworks, resolveTarget } from '../../lib/outbound-address.js'
import type { TrustedIssuer } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { ID_RE, auditAdmin, idParam, jsonBody, principal, publicJwks, reqString, type Json } from './validate.js'

/** Admin-API view (times in epoch ms). */
export function trustedIssuerJson(t: TrustedIssuer): Record<string, unknown> {
  return {
    id: t.id, tenant: t.tenant, issuer: t.issuer, jwks_uri: t.jwksUri, jwks: t.jwks, audience: t.audience,
    rules: t.rules.map((r) => ({ claims: r.claims, agent_id: r.agentId })), created_at: t.createdAt,
  }
}

function url(v: string, name: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new InvalidRequest(`${name} must be an absolute URL`)
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new InvalidRequest(`${name} must be an http(s) URL`)
  return v
}

function rules(v: unknown): Array<{ claims: Record<string, string>; agentId: string }> {
  if (!Array.isArray(v) || v.length === 0 || v.length > 100) throw new InvalidRequest('rules must hold 1 to 100 rules')
  return v.map((r: unknown, i) => {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new InvalidRequest(`rules[${i}] must be an object`)
    const rule = r as Json
    for (const k of Object.keys(rule)) if (k !== 'claims' && k !== 'agent_id') throw new InvalidRequest(`rules[${i}] has unknown field ${JSON.stringify(k.slice(0, 64))}`)
    const agentId = rule.agent_id
    if (typeof agentId !== 'string' || !ID_RE.test(agentId)) throw new InvalidRequest(`rules[${i}].agent_id must match ${ID_RE.source}`)
    const claims = rule.claims
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new InvalidRequest(`rules[${i}].claims must be an object`)
    const entries = Object.entries(claims as Json)
    if (entries.length === 0 || entries.length > 16) throw new InvalidRequest(`rules[${i}].claims must name 1 to 16 claims`)
    const out: Record<string, string> = {}
    for (const [k, val] of entries) {
      if (k.length === 0 || k.length > 128 || typeof val !== 'string' || val.length === 0 || val.length > 512) throw new InvalidRequest(`rules[${i}].claims values must be strings of 1 to 512 characters`)
      out[k] = val
    }
    return { claims: out, agentId }
  })
}

/**
 * Refuses a jwks_uri the control plane must not fetch: not https (http only
 * into the allowed networks), credentials in it, or a host that resolves to
 * any loopback, private, link-local or otherwise special address outside the
 * allowed networks. A name that does not resolve now is accepted: the
 * control plane's DNS may differ at creation time, and every fetch checks
 * the addresses again before connecting.
 */
async function checkJwksUri(v: string, allowed: ReturnType<typeof parseNetworks>['networks']): Promise<string> {
  url(v, 'jwks_uri')
  try {
    await resolveTarget(v, { allowed })
  } catch (err) {
    if (!(err instanceof OutboundRefused)) throw err
    if (err.kind === 'unresolved' && new URL(v).protocol === 'https:') return v
    if (err.kind !== 'address') throw new InvalidRequest(`jwks_uri must be an https URL without credentials (plain http only into tokenExchange.jwksAllowedNetworks)`)
    throw new InvalidRequest('jwks_uri must name a host that resolves to public addresses only (loopback, private and link-local addresses only when tokenExchange.jwksAllowedNetworks lists them)')
  }
  return v
}

export async function trustedIssuerRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const admin = requireRole(deps.store, ['admin'], deps.sessions)
  const allowed = parseNetworks(deps.config.tokenExchange.jwksAllowedNetworks).networks

  async function tenantOf(request: Parameters<typeof principal>[0]): Promise<string> {
    const tenant = idParam(request.params, 'tenant')
    assertTenantAccess(principal(request), tenant)
    if (!(await deps.store.tenants.get(tenant))) throw new NotFound(`tenant ${tenant} not found`)
    return tenant
  }

  app.post('/tenants/:tenant/trusted-issuers', { preHandler: admin }, async (request, reply) => {
    const tenant = await tenantOf(request)
    const body = jsonBody(request, ['issuer', 'jwks_uri', 'jwks', 'audience', 'rules'])
    const issuer = url(reqString(body, 'issuer', { max: 512 }), 'issuer')
    const audience = reqString(body, 'audience', { max: 512 })
    const hasUri = body.jwks_uri !== undefined && body.jwks_uri !== null
    const hasJwks = body.jwks !== undefined && body.jwks !== null
    if (hasUri === hasJwks) throw new InvalidRequest('give exactly one of jwks_uri and jwks')
    const jwksUri = hasUri ? await checkJwksUri(reqString(body, 'jwks_uri', { max: 1024 }), allowed) : null
    const jwks = hasJwks ? publicJwks(body.jwks, 'jwks') : null
    const parsedRules = rules(body.rules)
    for (const r of parsedRules) {
      if (!(await deps.store.agents.get(tenant, r.agentId))) throw new InvalidRequest(`rule agent_id ${r.agentId} is not an agent of tenant ${tenant}`)
    }
    const t: TrustedIssuer = { id: randomId('ti', 9), tenant, issuer, jwksUri, jwks, audience, rules: parsedRules, createdAt: deps.clock.now() }
    await deps.store.trustedIssuers.create(t)
    await auditAdmin(deps, principal(request), { type: 'admin.trusted_issuer_created', tenant, subject: t.id, data: { issuer, audience, jwks_uri: jwksUri, rules: parsedRules.length } })
    reply.code(201)
    return trustedIssuerJson(t)
  })

  app.get('/tenants/:tenant/trusted-issuers', { preHandler: admin }, async (request) => {
    const tenant = await tenantOf(request)
    return { trusted_issuers: (await deps.store.trustedIssuers.list(tenant)).map(trustedIssuerJson) }
  })

  app.delete('/tenants/:tenant/trusted-issuers/:id', { preHandler: admin }, async (request, reply) => {
    const tenant = await tenantOf(request)
    const id = idParam(request.params, 'id')
    if (!(await deps.store.trustedIssuers.list(tenant)).some((t) => t.id === id)) throw new NotFound('trusted issuer not found')
    await deps.store.trustedIssuers.delete(tenant, id)
    await auditAdmin(deps, principal(request), { type: 'admin.trusted_issuer_deleted', tenant, subject: id })
    return reply.code(204).send()
  })
}
