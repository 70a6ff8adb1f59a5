/**
 * Delegation chains in Aegis access tokens (RFC 8693 §4.1 `act`, docs/delegation.md),
 * read the same way by the token service (before it extends a chain) and by
 * the gateway (before it decides a call). A delegated token carries:
 *
 * - `act`: the current actor, `{"sub": <agent id>, "act"?: <the actor before>}`;
 * - `delegation`: `{"hashes": [...], "from"?, "user"?, "user_iss"?, "user_resources"?}`,
 *   where `hashes[i]` is the capability hash agent `chain[i]` had when the
 *   chain reached it, so a gateway refuses the token once any of them changes,
 *   as it refuses a plain token minted against an older manifest; `from`
 *   lists the jti of every Aegis token the chain was exchanged from (each
 *   hop's subject and actor token, and theirs), so revoking any of them
 *   refuses this token too.
 *
 * The chain runs from the original subject to the current actor: the token's
 * agent (`agent_id`) then the `act` levels innermost first. When a person
 * delegated (`delegation.user` set, `sub` = that person), the chain starts at
 * the first acting agent, which is the token's `agent_id`.
 */
import { capabilityHash, type CapabilityManifest } from './capability.js'
import { canonicalJson } from './canonical-json.js'

/** No tenant may allow longer chains than this (bounds every parse). */
export const MAX_DELEGATION_DEPTH = 10
/** jtis in `delegation.from`, at most: a subject and an actor token per hop. */
export const MAX_DELEGATION_FROM = 2 * MAX_DELEGATION_DEPTH
/** A tenant's limit when it sets none. */
export const DEFAULT_DELEGATION_DEPTH = 4
/** Resource ids copied from a person's token, at most. */
export const MAX_USER_RESOURCES = 100

const AGENT_ID = /^[A-Za-z0-9._-]{1,64}$/

/** RFC 8693 §4.1 actor claim. */
export interface ActClaim {
  sub: string
  act?: ActClaim
}

/** The `delegation` claim. */
export interface DelegationClaim {
  hashes: string[]
  from?: string[]
  user?: string
  user_iss?: string
  user_resources?: string[]
}

/** A token's delegation as policy and revocation see it. */
export interface DelegationChain {
  /** Agent ids from the original subject to the current actor; no repeats. */
  readonly chain: readonly string[]
  /** Capability hash of each chain agent when the chain reached it (same order). */
  readonly hashes: readonly string[]
  /** Number of `act` levels. */
  readonly depth: number
  /** jtis of the Aegis tokens the chain was exchanged from (each revocable on its own). */
  readonly from: readonly string[]
  /** The person the chain acts for, when a person delegated. */
  readonly user: string | null
  readonly userIssuer: string | null
  readonly userResources: readonly string[]
}

