/**
 * The `/tenants/:tenant` sub-plugin of the admin API: every route registered
 * through {@link tenantScope} passes one hook that checks the tenant id,
 * that the caller may act in that tenant (403 otherwise) and that the tenant
 * exists (404), before its inputs are validated. The admin guard
 * (http/admin-auth.ts) refuses at start-up a route that names `:tenant`
 * outside such a scope, so a new route cannot skip the check.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest, NotFound } from '../../errors.js'
import { assertTenantAccess } from '../../http/admin-auth.js'
import type { Tenant } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { ID_RE } from './schemas.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of a `/tenants/:tenant` admin route, set once its access check passed. */
    adminTenant?: Tenant
  }
}

/**
 * Registers `routes` under `/tenants/:tenant` of `app`'s prefix, behind
 * {@link requireTenantAccess}. Routes inside use paths relative to the
 * tenant (`''` for the tenant itself, `'/agents'`, …).
 */
export async function tenantScope(app: FastifyInstance, deps: ControlPlaneDeps, routes: (scope: FastifyInstance) => Promise<void>): Promise<void> {
  await app.register(
    async (scope) => {
      scope.addHook('preValidation', requireTenantAccess(deps))
      await routes(scope)
    },
    { prefix: '/tenants/:tenant' },
  )
}

/**
 * The hook: runs after the admin guard authenticated the caller and before
 * schema validation (authorization first, as the handlers did before), so it
 * checks the id pattern of the one parameter it reads itself.
 */
export function requireTenantAccess(deps: ControlPlaneDeps) {
  return async function checkTenantAccess(request: FastifyRequest): Promise<void> {
    const id = (request.params as Record<string, unknown> | undefined)?.tenant
    if (typeof id !== 'string' || !ID_RE.test(id)) throw new InvalidRequest(`tenant must match ${ID_RE.source}`)
    assertTenantAccess(request.adminPrincipal, id)
    const tenant = await deps.store.tenants.get(id)
    if (!tenant) throw new NotFound(`tenant ${id} not found`)
    request.adminTenant = tenant
  }
}

/** The tenant a `/tenants/:tenant` route acts on (set by the scope's hook). */
export function tenantOf(request: FastifyRequest): Tenant {
  const t = request.adminTenant
  if (!t) throw new AegisError('server_error', 'tenant route outside a tenant scope')
  return t
}
