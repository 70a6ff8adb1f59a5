/**
 * `POST /admin/v1/admin-tokens` → `{id, token}` (the token is shown once and
 * stored as its SHA-256), `GET admin-tokens`, `DELETE admin-tokens/{id}`.
 * Tenant admins mint and revoke only their own tenant's admin/approver tokens.
 */
import type { FastifyInstance } from 'fastify'
import { AegisError, InvalidRequest, NotFound } from '../../errors.js'
import { sha256b64url } from '../../lib/hash.js'
import { randomId, randomSecret } from '../../lib/ids.js'
import type { AdminRole, AdminToken } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { ID_PATTERN, TAGS, allow, body, nullableStr, params, str, strArray } from './schemas.js'
import { auditAdmin, principal } from './validate.js'
import { epochSeconds, epochSecondsOrNull } from '../../lib/clock.js'

const ROLES: readonly AdminRole[] = ['admin', 'gateway', 'approver']
const TokenBody = body(
  {
    tenant: { ...nullableStr(64, ID_PATTERN), description: "null = global; absent = the caller's tenant" },
    role: { type: 'string', enum: ROLES },
    name: str(128),
    groups: strArray(32, str(64, ID_PATTERN)),
    linked_identities: strArray(16, str(256, '^[a-z][a-z0-9-]{0,31}:\\S{1,220}$')),
  },
  ['role'],
)
const TokenParams = params({ id: str(128, '^[A-Za-z0-9._-]{1,128}$') })

/** Admin-API view of a token: never its hash. Times in epoch seconds. */
export function adminTokenJson(t: AdminToken): Record<string, unknown> {
  return {
    id: t.id,
    tenant: t.tenant,
    role: t.role,
    name: t.name,
    groups: t.groups,
    linked_identities: t.linkedIdentities,
    created_at: epochSeconds(t.createdAt),
    revoked_at: epochSecondsOrNull(t.revokedAt),
  }
}

/** A bearer admin token: a readable prefix plus 256 bits of randomness. */
export function newAdminTokenSecret(): string {
  return `aat_${randomSecret(32)}`
}

export async function adminTokenRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  app.post<{ Body: { tenant?: string | null; role: AdminRole; name?: string; groups?: string[]; linked_identities?: string[] } }>(
    '/admin-tokens',
    {
      config: allow(['admin'], { json: true }),
      schema: { tags: [TAGS.tokens], summary: 'Mint an admin, gateway or approver token (shown once)', body: TokenBody },
    },
    async (request, reply) => {
      const p = principal(request)
      const b = request.body
      const role = b.role
      const tenant = b.tenant === undefined ? p.tenant : b.tenant
      const name = b.name ?? `${role} token`
      const groups = [...new Set(b.groups ?? [])]
      const linked = [...new Set(b.linked_identities ?? [])]
      if (role === 'gateway' && (groups.length > 0 || linked.length > 0))
        throw new InvalidRequest('groups and linked_identities are for admin and approver tokens')
      if (p.tenant !== null) {
        if (tenant !== p.tenant) throw new AegisError('forbidden', "outside this token's tenant")
        if (role === 'gateway') throw new AegisError('forbidden', 'gateway tokens need a global admin token')
      }
      if (tenant !== null && !(await deps.store.tenants.get(tenant))) throw new NotFound(`tenant ${tenant} not found`)
      const secret = newAdminTokenSecret()
      const record: AdminToken = {
        id: randomId('at', 12),
        tenant,
        role,
        name,
        tokenHash: sha256b64url(secret),
        linkedIdentities: linked,
        groups,
        createdAt: deps.clock.now(),
        revokedAt: null,
      }
      await deps.store.adminTokens.create(record)
      await auditAdmin(deps, p, { type: 'admin.token_created', tenant, subject: record.id, data: { role, name, groups, linked_identities: linked } })
      reply.code(201).header('cache-control', 'no-store')
      return { ...adminTokenJson(record), token: secret }
    },
  )

  app.get(
    '/admin-tokens',
    { config: allow(['admin']), schema: { tags: [TAGS.tokens], summary: 'List admin tokens (never their secrets)' } },
    async (request, reply) => {
      const p = principal(request)
      const list = p.tenant === null ? await deps.store.adminTokens.list() : await deps.store.adminTokens.list(p.tenant)
      reply.header('cache-control', 'no-store')
      return { admin_tokens: list.filter((t) => p.tenant === null || t.tenant === p.tenant).map(adminTokenJson) }
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/admin-tokens/:id',
    { config: allow(['admin']), schema: { tags: [TAGS.tokens], summary: 'Revoke an admin token', params: TokenParams } },
    async (request, reply) => {
      const p = principal(request)
      const id = request.params.id
      const t = await deps.store.adminTokens.get(id)
      if (!t) throw new NotFound('admin token not found')
      if (p.tenant !== null && t.tenant !== p.tenant) throw new AegisError('forbidden', "outside this token's tenant")
      if (t.revokedAt === null) {
        await deps.store.adminTokens.revoke(id, deps.clock.now())
        await auditAdmin(deps, p, { type: 'admin.token_revoked', tenant: t.tenant, subject: id, data: { role: t.role, name: t.name } })
      }
      return reply.code(204).send()
    },
  )
}
