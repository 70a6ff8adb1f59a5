/** Validation of `POST /admin/v1/revocations` bodies (docs/reference.md "Revocation"). */
import type { AegisConfig } from '../../config/schema.js'
import { AegisError, InvalidRequest } from '../../errors.js'
import type { AdminPrincipal } from '../../http/admin-auth.js'
import type { RevocationType } from '../../store/types.js'
import type { NewRevocation } from './service.js'

const TYPES: readonly RevocationType[] = ['jti', 'agent', 'client', 'tenant', 'kid', 'issued_before']
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/
const VALUE_RE = /^[A-Za-z0-9._~:+/=-]{1,128}$/
const FIELDS = ['type', 'value', 'tenant', 'agent_id', 'reason']

/**
 * Parses and authorizes a revocation request. `expiresAt` is left for the
 * caller (revocationExpiry). Tenant-scoped admins may revoke only within
 * their tenant, and never a kid (keys are global).
 */
export function parseRevocation(body: unknown, p: AdminPrincipal, config: AegisConfig, now: number): Omit<NewRevocation, 'expiresAt'> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidRequest('the body must be a JSON object')
  const o = body as Record<string, unknown>
  for (const k of Object.keys(o)) if (!FIELDS.includes(k)) throw new InvalidRequest(`unknown field ${JSON.stringify(k.slice(0, 64))}`)
  const type = o.type
  if (typeof type !== 'string' || !(TYPES as readonly string[]).includes(type)) throw new InvalidRequest(`type must be one of ${TYPES.join(', ')}`)
  const t = type as RevocationType
  let tenant: string | null = null
  if (o.tenant !== undefined && o.tenant !== null) {
    if (typeof o.tenant !== 'string' || !ID_RE.test(o.tenant)) throw new InvalidRequest(`tenant must match ${ID_RE.source}`)
    tenant = o.tenant
  }
  let agentId: string | null = null
  if (o.agent_id !== undefined && o.agent_id !== null) {
    if (t !== 'issued_before') throw new InvalidRequest('agent_id only scopes issued_before')
    if (typeof o.agent_id !== 'string' || !ID_RE.test(o.agent_id)) throw new InvalidRequest(`agent_id must match ${ID_RE.source}`)
    agentId = o.agent_id
  }
  let reason: string | null = null
  if (o.reason !== undefined && o.reason !== null) {
    if (typeof o.reason !== 'string' || o.reason.length > 500) throw new InvalidRequest('reason must be a string of at most 500 characters')
    reason = o.reason
  }

  let value: string
  if (t === 'issued_before') {
    const v = o.value
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,12}$/.test(v) ? Number(v) : NaN
    if (!Number.isInteger(n) || n <= 0) throw new InvalidRequest('for issued_before, value must be epoch seconds (an integer)')
    const nowS = Math.floor(now / 1000)
    if (n > nowS + 86400) throw new InvalidRequest('issued_before may lie at most one day ahead')
    if (n + config.tokens.maxTtlSeconds + config.tokens.clockSkewSeconds <= nowS)
      throw new InvalidRequest('no token issued before that time can still be alive')
    value = String(n)
    if (agentId !== null && tenant === null) throw new InvalidRequest('issued_before with agent_id needs tenant')
  } else {
    if (typeof o.value !== 'string') throw new InvalidRequest('value must be a string')
    value = o.value
    const pattern = t === 'agent' || t === 'tenant' ? ID_RE : VALUE_RE
    if (!pattern.test(value)) throw new InvalidRequest(`value must match ${pattern.source}`)
  }
  if ((t === 'agent' || t === 'client') && tenant === null) throw new InvalidRequest(`tenant is required for type ${t}`)
  if (t === 'tenant') {
    if (tenant !== null && tenant !== value) throw new InvalidRequest('for type tenant, tenant must equal value')
    tenant = value
  }
  if (t === 'kid' && tenant !== null) throw new InvalidRequest('a kid revocation is global; omit tenant')

  if (p.tenant !== null) {
    if (t === 'kid') throw new AegisError('forbidden', 'revoking a signing key needs a global admin token')
    if (tenant === null) {
      if (t === 'issued_before' || t === 'jti') tenant = p.tenant
    }
    if (tenant !== p.tenant) throw new AegisError('forbidden', "outside this token's tenant")
  }
  return { type: t, value, tenant, agentId, reason }
}
