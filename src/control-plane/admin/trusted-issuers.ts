/**
 * `/admin/v1/tenants/{t}/trusted-issuers`: workload-identity issuers trusted
 * for token exchange (RFC 8693, token/grants/token-exchange.ts). Store CRUD.
 * A `jwks_uri` is something the control plane will fetch on the tenant
 * admin's say-so, so it must be https and resolve to public addresses only
 * (or into `tokenExchange.jwksAllowedNetworks`); the fetch checks again.
 */
import type { FastifyInstance } from 'fastify'
import { InvalidRequest, NotFound } from '../../errors.js'
import { randomId } from '../../lib/ids.js'
import { OutboundRefused, parseNetworks, resolveTarget } from '../../lib/outbound-address.js'
import type { TrustedIssuer } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { TAGS, allow, body, id, nullableStr, publicJwksSchema, str, tenantIdParams, tenantParams } from './schemas.js'
import { tenantOf, tenantScope } from './tenant-scope.js'
import { auditAdmin, checkJwkSizes, principal } from './validate.js'
import { epochSeconds } from '../../lib/clock.js'

const RuleSchema = body(
  {
    claims: {
      type: 'object',
      minProperties: 1,
      maxProperties: 16,
      propertyNames: { type: 'string', minLength: 1, maxLength: 128 },
      additionalProperties: str(512),
      description: 'claim name → the value it must equal',
    },
    agent_id: id,
  },
  ['claims', 'agent_id'],
)
const CLAIM_NAME = str(128)
const UsersSchema = {
  ...body(
    {
      claim: CLAIM_NAME,
      grants: {
        type: 'array',
        minItems: 1,
        maxItems: 100,
        items: body(
          {
            value: str(256),
            scopes: { type: 'array', maxItems: 100, items: str(128) },
            capabilities: { type: 'array', maxItems: 1000, items: str(128) },
          },
          ['value', 'scopes', 'capabilities'],
        ),
      },
      resources_claim: nullableStr(128),
      agents: { type: ['array', 'null'], maxItems: 100, items: id, description: 'agents that may act for these people (default: any agent of the tenant)' },
    },
    ['claim', 'grants'],
  ),
  type: ['object', 'null'],
  description:
    "people's tokens from this issuer may be exchanged with an agent as actor (docs/delegation.md): the grants whose value the token's claim carries",
}
const IssuerBody = body(
  {
    issuer: str(512),
    jwks_uri: nullableStr(1024),
    jwks: { ...publicJwksSchema, type: ['object', 'null'] },
    audience: str(512),
    rules: { type: 'array', minItems: 0, maxItems: 100, items: RuleSchema },
    users: UsersSchema,
  },
  ['issuer', 'audience', 'rules'],
)

interface IssuerBodyT {
  issuer: string
  jwks_uri?: string | null
  jwks?: { keys: Record<string, unknown>[] } | null
  audience: string
  rules: Array<{ claims: Record<string, string>; agent_id: string }>
  users?: {
    claim: string
    grants: Array<{ value: string; scopes: string[]; capabilities: string[] }>
    resources_claim?: string | null
    agents?: string[] | null
  } | null
}

/** Admin-API view (times in epoch seconds). */
export function trustedIssuerJson(t: TrustedIssuer): Record<string, unknown> {
  return {
    id: t.id,
    tenant: t.tenant,
    issuer: t.issuer,
    jwks_uri: t.jwksUri,
    jwks: t.jwks,
    audience: t.audience,
    rules: t.rules.map((r) => ({ claims: r.claims, agent_id: r.agentId })),
    users: t.users ? { claim: t.users.claim, grants: t.users.grants, resources_claim: t.users.resourcesClaim ?? null, agents: t.users.agents ?? null } : null,
    created_at: epochSeconds(t.createdAt),
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
    if (err.kind !== 'address')
      throw new InvalidRequest(`jwks_uri must be an https URL without credentials (plain http only into tokenExchange.jwksAllowedNetworks)`)
    throw new InvalidRequest(
      'jwks_uri must name a host that resolves to public addresses only (loopback, private and link-local addresses only when ' +
        'tokenExchange.jwksAllowedNetworks lists them)',
    )
  }
  return v
}

