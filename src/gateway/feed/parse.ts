import type { AgentState, FeedEvent, FeedSnapshot, FeedSummary, KeysState } from '../../control-plane/index.js'
import { MemoryDenyList } from '../../store/memory/deny-list.js'
import type { Revocation } from '../../store/types.js'
import { agentKey, type PreparedSnapshot } from '../state.js'

const TYPES = new Set(['jti', 'agent', 'client', 'tenant', 'kid', 'issued_before'])

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

const str = (v: unknown): v is string => typeof v === 'string'
const strOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string'
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)

/** Validates a revocation from the wire; null when malformed. */
export function parseRevocation(v: unknown): Revocation | null {
  if (!isObj(v)) return null
  if (!num(v.seq) || !str(v.type) || !TYPES.has(v.type) || !str(v.value) || !num(v.expiresAt) || !num(v.createdAt)) return null
  const tenant = v.tenant ?? null
  const agentId = v.agentId ?? null
  const reason = v.reason ?? null
  if (!strOrNull(tenant) || !strOrNull(agentId) || !strOrNull(reason)) return null
  return { seq: v.seq, type: v.type as Revocation['type'], value: v.value, tenant, agentId, reason, createdAt: v.createdAt, expiresAt: v.expiresAt }
}

/** A revocation of a snapshot page: a tuple (`?v=3`) or an object; null when malformed. */
export function parseRevocationEntry(v: unknown): Revocation | null {
  if (!Array.isArray(v)) return parseRevocation(v)
  if (v.length < 7) return null
  const [seq, type, value, tenant, agentId, createdAt, expiresAt] = v as unknown[]
  if (!num(seq) || !str(type) || !TYPES.has(type) || !str(value) || !strOrNull(tenant) || !strOrNull(agentId) || !num(createdAt) || !num(expiresAt)) return null
  return { seq, type: type as Revocation['type'], value, tenant, agentId, reason: null, createdAt, expiresAt }
}

/** An agent of a snapshot page: a tuple (`?v=3`) or an object; null when malformed. */
export function parseAgentEntry(v: unknown): AgentState | null {
  if (Array.isArray(v)) {
    const [tenant, agentId, capabilityHash] = v as unknown[]
    return v.length >= 3 && str(tenant) && str(agentId) && strOrNull(capabilityHash) ? { tenant, agentId, capabilityHash } : null
  }
  if (!isObj(v) || !str(v.tenant) || !str(v.agentId) || !strOrNull(v.capabilityHash)) return null
  return { tenant: v.tenant, agentId: v.agentId, capabilityHash: v.capabilityHash }
}

/** A snapshot record that does not validate (the caller reloads; never applied in part). */
export class MalformedSnapshot extends Error {}

/**
 * Builds a FeedSnapshot from a paged snapshot's records as they arrive (SSE
 * `snapshot-*` events, NDJSON lines), validating each page's entries once,
 * as it comes, and indexing them into a deny list and agent map of their
 * own (GatewayState.applySnapshot takes both over): what a starting gateway
 * does with 100,000 revocations happens while the control plane is still
 * sending, not after. Each method throws on a malformed record.
 */
export class SnapshotAssembler {
  private begin: Record<string, unknown> | null = null
  private readonly revocations: Revocation[] = []
  private readonly agents: AgentState[] = []
  private readonly deny = new MemoryDenyList()
  private readonly agentHashes = new Map<string, string | null>()

  opening(data: unknown): void {
    if (!isObj(data)) throw new MalformedSnapshot('malformed feed snapshot-begin')
    this.begin = data
  }

  page(kind: 'revocations' | 'agents', data: unknown): void {
    if (!this.begin || !Array.isArray(data)) throw new MalformedSnapshot(`malformed feed snapshot-${kind}`)
    if (kind === 'revocations')
      for (const x of data) {
        const r = parseRevocationEntry(x)
        if (!r) throw new MalformedSnapshot('malformed revocation in the feed snapshot')
        this.revocations.push(r)
        this.deny.apply(r)
      }
    else
      for (const x of data) {
        const a = parseAgentEntry(x)
        if (!a) throw new MalformedSnapshot('malformed agent in the feed snapshot')
        this.agents.push(a)
        this.agentHashes.set(agentKey(a.tenant, a.agentId), a.capabilityHash)
      }
  }