/** Why a token's delegation claims are unacceptable. */
export class DelegationError extends Error {
  override readonly name = 'DelegationError'
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The `act` levels innermost first (the chain's order). Throws DelegationError for a malformed or over-deep claim. */
export function actorsOf(act: unknown): string[] {
  const outermostFirst: string[] = []
  let level: unknown = act
  while (level !== undefined) {
    if (!isRecord(level)) throw new DelegationError('act is not an object')
    if (outermostFirst.length >= MAX_DELEGATION_DEPTH) throw new DelegationError(`act is nested deeper than ${MAX_DELEGATION_DEPTH}`)
    const sub = level.sub
    if (typeof sub !== 'string' || !AGENT_ID.test(sub)) throw new DelegationError('act.sub is not an agent id')
    outermostFirst.push(sub)
    level = level.act
  }
  return outermostFirst.reverse()
}

/** The nested `act` claim for a chain's actors (innermost first in, outermost first out). */
export function actClaim(actors: readonly string[]): ActClaim | undefined {
  let act: ActClaim | undefined
  for (const sub of actors) act = act === undefined ? { sub } : { sub, act }
  return act
}

/**
 * The chain a token carries, or null for a token without `act`. Throws
 * DelegationError when `act` and `delegation` do not describe one chain
 * without repeats (a loop), when a person's chain does not start at the
 * token's agent, or when a token without `act` carries `delegation`.
 */
export function readDelegation(claims: { sub?: unknown; agent_id?: unknown; act?: unknown; delegation?: unknown }): DelegationChain | null {
  if (claims.act === undefined) {
    if (claims.delegation !== undefined) throw new DelegationError('delegation without act')
    return null
  }
  const actors = actorsOf(claims.act)
  const d = claims.delegation
  if (!isRecord(d)) throw new DelegationError('act without delegation')
  const agentId = claims.agent_id
  if (typeof agentId !== 'string') throw new DelegationError('agent_id missing')
  const user = d.user
  let chain: string[]
  if (user === undefined) {
    if (claims.sub !== agentId) throw new DelegationError('sub and agent_id differ without a delegating user')
    chain = [agentId, ...actors]
  } else {
    if (typeof user !== 'string' || user.length === 0 || user.length > 256 || claims.sub !== user) throw new DelegationError('delegation.user is not the sub')
    if (actors[0] !== agentId) throw new DelegationError("a person's chain must start at the token's agent")
    chain = actors
  }
  if (new Set(chain).size !== chain.length) throw new DelegationError('an agent appears twice in the chain')
  const hashes = d.hashes
  if (!Array.isArray(hashes) || hashes.length !== chain.length || !hashes.every((h) => typeof h === 'string' && /^[A-Za-z0-9_-]{43}$/.test(h)))
    throw new DelegationError('delegation.hashes does not match the chain')
  const from = d.from ?? []
  if (!Array.isArray(from) || from.length > MAX_DELEGATION_FROM || !from.every((j) => typeof j === 'string' && j.length > 0 && j.length <= 128))
    throw new DelegationError('delegation.from is malformed')
  const userIss = d.user_iss
  if (userIss !== undefined && (typeof userIss !== 'string' || userIss.length > 512)) throw new DelegationError('delegation.user_iss is malformed')
  const resources = d.user_resources ?? []
  if (!Array.isArray(resources) || resources.length > MAX_USER_RESOURCES || !resources.every((r) => typeof r === 'string' && r.length > 0 && r.length <= 256))
    throw new DelegationError('delegation.user_resources is malformed')
  return Object.freeze({
    chain: Object.freeze(chain),
    hashes: Object.freeze([...(hashes as string[])]),
    depth: actors.length,
    from: Object.freeze([...(from as string[])]),
    user: typeof user === 'string' ? user : null,
    userIssuer: typeof userIss === 'string' ? userIss : null,
    userResources: Object.freeze([...(resources as string[])]),
  })
}

/**
 * The manifest no wider than both: the tools in both, each tool's schema the
 * one both give, or both at once (`allOf`) when they differ, so a call must
 * satisfy every agent's schema of the chain.
 */
export function intersectManifests(a: CapabilityManifest, b: CapabilityManifest, only?: ReadonlySet<string>): CapabilityManifest {
  const inB = new Set(b.capabilities)
  const capabilities = [...new Set(a.capabilities)].filter((t) => inB.has(t) && (only === undefined || only.has(t))).sort()
  const schemas: Record<string, unknown> = {}
  for (const t of capabilities) {
    const sa = a.schemas?.[t]
    const sb = b.schemas?.[t]
    if (sa === undefined && sb === undefined) continue
    if (sa === undefined) schemas[t] = sb
    else if (sb === undefined || canonicalJson(sa) === canonicalJson(sb)) schemas[t] = sa
    else schemas[t] = { allOf: [sa, sb] }
  }
  return Object.keys(schemas).length > 0 ? { capabilities, schemas } : { capabilities }
}

/** `capability_hash` of a manifest (re-exported beside the intersection for callers of this module). */
export function manifestHash(m: CapabilityManifest): string {
  return capabilityHash(m)
}
