/**
 * `POST /admin/v1/admin-tokens` → `{id, token}` (the token is shown once and
 * stored as its SHA-256), `GET admin-tokens`, `DELETE admin-tokens/{id}`.
 * Tenant admins mint and revoke only their own tenant's admin/approver tokens.
 */
import type { FastifyInstance } from 'fastify'
import { AegisError, NotFound } from '../../errors.js'
import { requireRole } from '../../http/admin-auth.js'
import { sha256b64url } from '../../lib/hash.js'
import { randomId, randomSecret } from '../../lib/ids.js'
import type { AdminRole, AdminToken } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { ID_RE, auditAdmin, jsonBody, optNullableString, optString, optStringArray, principal } from './validate.js'
import { InvalidRequest } from '../../errors.js'

const ROLES: readonly AdminRole[] = ['admin', 'gateway', 'approver']
const TOKEN_ID_RE = /^[A-Za-z0-9._-]{1,128}$/

/** Admin-API view of a token: never its hash. Times in epoch ms. */
export function adminTokenJson(t: AdminToken): Record<string, unknown> {
  return { id: t.id, tenant: t.tenant, role: t.role, name: t.name, groups: t.groups, linked_identities: t.linkedIdentities, created_at: t.createdAt, revoked_at: t.revokedAt }
}

/** A bearer admin token: a readable prefix plus 256 bits of randomness. */
export function newAdminTokenSecret(): string {
  return `aat_${randomSecret(32)}`
}

export async function adminTokenRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const admin = requireRole(deps.store, ['admin'], deps.sessions)

  app.post('/admin-tokens', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    const body = jsonBody(request, ['tenant', 'role', 'name', 'groups', 'linked_identities'])
    const roleRaw = body.role
    if (typeof roleRaw !== 'string' || !(ROLES as readonly string[]).includes(roleRaw)) throw new InvalidRequest('role must be admin, gateway or approver')
    const role = roleRaw as AdminRole
    let tenant = optNullableString(body, 'tenant', { max: 64, pattern: ID_RE })
    if (tenant === undefined) tenant = p.tenant
    const name = optString(body, 'name', { max: 128 }) ?? `${role} token`
    const groups = optStringArray(body, 'groups', 32, { max: 64, pattern: ID_RE }) ?? []
    const linked = optStringArray(body, 'linked_identities', 16, { max: 256, pattern: /^[a-z][a-z0-9-]{0,31}:\S{1,220}$/ }) ?? []
    if (role === 'gateway' && (groups.length > 0 || linked.length > 0)) throw new InvalidRequest('groups and linked_identities are for admin and approver tokens')
    if (p.tenant !== null) {
      if (tenant !== p.tenant) throw new AegisError('forbidden', 'outside this token\'s tenant')
      if (role === 'gateway') throw new AegisError('forbidden', 'gateway tokens need a global admin token')
    }
    if (tenant !== null && !(await deps.store.tenants.get(tenant))) throw new NotFound(`tenant ${tenant} not found`)
    const secret = newAdminTokenSecret()
    const record: AdminToken = {
      id: randomId('at', 12), tenant, role, name, tokenHash: sha256b64url(secret), linkedIdentities: linked, groups, createdAt: deps.clock.now(), revokedAt: null,
    }
    await deps.store.adminTokens.create(record)
    await auditAdmin(deps, p, { type: 'admin.token_created', tenant, subject: record.id, data: { role, name, groups, linked_identities: linked } })
    reply.code(201).header('cache-control', 'no-store')
    return { ...adminTokenJson(record), token: secret }
  })

  app.get('/admin-tokens', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    const list = p.tenant === null ? await deps.store.adminTokens.list() : await deps.store.adminTokens.list(p.tenant)
    reply.header('cache-control', 'no-store')
    return { admin_tokens: list.filter((t) => p.tenant === null || t.tenant === p.tenant).map(adminTokenJson) }
  })

  app.delete('/admin-tokens/:id', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    const id = (request.params as { id?: string }).id
    if (typeof id !== 'string' || !TOKEN_ID_RE.test(id)) throw new InvalidRequest('id must match ' + TOKEN_ID_RE.source)
    const t = await deps.store.adminTokens.get(id)
    if (!t) throw new NotFound('admin token not found')
    if (p.tenant !== null && t.tenant !== p.tenant) throw new AegisError('forbidden', 'outside this token\'s tenant')
    if (t.revokedAt === null) {
      await deps.store.adminTokens.revoke(id, deps.clock.now())
      await auditAdmin(deps, p, { type: 'admin.token_revoked', tenant: t.tenant, subject: id, data: { role: t.role, name: t.name } })
    }
    return reply.code(204).send()
  })
}
