import type { DenyList, TokenFacts } from '../deny-list.js'
import type { Revocation } from '../types.js'

// Separator for composite keys: a NUL cannot occur in a tenant, agent or client id.
const SEP = '\u0000'

/**
 * The revocation entries a gateway enforces (docs/reference.md "Revocation"), one
 * hash map per entry type so a check costs a handful of O(1) lookups:
 * jti, agent (tenant + agent), client (tenant + client), tenant, kid, and
 * `issued_before` per tenant, per tenant + agent, and (without a tenant)
 * for all (a token is refused when its `iat` is before T, epoch seconds).
 *
 * `seq` makes apply idempotent; the index keeps, per key, the entry that
 * lives longest (or, for issued_before, the latest T) so pruning one of two
 * entries on the same key never un-revokes a token.
 */
export class MemoryDenyList implements DenyList {
  private bySeq = new Map<number, Revocation>()
  private jti = new Map<string, Revocation>()
  private agent = new Map<string, Revocation>()
  private client = new Map<string, Revocation>()
  private tenant = new Map<string, Revocation>()
  private kid = new Map<string, Revocation>()
  private issuedBeforeTenant = new Map<string, { t: number; r: Revocation }>()
  private issuedBeforeAgent = new Map<string, { t: number; r: Revocation }>()
  /** issued_before without a tenant (a global admin's "everything minted before T"). */
  private issuedBeforeAll: { t: number; r: Revocation } | undefined
  private last = 0

  get lastSeq(): number {
    return this.last
  }

  get size(): number {
    return this.bySeq.size
  }

  apply(r: Revocation): void {
    if (this.bySeq.has(r.seq)) return
    this.bySeq.set(r.seq, r)
    if (r.seq > this.last) this.last = r.seq
    this.index(r)
  }

  lift(seq: number, liftSeq: number): void {
    if (liftSeq > this.last) this.last = liftSeq
    const r = this.bySeq.get(seq)
    if (!r) return
    this.bySeq.delete(seq)
    const keyed =
      r.type === 'tenant'
        ? { map: this.tenant, key: r.value }
        : (r.type === 'agent' || r.type === 'client') && r.tenant !== null
          ? { map: r.type === 'agent' ? this.agent : this.client, key: r.tenant + SEP + r.value }
          : null
    if (keyed) {
      // Only agent, client and tenant entries are lifted: re-index just that key (one pass, no rebuild), so another entry on it takes over.
      if (keyed.map.get(keyed.key) !== r) return
      keyed.map.delete(keyed.key)
      for (const e of this.bySeq.values()) if (e.type === r.type && e.tenant === r.tenant && e.value === r.value) this.index(e)
      return
    }
    this.clearIndexes()
    for (const e of this.bySeq.values()) this.index(e)
  }

  reset(entries: Revocation[], lastSeq: number): void {
    this.bySeq.clear()
    this.clearIndexes()
    this.last = lastSeq
    for (const r of entries) this.apply(r)
  }

  replaceWith(built: DenyList, lastSeq: number): void {
    if (!(built instanceof MemoryDenyList)) throw new TypeError('replaceWith takes a MemoryDenyList')
    this.bySeq = built.bySeq
    this.jti = built.jti
    this.agent = built.agent
    this.client = built.client
    this.tenant = built.tenant
    this.kid = built.kid
    this.issuedBeforeTenant = built.issuedBeforeTenant
    this.issuedBeforeAgent = built.issuedBeforeAgent
    this.issuedBeforeAll = built.issuedBeforeAll
    this.last = Math.max(lastSeq, built.last)
    // Spent: new maps, not cleared ones (these are now this list's).
    built.bySeq = new Map()
    built.jti = new Map()
    built.agent = new Map()
    built.client = new Map()
    built.tenant = new Map()
    built.kid = new Map()
    built.issuedBeforeTenant = new Map()
    built.issuedBeforeAgent = new Map()
    built.issuedBeforeAll = undefined
  }

  match(t: TokenFacts): Revocation | null {
    // Cheapest and most specific first; every lookup is one Map#get.
    if (this.bySeq.size === 0) return null
    const tenantKey = t.tenant + SEP
    return (
      this.jti.get(t.jti) ??
      this.kid.get(t.kid) ??
      this.tenant.get(t.tenant) ??
      this.agent.get(tenantKey + t.agentId) ??
      this.client.get(tenantKey + t.clientId) ??
      before(this.issuedBeforeTenant.get(t.tenant), t.iat) ??
      before(this.issuedBeforeAgent.get(tenantKey + t.agentId), t.iat) ??
      before(this.issuedBeforeAll, t.iat)
    )
  }

  prune(now: number): void {
    let removed = false
    for (const [seq, r] of this.bySeq) {
      if (r.expiresAt <= now) {
        this.bySeq.delete(seq)
        removed = true
      }
    }
    if (!removed) return
    // Rebuild: rare (runs on a timer) and keeps apply/match simple and O(1).
    this.clearIndexes()
    for (const r of this.bySeq.values()) this.index(r)
  }

  private clearIndexes(): void {
    this.jti.clear()
    this.agent.clear()
    this.client.clear()
    this.tenant.clear()
    this.kid.clear()
    this.issuedBeforeTenant.clear()
    this.issuedBeforeAgent.clear()
    this.issuedBeforeAll = undefined
  }

  private index(r: Revocation): void {
    switch (r.type) {
      case 'jti':
        keepLonger(this.jti, r.value, r)
        break
      case 'kid':
        keepLonger(this.kid, r.value, r)
        break
      case 'tenant':
        keepLonger(this.tenant, r.value, r)
        break
      case 'agent':
        // agent/client entries need a tenant (the admin API requires one); without it there is nothing to scope, so the entry is held but matches nothing.
        if (r.tenant !== null) keepLonger(this.agent, r.tenant + SEP + r.value, r)
        break
      case 'client':
        if (r.tenant !== null) keepLonger(this.client, r.tenant + SEP + r.value, r)
        break
      case 'issued_before': {
        const t = Number(r.value)
        if (!Number.isFinite(t)) break
        if (r.tenant === null) {
          if (!this.issuedBeforeAll || t > this.issuedBeforeAll.t) this.issuedBeforeAll = { t, r }
          break
        }
        const map = r.agentId ? this.issuedBeforeAgent : this.issuedBeforeTenant
        const key = r.agentId ? r.tenant + SEP + r.agentId : r.tenant
        const held = map.get(key)
        if (!held || t > held.t) map.set(key, { t, r })
        break
      }
    }
  }
}

function keepLonger(map: Map<string, Revocation>, key: string, r: Revocation): void {
  const held = map.get(key)
  if (!held || r.expiresAt > held.expiresAt) map.set(key, r)
}

function before(entry: { t: number; r: Revocation } | undefined, iat: number): Revocation | null {
  return entry !== undefined && iat < entry.t ? entry.r : null
}
