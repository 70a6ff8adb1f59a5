/**
 * JSON Schemas of the admin API's inputs (params, query strings, bodies):
 * fastify validates with them before a handler runs (a failure is 400
 * `invalid_request`, http/error-handler.ts) and @fastify/swagger publishes
 * them as the OpenAPI document (control-plane/openapi.ts). Every string,
 * array and object is bounded; bodies take no unknown fields. The control
 * plane's validator neither coerces types nor drops unknown fields nor fills
 * defaults (`SCHEMA_VALIDATOR_OPTIONS`, http/server.ts), so what a schema
 * says is what is checked.
 */

import type { AdminAccess } from '../../http/admin-auth.js'
import type { AdminRole } from '../../store/types.js'

/** A route's `config`: who may call it (enforced by the admin guard, http/admin-auth.ts). */
export function allow(roles: readonly AdminRole[], opts: Omit<AdminAccess, 'roles'> = {}): { admin: AdminAccess } {
  return { admin: { roles, ...opts } }
}

/** Tenant, agent and other ids. */
export const ID_PATTERN = '^[A-Za-z0-9._-]{1,64}$'
export const ID_RE = new RegExp(ID_PATTERN)

export type JsonSchema = Readonly<Record<string, unknown>>

/** A string of `min` (default 1) to `max` characters, optionally matching `pattern`. */
export function str(max: number, pattern?: string, min = 1): JsonSchema {
  return { type: 'string', minLength: min, maxLength: max, ...(pattern !== undefined ? { pattern } : {}) }
}

/** Like {@link str}, or null. */
export function nullableStr(max: number, pattern?: string): JsonSchema {
  return { type: ['string', 'null'], minLength: 1, maxLength: max, ...(pattern !== undefined ? { pattern } : {}) }
}

export const id: JsonSchema = { type: 'string', pattern: ID_PATTERN }

/** An array of at most `maxItems` strings, each as `item`. */
export function strArray(maxItems: number, item: JsonSchema): JsonSchema {
  return { type: 'array', maxItems, items: item }
}

export function int(minimum: number, maximum: number): JsonSchema {
  return { type: 'integer', minimum, maximum }
}

/** A body object of `properties`, none other. */
export function body(properties: Record<string, JsonSchema>, required: readonly string[] = []): JsonSchema {
  return { type: 'object', properties, additionalProperties: false, ...(required.length > 0 ? { required } : {}) }
}

/** Path parameters, all required. */
export function params(properties: Record<string, JsonSchema>): JsonSchema {
  return { type: 'object', properties, required: Object.keys(properties) }
}

/** A query string: each parameter once (a repeated one arrives as an array and fails `type: string`). */
export function query(properties: Record<string, JsonSchema>, extra = true): JsonSchema {
  return { type: 'object', properties, ...(extra ? {} : { additionalProperties: false }) }
}

export const tenantParams = params({ tenant: id })
export const tenantAgentParams = params({ tenant: id, agent: id })
export const tenantIdParams = params({ tenant: id, id })

/** JWK members that only private (or symmetric) keys have. */
export const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const

/** An RFC 7517 JWK Set of 1 to 10 public keys, each with `kty`. */
export const publicJwksSchema: JsonSchema = {
  type: 'object',
  required: ['keys'],
  properties: {
    keys: {
      type: 'array',
      minItems: 1,
      maxItems: 10,
      items: {
        type: 'object',
        required: ['kty'],
        properties: { kty: { type: 'string' } },
        propertyNames: { type: 'string', not: { enum: PRIVATE_JWK_MEMBERS } },
      },
    },
  },
}

/** Tags of the OpenAPI document, one per area of the admin API. */
export const TAGS = {
  tokens: 'admin-tokens',
  tenants: 'tenants',
  agents: 'agents',
  issuers: 'trusted-issuers',
  policies: 'policies',
  revocations: 'revocations',
  feed: 'gateway-feed',
  approvals: 'approvals',
  audit: 'audit',
  decisions: 'decisions',
  keys: 'keys',
  kpis: 'kpis',
  meta: 'meta',
} as const
