/**
 * Strict validation of admin API bodies: exact types, bounded sizes, no
 * unknown fields. Every failure is a 400 `invalid_request` naming the field.
 */
import type { FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest, Unavailable } from '../../errors.js'
import type { AdminPrincipal } from '../../http/admin-auth.js'
import type { AuditEventInput } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'

/** Tenant, agent and other ids: `[A-Za-z0-9._-]{1,64}`. */
export const ID_RE = /^[A-Za-z0-9._-]{1,64}$/

export type Json = Record<string, unknown>

/** The JSON body as an object with only `allowed` keys. */
export function jsonBody(request: FastifyRequest, allowed: readonly string[]): Json {
  const b = request.body
  if (b === undefined || b === null) return {}
  if (typeof b !== 'object' || Array.isArray(b)) throw new InvalidRequest('the body must be a JSON object')
  const ct = request.headers['content-type']
  if (typeof ct !== 'string' || !ct.toLowerCase().startsWith('application/json')) throw new AegisError('unsupported_media_type', 'the body must be application/json')
  const obj = b as Json
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new InvalidRequest(`unknown field ${JSON.stringify(k.slice(0, 64))}`)
  }
  return obj
}

export interface StringRule {
  max: number
  min?: number
  pattern?: RegExp
}

export function optString(o: Json, name: string, rule: StringRule): string | undefined {
  const v = o[name]
  if (v === undefined) return undefined
  if (typeof v !== 'string') throw new InvalidRequest(`${name} must be a string`)
  if (v.length < (rule.min ?? 1) || v.length > rule.max) throw new InvalidRequest(`${name} must be ${rule.min ?? 1} to ${rule.max} characters`)
  if (rule.pattern && !rule.pattern.test(v)) throw new InvalidRequest(`${name} has characters outside ${rule.pattern.source}`)
  return v
}

export function reqString(o: Json, name: string, rule: StringRule): string {
  const v = optString(o, name, rule)
  if (v === undefined) throw new InvalidRequest(`${name} is required`)
  return v
}

/** A string, null, or absent (undefined). */
export function optNullableString(o: Json, name: string, rule: StringRule): string | null | undefined {
  if (o[name] === null) return null
  return optString(o, name, rule)
}

export function optBool(o: Json, name: string): boolean | undefined {
  const v = o[name]
  if (v === undefined) return undefined
  if (typeof v !== 'boolean') throw new InvalidRequest(`${name} must be true or false`)
  return v
}

export function optInt(o: Json, name: string, min: number, max: number): number | undefined {
  const v = o[name]
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidRequest(`${name} must be an integer from ${min} to ${max}`)
  return v
}

export function optStringArray(o: Json, name: string, maxItems: number, rule: StringRule): string[] | undefined {
  const v = o[name]
  if (v === undefined) return undefined
  if (!Array.isArray(v)) throw new InvalidRequest(`${name} must be an array of strings`)
  if (v.length > maxItems) throw new InvalidRequest(`${name} holds at most ${maxItems} items`)
  const out: string[] = []
  for (const x of v) {
    if (typeof x !== 'string' || x.length < (rule.min ?? 1) || x.length > rule.max || (rule.pattern && !rule.pattern.test(x))) {
      throw new InvalidRequest(`each ${name} item must be a string of ${rule.min ?? 1} to ${rule.max} characters${rule.pattern ? ` matching ${rule.pattern.source}` : ''}`)
    }
    if (!out.includes(x)) out.push(x)
  }
  return out
}

/** A path parameter that must be an id. */
export function idParam(params: unknown, name: string): string {
  const v = (params as Record<string, unknown> | undefined)?.[name]
  if (typeof v !== 'string' || !ID_RE.test(v)) throw new InvalidRequest(`${name} must match ${ID_RE.source}`)
  return v
}

export function principal(request: FastifyRequest): AdminPrincipal {
  const p = request.adminPrincipal
  if (!p) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
  return p
}

/** 403 unless the principal is global. */
export function assertGlobal(p: AdminPrincipal, what: string): void {
  if (p.tenant !== null) throw new AegisError('forbidden', `${what} needs a global admin token`)
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** An RFC 7517 JWK Set of public keys: at most 10 keys, each with `kty`, no private members. */
export function publicJwks(v: unknown, name: string): { keys: Record<string, unknown>[] } {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequest(`${name} must be a JWK Set object`)
  const keys = (v as Json).keys
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 10) throw new InvalidRequest(`${name}.keys must hold 1 to 10 keys`)
  for (const k of keys) {
    if (k === null || typeof k !== 'object' || Array.isArray(k) || typeof (k as Json).kty !== 'string') throw new InvalidRequest(`each ${name} key must be a JWK object with kty`)
    for (const m of PRIVATE_JWK_MEMBERS) {
      if (m in (k as Json)) throw new InvalidRequest(`${name} must hold public keys only (found "${m}")`)
    }
    if (JSON.stringify(k).length > 8192) throw new InvalidRequest(`a ${name} key is too large`)
  }
  return { keys: keys as Record<string, unknown>[] }
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
