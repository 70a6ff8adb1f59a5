/**
 * Builds the Cedar request (entities and context) for one call, keeping it as
 * small as the performance budget asks: two entities (principal, resource)
 * with flat attributes, plus the action entity only when the bundle uses
 * action groups.
 */
import type { CedarValueJson, Context, EntityJson } from '@cedar-policy/cedar-wasm/nodejs'
import type { PolicyDelegation, PolicyRequest } from '../types.js'
import { PRINCIPAL_TYPE, RESOURCE_TYPE } from './schema.js'

/** Thrown for parameters Cedar cannot hold; the engine answers deny. */
export class ParamsError extends Error {}

/** Keys that Cedar's JSON format reads as escapes (entity references, extension values). */
const RESERVED = new Set(['__entity', '__extn', '__expr'])

/**
 * Untrusted JSON → Cedar JSON value. Cedar has no null and no floats: a null
 * (object member or array element) is dropped, so `has` is false for it; a
 * number that is not a safe integer becomes its JSON text, so numeric
 * comparisons on it fail evaluation (and fail closed) instead of rounding.
 * Arrays become sets. Reserved escape keys are refused, or a parameter could
 * forge an entity reference.
 */
export function toCedarValue(v: unknown): CedarValueJson | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v
    case 'number':
      return Number.isSafeInteger(v) ? v : JSON.stringify(v)
    case 'object': {
      if (v === null) return undefined
      if (Array.isArray(v)) {
        const out: CedarValueJson[] = []
        for (const e of v) {
          const c = toCedarValue(e)
          if (c !== undefined) out.push(c)
        }
        return out
      }
      const out: Record<string, CedarValueJson> = {}
      for (const k in v as Record<string, unknown>) {
        if (!Object.hasOwn(v, k)) continue
        if (RESERVED.has(k)) throw new ParamsError(`parameter key "${k}" is reserved`)
        const c = toCedarValue((v as Record<string, unknown>)[k])
        if (c !== undefined) out[k] = c
      }
      return out
    }
    default:
      return undefined
  }
}

const DELEGATION_ATTRS = ['chain', 'depth', 'origin', 'actor', 'user', 'user_issuer', 'user_resources'] as const
/** Every attribute of `context.delegation` (and the record itself). */
export const FULL_DELEGATION = (1 << (DELEGATION_ATTRS.length + 1)) - 1
const NAMED = 1 << DELEGATION_ATTRS.length

/**
 * Which of `context.delegation` a bundle's text can read, as a bit set: the
 * record when `delegation` appears, each attribute whose name appears. The
 * chain costs Cedar a record to convert on every call, so a call is sent
 * only what its policies name (Cedar reads attributes by literal name only;
 * a name in a string or a comment still counts). 0: nothing.
 */
