import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AegisError } from '../errors.js'
import { sha256b64url } from '../lib/hash.js'
import type { AdminRole, AdminToken, Store } from '../store/types.js'

/** Who called an admin endpoint. */
export interface AdminPrincipal {
  id: string
  /** null = global. */
  tenant: string | null
  role: AdminRole
  groups: string[]
  /** `admin:<id>` or `console:<id>`, for audit events. */
  actor: string
  /** Authenticated through a console session (admin login), not a bare bearer token. */
  viaConsole: boolean
}

/**
 * Who may call an admin route, declared as the route's `config.admin` and
 * enforced by {@link installAdminGuard}; `'public'` for the few routes any
 * caller may read (the OpenAPI document).
 */
export interface AdminAccess {
  roles: readonly AdminRole[]
  /** When set, a tenant-scoped principal gets 403 with this message. */
  globalOnly?: string
  /** Whether a console session counts as authentication (default true). */
  sessions?: boolean
  /** The body must be `application/json` (415 otherwise), as every strict admin body is; absent or null reads as `{}`. */
  json?: boolean
  /** An absent body reads as `{}` (any media type). */
  optionalBody?: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    adminPrincipal?: AdminPrincipal
  }
  interface FastifyContextConfig {
    admin?: AdminAccess | 'public'
  }
}

/**
 * Resolves a console session to a principal (set by the console module), so
 * admin endpoints accept the session cookie as well as a bearer token.
 */
export type SessionResolver = (request: FastifyRequest) => Promise<AdminToken | null>

export function principalOf(token: AdminToken, viaConsole: boolean): AdminPrincipal {
  return { id: token.id, tenant: token.tenant, role: token.role, groups: token.groups, actor: `${viaConsole ? 'console' : 'admin'}:${token.id}`, viaConsole }
}

/** Looks up a bearer admin token (stored hashed). */
export async function authenticateAdmin(store: Store, request: FastifyRequest, sessions?: SessionResolver): Promise<AdminPrincipal> {
  const header = request.headers.authorization
  if (typeof header === 'string' && header.length > 0) {
    const m = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/.exec(header)
    if (!m) throw new AegisError('unauthorized', 'a valid admin bearer token is required', { headers: { 'www-authenticate': 'Bearer realm="aegis-admin"' } })
    const token = await store.adminTokens.getByHash(sha256b64url(m[1]!))
    if (!token || token.revokedAt !== null) {
      throw new AegisError('unauthorized', 'a valid admin bearer token is required', { headers: { 'www-authenticate': 'Bearer realm="aegis-admin"' } })
    }
    return principalOf(token, false)
  }
  if (sessions) {
    const token = await sessions(request)
    if (token && token.revokedAt === null) return principalOf(token, true)
  }
  throw new AegisError('unauthorized', 'a valid admin bearer token is required', { headers: { 'www-authenticate': 'Bearer realm="aegis-admin"' } })
}

/**
 * preHandler factory: authenticates and checks the role. `admin` may do
 * everything its tenant scope allows; `gateway` only what gateways need;
 * `approver` only approvals.
 */
export function requireRole(store: Store, roles: readonly AdminRole[], sessions?: SessionResolver) {
  return async function checkAdminRole(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const principal = await authenticateAdmin(store, request, sessions)
    if (!roles.includes(principal.role)) throw new AegisError('forbidden', `role ${principal.role} may not call this endpoint`)
    request.adminPrincipal = principal
  }
}

const GUARDED = 'aegisAdminGuard'

/**
 * Authenticates every route of `scope` (and of its children) from its
 * `config.admin` before schema validation, so a caller without a valid
 * token learns nothing about the inputs (401 before 400, as before). A route
 * registered in the scope without `config.admin` is refused at start-up,
 * so a new route cannot forget to say who may call it. Installs once per
 * scope chain: a plugin may call it for its own scope whether or not the
 * scope it is registered in already has it.
 */
export function installAdminGuard(scope: FastifyInstance, store: Store, sessions?: SessionResolver): void {
  if (scope.hasDecorator(GUARDED)) return
  scope.decorate(GUARDED, true)
  scope.addHook('onRoute', (route) => {
    if (route.config?.admin === undefined) throw new Error(`admin route ${String(route.method)} ${route.url} declares no config.admin (who may call it)`)
    if (route.url.includes('/tenants/:tenant') && !route.prefix.endsWith('/tenants/:tenant')) {
      throw new Error(`admin route ${String(route.method)} ${route.url} names a tenant outside a tenant scope (control-plane/admin/tenant-scope.ts)`)
    }
  })
  scope.addHook('preValidation', async function checkAdminAccess(request) {
    const access = request.routeOptions.config.admin
    if (access === 'public') return
    if (access === undefined) throw new AegisError('server_error', 'admin route without an access rule')
    const principal = await authenticateAdmin(store, request, access.sessions === false ? undefined : sessions)
    if (!access.roles.includes(principal.role)) throw new AegisError('forbidden', `role ${principal.role} may not call this endpoint`)
    if (access.globalOnly !== undefined && principal.tenant !== null) throw new AegisError('forbidden', access.globalOnly)
    request.adminPrincipal = principal
    const b = request.body
    // An absent body reads as {}, so the schema names what is required.
    if (b === undefined && (access.json === true || access.optionalBody === true)) request.body = {}
    else if (access.json === true) {
      if (b === null) request.body = {}
      // JSON Schema sees the parsed value, not the media type it came in: a form-encoded object would otherwise pass.
      else if (typeof b === 'object' && !Array.isArray(b) && !isJson(request.headers['content-type'])) {
        throw new AegisError('unsupported_media_type', 'the body must be application/json')
      }
    }
  })
}

function isJson(ct: string | undefined): boolean {
  return typeof ct === 'string' && ct.toLowerCase().startsWith('application/json')
}

/** 403 unless the principal is global or scoped to `tenant`. */
export function assertTenantAccess(principal: AdminPrincipal | undefined, tenant: string): void {
  if (!principal) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
  if (principal.tenant !== null && principal.tenant !== tenant) {
    throw new AegisError('forbidden', "outside this token's tenant")
  }
}
