/**
 * What admin handlers share once the route's schema (schemas.ts) has checked
 * the input: the caller, the global-token rule, the JWK size bound, audit
 * and feed publication that answer 503 when they fail after a change.
 */
import type { FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest, Unavailable } from '../../errors.js'
import type { AdminPrincipal } from '../../http/admin-auth.js'
import type { AuditEventInput } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'

export { ID_RE } from './schemas.js'

export function principal(request: FastifyRequest): AdminPrincipal {
  const p = request.adminPrincipal
  if (!p) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
  return p
}

/** 403 unless the principal is global. */
export function assertGlobal(p: AdminPrincipal, what: string): void {
  if (p.tenant !== null) throw new AegisError('forbidden', `${what} needs a global admin token`)
}

/**
 * A JWK Set the schema (`publicJwksSchema`) let through, with no key larger
 * than 8 KiB serialized: a bound on the whole key JSON Schema cannot state.
 */
export function checkJwkSizes(jwks: { keys: Record<string, unknown>[] }, name: string): { keys: Record<string, unknown>[] } {
  for (const k of jwks.keys) if (JSON.stringify(k).length > 8192) throw new InvalidRequest(`a ${name} key is too large`)
  return jwks
}

/** Writes an `admin.*` event; the change is already applied, so a failed write answers 503 saying so. */
export async function auditAdmin(deps: ControlPlaneDeps, p: AdminPrincipal, event: Omit<AuditEventInput, 'actor'>): Promise<void> {
  try {
    await deps.audit.append({ ...event, actor: p.actor })
  } catch (err) {
    deps.logger.error({ err, type: event.type }, 'admin change applied but not audited')
    throw new Unavailable('the change was applied but its audit event could not be written', { cause: err })
  }
}

/** Publishes a feed event after a change; a failure answers 503 (the change is stored; gateways catch up on reconnect). */
export async function publishChange(deps: ControlPlaneDeps, publish: () => Promise<void>): Promise<void> {
  try {
    await publish()
  } catch (err) {
    deps.logger.error({ err }, 'change stored but not published on the feed')
    throw new Unavailable('the change was stored but could not be published to gateways yet', { cause: err })
  }
}