export function delegationShapeOf(text: string): number {
  if (!/\bdelegation\b/.test(text)) return 0
  // Used as a whole value (compared, say) rather than guarded with `has` or read by attribute: send all of it.
  for (const m of text.matchAll(/(\bhas\s+["']?)?\bdelegation\b(?:["']\s*\])?\s*(\.|\[|\bhas\b)?/g)) {
    if (m[1] === undefined && m[2] === undefined) return FULL_DELEGATION
  }
  let shape = NAMED
  DELEGATION_ATTRS.forEach((a, i) => {
    if (new RegExp(`\\b${a}\\b`).test(text)) shape |= 1 << i
  })
  return shape
}

// A token's chain never changes: its Cedar form is built once per chain object and shape (the gateway keeps one chain per token).
const delegationContexts = new WeakMap<PolicyDelegation, Map<number, CedarValueJson>>()

function delegationContext(d: PolicyDelegation, shape: number): CedarValueJson {
  let byShape = delegationContexts.get(d)
  if (byShape === undefined) {
    byShape = new Map()
    delegationContexts.set(d, byShape)
  }
  let c = byShape.get(shape)
  if (c === undefined) {
    const all: Record<(typeof DELEGATION_ATTRS)[number], CedarValueJson | undefined> = {
      chain: [...d.chain],
      depth: d.depth,
      origin: d.chain[0] ?? '',
      actor: d.chain[d.chain.length - 1] ?? '',
      user: d.user ?? undefined,
      user_issuer: d.userIssuer ?? undefined,
      user_resources: [...d.userResources],
    }
    const rec: Record<string, CedarValueJson> = {}
    DELEGATION_ATTRS.forEach((a, i) => {
      const v = all[a]
      if (shape & (1 << i) && v !== undefined) rec[a] = v
    })
    c = rec
    byShape.set(shape, c)
  }
  return c
}

/** The Cedar context of a call: `{ params, time, client_address?, override, http?, delegation? }`. */
export function buildContext(req: PolicyRequest, delegationShape = FULL_DELEGATION): Context {
  const params = req.params !== null && typeof req.params === 'object' && !Array.isArray(req.params) ? toCedarValue(req.params) : undefined
  if (params === undefined) throw new ParamsError('params must be a JSON object')
  if (!Number.isSafeInteger(req.time)) throw new ParamsError('time must be integer epoch seconds')
  const ctx: Context = { params, time: req.time, override: req.override === true }
  if (typeof req.clientAddress === 'string' && req.clientAddress !== '') ctx.client_address = req.clientAddress
  if (req.http !== undefined) {
    const h = req.http
    const http: Record<string, CedarValueJson> = { method: h.method, path: h.path, query: toCedarValue(h.query) ?? {}, body: h.body }
    if (h.bodySha256 !== undefined) http.body_sha256 = h.bodySha256
    ctx.http = http
  }
  if (delegationShape !== 0 && req.delegation !== undefined) ctx.delegation = delegationContext(req.delegation, delegationShape)
  return ctx
}

/** Principal attribute names, as the schema declares them. */
const PRINCIPAL_ATTRS = ['tenant', 'agent_id', 'client_id', 'scopes', 'capabilities'] as const
type PrincipalAttr = (typeof PRINCIPAL_ATTRS)[number]

/**
 * Which entity data a bundle can read. Copying entities into Cedar is most
 * of a call's cost (two small entities double it), and Cedar reads an
 * attribute only by its literal name, so data whose name never appears in
 * the policy text cannot matter. Conservative: a name inside a string or a
 * comment still counts.
 */
export interface EntityShape {
  /** Principal attributes to send; null = no principal entity (its uid still works for ==, in, is). */
  principal: PrincipalAttr[] | null
  /** Send the resource entity (with `id`). */
  resource: boolean
}

/** The entity shape a bundle's policy text needs. */
export function entityShapeOf(text: string): EntityShape {
  const reads = (v: string): boolean => new RegExp(`\\b${v}\\b\\s*(?:\\.|\\[|\\bhas\\b)`).test(text)
  return {
    principal: reads('principal') ? PRINCIPAL_ATTRS.filter((a) => new RegExp(`\\b${a}\\b`).test(text)) : null,
    resource: reads('resource'),
  }
}

/** Everything: for callers that do not know the bundle. */
export const FULL_SHAPE: EntityShape = { principal: [...PRINCIPAL_ATTRS], resource: true }

/** Principal and resource entities of a call (and the action's group parents when given). */
export function buildEntities(req: PolicyRequest, actionParents: string[] | null, shape: EntityShape = FULL_SHAPE): EntityJson[] {
  const p = req.principal
  const resource = req.resource ?? ''
  const entities: EntityJson[] = []
  if (shape.principal) {
    const attrs: Record<string, CedarValueJson> = {}
    for (const a of shape.principal) {
      switch (a) {
        case 'tenant':
          attrs.tenant = p.tenant
          break
        case 'agent_id':
          attrs.agent_id = p.agentId
          break
        case 'client_id':
          attrs.client_id = p.clientId
          break
        case 'scopes':
          attrs.scopes = p.scopes
          break
        case 'capabilities':
          attrs.capabilities = p.capabilities
          break
      }
    }
    entities.push({ uid: { type: PRINCIPAL_TYPE, id: p.agentId }, attrs, parents: [] })
  }
  if (shape.resource) entities.push({ uid: { type: RESOURCE_TYPE, id: resource }, attrs: { id: resource }, parents: [] })
  if (actionParents && actionParents.length > 0) {
    entities.push({ uid: { type: 'Action', id: req.action }, attrs: {}, parents: actionParents.map((g) => ({ type: 'Action', id: g })) })
  }
  return entities
}