export async function trustedIssuerRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const allowed = parseNetworks(deps.config.tokenExchange.jwksAllowedNetworks).networks
  const ADMIN = allow(['admin'])

  await tenantScope(app, deps, async (scope) => {
    scope.post<{ Body: IssuerBodyT }>(
      '/trusted-issuers',
      {
        config: allow(['admin'], { json: true }),
        schema: {
          tags: [TAGS.issuers],
          summary: 'Trust a workload-identity issuer for token exchange (exactly one of jwks_uri and jwks)',
          params: tenantParams,
          body: IssuerBody,
        },
      },
      async (request, reply) => {
        const tenant = tenantOf(request).id
        const b = request.body
        // URL syntax, the one-of pair (null counts as absent) and the address rules are beyond JSON Schema, or its messages would name neither field.
        const issuer = url(b.issuer, 'issuer')
        const hasUri = b.jwks_uri !== undefined && b.jwks_uri !== null
        const hasJwks = b.jwks !== undefined && b.jwks !== null
        if (hasUri === hasJwks) throw new InvalidRequest('give exactly one of jwks_uri and jwks')
        const jwksUri = hasUri ? await checkJwksUri(b.jwks_uri!, allowed) : null
        const jwks = hasJwks ? checkJwkSizes(b.jwks!, 'jwks') : null
        const parsedRules = b.rules.map((r) => ({ claims: r.claims, agentId: r.agent_id }))
        for (const r of parsedRules) {
          if (!(await deps.store.agents.get(tenant, r.agentId))) throw new InvalidRequest(`rule agent_id ${r.agentId} is not an agent of tenant ${tenant}`)
        }
        const users = b.users
          ? { claim: b.users.claim, grants: b.users.grants, resourcesClaim: b.users.resources_claim ?? null, agents: b.users.agents ?? null }
          : null
        if (parsedRules.length === 0 && !users) throw new InvalidRequest('give at least one rule, or users')
        const t: TrustedIssuer = {
          id: randomId('ti', 9),
          tenant,
          issuer,
          jwksUri,
          jwks,
          audience: b.audience,
          rules: parsedRules,
          users,
          createdAt: deps.clock.now(),
        }
        await deps.store.trustedIssuers.create(t)
        await auditAdmin(deps, principal(request), {
          type: 'admin.trusted_issuer_created',
          tenant,
          subject: t.id,
          data: { issuer, audience: b.audience, jwks_uri: jwksUri, rules: parsedRules.length, users: users !== null },
        })
        reply.code(201)
        return trustedIssuerJson(t)
      },
    )

    scope.get(
      '/trusted-issuers',
      { config: ADMIN, schema: { tags: [TAGS.issuers], summary: "List a tenant's trusted issuers", params: tenantParams } },
      async (request) => {
        return { trusted_issuers: (await deps.store.trustedIssuers.list(tenantOf(request).id)).map(trustedIssuerJson) }
      },
    )

    scope.delete<{ Params: { id: string } }>(
      '/trusted-issuers/:id',
      { config: ADMIN, schema: { tags: [TAGS.issuers], summary: 'Stop trusting an issuer', params: tenantIdParams } },
      async (request, reply) => {
        const tenant = tenantOf(request).id
        const tid = request.params.id
        if (!(await deps.store.trustedIssuers.list(tenant)).some((t) => t.id === tid)) throw new NotFound('trusted issuer not found')
        await deps.store.trustedIssuers.delete(tenant, tid)
        await auditAdmin(deps, principal(request), { type: 'admin.trusted_issuer_deleted', tenant, subject: tid })
        return reply.code(204).send()
      },
    )
  })
}
