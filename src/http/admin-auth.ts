import type { FastifyReply, FastifyRequest } from 'fastify'
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

declare module 'fastify' {
  interface FastifyRequest {
    adminPrincipal?: AdminPrincipal
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

/** 403 unless the principal is global or scoped to `tenant`. */
export function assertTenantAccess(principal: AdminPrincipal | undefined, tenant: string): void {
  if (!principal) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
  if (principal.tenant !== null && principal.tenant !== tenant) {
    throw new AegisError('forbidden', 'outside this token\'s tenant')
  }
}
