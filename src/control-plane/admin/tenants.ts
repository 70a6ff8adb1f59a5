/** `/admin/v1/tenants`: create (global admins), list, read, update, delete (global admins). */
import type { FastifyInstance } from 'fastify'
import { Conflict } from '../../errors.js'
import type { Tenant } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { directoryFor } from '../token/directory.js'
import { DEFAULT_DELEGATION_DEPTH, MAX_DELEGATION_DEPTH } from '../../lib/delegation.js'
import { ID_PATTERN, TAGS, allow, body, str, tenantParams } from './schemas.js'
import { tenantOf, tenantScope } from './tenant-scope.js'
import { assertGlobal, auditAdmin, principal } from './validate.js'

/** Admin-API view of a tenant (times in epoch seconds). */
export function tenantJson(t: Tenant): Record<string, unknown> {
  return {
    id: t.id,
    name: t.name,
    require_attestation: t.requireAttestation,
    max_delegation_depth: t.maxDelegationDepth ?? DEFAULT_DELEGATION_DEPTH,
    created_at: Math.floor(t.createdAt / 1000),
  }
}

const ADMIN = allow(['admin'])
const ADMIN_JSON = allow(['admin'], { json: true })
const DEPTH = {
  type: ['integer', 'null'],
  minimum: 1,
  maximum: MAX_DELEGATION_DEPTH,
  description: `longest delegation chain (act levels) a token may carry; null = ${DEFAULT_DELEGATION_DEPTH}`,
}
const TenantBody = body({ id: str(64, ID_PATTERN), name: str(200), require_attestation: { type: 'boolean' }, max_delegation_depth: DEPTH }, ['id'])
const TenantPatch = body({ name: str(200), require_attestation: { type: 'boolean' }, max_delegation_depth: DEPTH })

export async function tenantRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const dir = directoryFor(deps)

  app.post<{ Body: { id: string; name?: string; require_attestation?: boolean; max_delegation_depth?: number | null } }>(
    '/tenants',
    { config: ADMIN_JSON, schema: { tags: [TAGS.tenants], summary: 'Create a tenant (global admin)', body: TenantBody } },
    async (request, reply) => {
      const p = principal(request)
      assertGlobal(p, 'creating a tenant')
      const { id, name, require_attestation: requireAttestation } = request.body
      const tenant: Tenant = {
        id,
        name: name ?? id,
        requireAttestation: requireAttestation ?? false,
        maxDelegationDepth: request.body.max_delegation_depth ?? null,
        createdAt: deps.clock.now(),
      }
      await deps.store.tenants.create(tenant)
      dir.invalidateTenant(id)
      await auditAdmin(deps, p, {
        type: 'admin.tenant_created',
        tenant: id,
        subject: id,
        data: { name: tenant.name, require_attestation: tenant.requireAttestation },
      })
      reply.code(201)
      return tenantJson(tenant)
    },
  )

  app.get('/tenants', { config: ADMIN, schema: { tags: [TAGS.tenants], summary: 'List the tenants the token may see' } }, async (request) => {
    const p = principal(request)
    if (p.tenant !== null) {
      const own = await deps.store.tenants.get(p.tenant)
      return { tenants: own ? [tenantJson(own)] : [] }
    }
    return { tenants: (await deps.store.tenants.list()).map(tenantJson) }
  })

  await tenantScope(app, deps, async (tenant) => {
    tenant.get('', { config: ADMIN, schema: { tags: [TAGS.tenants], summary: 'Read a tenant', params: tenantParams } }, async (request) =>
      tenantJson(tenantOf(request)),
    )

    tenant.patch<{ Body: { name?: string; require_attestation?: boolean; max_delegation_depth?: number | null } }>(
      '',
      { config: ADMIN_JSON, schema: { tags: [TAGS.tenants], summary: 'Update a tenant', params: tenantParams, body: TenantPatch } },
      async (request) => {
        const p = principal(request)
        const { id } = tenantOf(request)
        const patch: Partial<Omit<Tenant, 'id' | 'createdAt'>> = {}
        if (request.body.name !== undefined) patch.name = request.body.name
        if (request.body.require_attestation !== undefined) patch.requireAttestation = request.body.require_attestation
        if (request.body.max_delegation_depth !== undefined) patch.maxDelegationDepth = request.body.max_delegation_depth
        const updated = await deps.store.tenants.update(id, patch)
        dir.invalidateTenant(id)
        await auditAdmin(deps, p, {
          type: 'admin.tenant_updated',
          tenant: id,
          subject: id,
          data: { name: patch.name, require_attestation: patch.requireAttestation, max_delegation_depth: patch.maxDelegationDepth },
        })
        return tenantJson(updated)
      },
    )

    tenant.delete(
      '',
      { config: ADMIN, schema: { tags: [TAGS.tenants], summary: 'Delete a tenant without agents (global admin)', params: tenantParams } },
      async (request, reply) => {
        const p = principal(request)
        const { id } = tenantOf(request)
        assertGlobal(p, 'deleting a tenant')
        if ((await deps.store.agents.list(id)).length > 0) throw new Conflict(`tenant ${id} still has agents; delete them first`)
        await deps.store.tenants.delete(id)
        dir.invalidateTenant(id)
        await auditAdmin(deps, p, { type: 'admin.tenant_deleted', tenant: id, subject: id })
        return reply.code(204).send()
      },
    )
  })
}