  /** The closing record carries seq and the entry counts (the snapshot is sent while it is read). */
  end(data: unknown): PreparedSnapshot {
    const end = isObj(data) ? data : null
    if (!this.begin || !end || end.revocations !== this.revocations.length || end.agents !== this.agents.length)
      throw new MalformedSnapshot('incomplete feed snapshot')
    // The opening record's policies and keys are validated as the unpaged snapshot's are; the entries already were.
    const head = parseSnapshot({ ...this.begin, seq: end.seq, revocations: [], agents: [] })
    if (!head) throw new MalformedSnapshot('malformed feed snapshot')
    return { ...head, revocations: this.revocations, agents: this.agents, prepared: { denyList: this.deny, agents: this.agentHashes } }
  }
}

/** Validates a feed event; null when malformed (the caller resynchronizes). */
export function parseFeedEvent(v: unknown): FeedEvent | null {
  if (!isObj(v)) return null
  switch (v.kind) {
    case 'revocation': {
      const r = parseRevocation(v.revocation)
      return r ? { kind: 'revocation', revocation: r } : null
    }
    case 'revocation_lifted': {
      const r = parseRevocation(v.revocation)
      return r && num(v.seq) ? { kind: 'revocation_lifted', seq: v.seq, revocation: r } : null
    }
    case 'agent': {
      const a = isObj(v.agent) ? parseAgentEntry(v.agent) : null
      return a ? { kind: 'agent', agent: a } : null
    }
    case 'policy': {
      const p = v.policy
      if (!isObj(p) || !str(p.tenant)) return null
      const policy = parsePolicyState(p)
      return policy ? { kind: 'policy', policy } : null
    }
    case 'keys': {
      const k = parseKeysState(v.keys)
      return k ? { kind: 'keys', keys: k } : null
    }
    default:
      return null
  }
}

/** Validates the kids of a `keys` event or snapshot; null when malformed. */
export function parseKeysState(v: unknown): KeysState | null {
  if (!isObj(v) || !str(v.current) || !Array.isArray(v.kids) || !v.kids.every(str)) return null
  const revoked = v.revoked === undefined ? [] : v.revoked
  if (!Array.isArray(revoked) || !revoked.every(str)) return null
  return { current: v.current, kids: [...v.kids], revoked: [...revoked] }
}

function parsePolicyState(p: Record<string, unknown>): FeedSnapshot['policies'][number] | null {
  if (!str(p.tenant)) return null
  let active: FeedSnapshot['policies'][number]['active'] = null
  if (p.active !== null && p.active !== undefined) {
    const a = p.active
    if (!isObj(a) || !str(a.id) || !str(a.version) || !str(a.cedar) || (a.mode !== 'enforce' && a.mode !== 'shadow')) return null
    active = { id: a.id, version: a.version, cedar: a.cedar, mode: a.mode }
  }
  let candidate: FeedSnapshot['policies'][number]['candidate'] = null
  if (p.candidate !== null && p.candidate !== undefined) {
    const c = p.candidate
    if (!isObj(c) || !str(c.id) || !str(c.version) || !str(c.cedar)) return null
    candidate = { id: c.id, version: c.version, cedar: c.cedar }
  }
  return { tenant: p.tenant, active, candidate }
}

/** The part a snapshot and a summary share (seq, agents, policies, generatedAt), validated whole; null when malformed. */
function parseSummaryFields(v: Record<string, unknown>): FeedSummary | null {
  if (!num(v.seq) || !Array.isArray(v.agents) || !Array.isArray(v.policies)) return null
  const agents: AgentState[] = []
  for (const a of v.agents) {
    const p = parseAgentEntry(a)
    if (!p) return null
    agents.push(p)
  }
  const policies: FeedSummary['policies'] = []
  for (const p of v.policies) {
    const ps = isObj(p) ? parsePolicyState(p) : null
    if (!ps) return null
    policies.push(ps)
  }
  return { seq: v.seq, agents, policies, generatedAt: num(v.generatedAt) ? v.generatedAt : 0 }
}

/** Validates a snapshot; null when malformed. */
export function parseSnapshot(v: unknown): FeedSnapshot | null {
  if (!isObj(v) || !Array.isArray(v.revocations)) return null
  const fields = parseSummaryFields(v)
  if (!fields) return null
  const revocations: Revocation[] = []
  for (const r of v.revocations) {
    const p = parseRevocation(r)
    if (!p) return null
    revocations.push(p)
  }
  // Keys are advisory (a JWKS refetch): malformed ones are dropped, not fatal.
  const keys = v.keys === undefined ? null : parseKeysState(v.keys)
  return { ...fields, revocations, ...(keys ? { keys } : {}) }
}

/** `{"summary": …}` of `GET /admin/v1/feed/snapshot?summary=true` (FeedSummary), validated whole; null when malformed. */
export function parseSummary(v: unknown): FeedSummary | null {
  return isObj(v) && isObj(v.summary) ? parseSummaryFields(v.summary) : null
}
