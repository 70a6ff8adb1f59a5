/** `/admin/v1/tenants`: create (global admins), list, read, update, delete (global admins). */
import type { FastifyInstance } from 'fastify'
import { AegisError, Conflict, NotFound } from '../../errors.js'
import { assertTenantAccess, requireRole } from '../../http/admin-auth.js'
import type { Tenant } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { directoryFor } from '../token/directory.js'
import { ID_RE, assertGlobal, auditAdmin, idParam, jsonBody, optBool, optString, principal, reqString } from './validate.js'

/** Admin-API view of a tenant (times in epoch ms). */
export function tenantJson(t: Tenant): Record<string, unknown> {
  return { id: t.id, name: t.name, require_attestation: t.requireAttestation, created_at: t.createdAt }
}

export async function tenantRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const admin = requireRole(deps.store, ['admin'], deps.sessions)
  const dir = directoryFor(deps)

  app.post('/tenants', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    assertGlobal(p, 'creating a tenant')
    const body = jsonBody(request, ['id', 'name', 'require_attestation'])
    const id = reqString(body, 'id', { max: 64, pattern: ID_RE })
    const tenant: Tenant = {
      id,
      name: optString(body, 'name', { max: 200 }) ?? id,
      requireAttestation: optBool(body, 'require_attestation') ?? false,
      createdAt: deps.clock.now(),
    }
    await deps.store.tenants.create(tenant)
    dir.invalidateTenant(id)
    await auditAdmin(deps, p, { type: 'admin.tenant_created', tenant: id, subject: id, data: { name: tenant.name, require_attestation: tenant.requireAttestation } })
    reply.code(201)
    return tenantJson(tenant)
  })

  app.get('/tenants', { preHandler: admin }, async (request) => {
    const p = principal(request)
    if (p.tenant !== null) {
      const own = await deps.store.tenants.get(p.tenant)
      return { tenants: own ? [tenantJson(own)] : [] }
    }
    return { tenants: (await deps.store.tenants.list()).map(tenantJson) }
  })

  app.get('/tenants/:tenant', { preHandler: admin }, async (request) => {
    const id = idParam(request.params, 'tenant')
    assertTenantAccess(principal(request), id)
    const t = await deps.store.tenants.get(id)
    if (!t) throw new NotFound(`tenant ${id} not found`)
    return tenantJson(t)
  })

  app.patch('/tenants/:tenant', { preHandler: admin }, async (request) => {
    const p = principal(request)
    const id = idParam(request.params, 'tenant')
    assertTenantAccess(p, id)
    const body = jsonBody(request, ['name', 'require_attestation'])
    const patch: Partial<Omit<Tenant, 'id' | 'createdAt'>> = {}
    const name = optString(body, 'name', { max: 200 })
    const ra = optBool(body, 'require_attestation')
    if (name !== undefined) patch.name = name
    if (ra !== undefined) patch.requireAttestation = ra
    if (!(await deps.store.tenants.get(id))) throw new NotFound(`tenant ${id} not found`)
    const updated = await deps.store.tenants.update(id, patch)
    dir.invalidateTenant(id)
    await auditAdmin(deps, p, { type: 'admin.tenant_updated', tenant: id, subject: id, data: { name: patch.name, require_attestation: patch.requireAttestation } })
    return tenantJson(updated)
  })

  app.delete('/tenants/:tenant', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    const id = idParam(request.params, 'tenant')
    if (p.tenant !== null && p.tenant !== id) throw new AegisError('forbidden', 'outside this token\'s tenant')
    assertGlobal(p, 'deleting a tenant')
    if (!(await deps.store.tenants.get(id))) throw new NotFound(`tenant ${id} not found`)
    if ((await deps.store.agents.list(id)).length > 0) throw new Conflict(`tenant ${id} still has agents; delete them first`)
    await deps.store.tenants.delete(id)
    dir.invalidateTenant(id)
    await auditAdmin(deps, p, { type: 'admin.tenant_deleted', tenant: id, subject: id })
    return reply.code(204).send()
  })
}
