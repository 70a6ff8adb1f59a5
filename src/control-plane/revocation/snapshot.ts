import type { FeedLog } from '../../feed/log.js'
import type { FeedSnapshot, KeysState, PolicyState } from '../../feed/types.js'
import type { ControlPlaneDeps } from '../deps.js'

/**
 * The full feed state a (re)connecting gateway loads first: live
 * revocations, every agent's current capability hash, every tenant's active
 * and candidate policy bundle, and the published key ids. `seq` is read
 * before the entries, so every entry up to it is included and later events
 * are deduplicated by seq.
 */
export async function buildFeedSnapshot(deps: ControlPlaneDeps): Promise<FeedSnapshot> {
  const now = deps.clock.now()
  const lastSeq = await deps.store.revocations.lastSeq()
  const [revocations, agents, tenants, active] = await Promise.all([
    deps.store.revocations.listActive(now),
    deps.store.agents.listAll(),
    deps.store.tenants.list(),
    deps.store.policies.listActive(),
  ])
  const policies: PolicyState[] = []
  const activeByTenant = new Map(active.map((b) => [b.tenant, b]))
  for (const t of tenants) {
    const a = activeByTenant.get(t.id)
    // Candidates are rare; only tenants that have bundles at all are listed.
    const bundles = await deps.store.policies.list(t.id)
    const c = bundles.find((b) => b.status === 'candidate')
    if (!a && !c) continue
    policies.push({
      tenant: t.id,
      active: a ? { id: a.id, version: a.version, cedar: a.cedar, mode: a.mode } : null,
      candidate: c ? { id: c.id, version: c.version, cedar: c.cedar } : null,
    })
  }
  const seq = revocations.reduce((m, r) => Math.max(m, r.seq), lastSeq)
  const keys = keysState(deps)
  return {
    seq,
    revocations,
    agents: agents.map((a) => ({ tenant: a.tenant, agentId: a.agentId, capabilityHash: a.capabilityHash })),
    policies,
    generatedAt: now,
    ...(keys ? { keys } : {}),
  }
}

/** The published kids and the signing one, as the `keys` feed event carries them. */
function keysState(deps: ControlPlaneDeps): KeysState | undefined {
  try {
    return { current: deps.keys.currentKid(), kids: deps.keys.list().filter((k) => k.state !== 'retired').map((k) => k.kid), revoked: [] }
  } catch {
    return undefined // no signing key yet: gateways find keys on their own
  }
}

/** Entries per snapshot page: about 180 KB of revocations or 100 KB of agents. */
export const SNAPSHOT_PAGE_ENTRIES = 1000

/**
 * A feed snapshot serialized once into pages, shared by every subscriber
 * that loads it (issue 14: 100,000 revocations are 18 MB; one copy, written
 * to each subscriber page by page as its socket drains).
 */
export interface PagedSnapshot {
  /** Feed-log position read before the store: events after it are replayed on top. */
  readonly pos: number
  readonly seq: number
  /** JSON of the opening record: seq, generatedAt, policies, keys, and the entry counts. */
  readonly begin: string
  /** JSON arrays of Revocation, SNAPSHOT_PAGE_ENTRIES each. */
  readonly revocationPages: readonly string[]
  /** JSON arrays of AgentState. */
  readonly agentPages: readonly string[]
  readonly revocations: number
  readonly agents: number
  /** Total JSON characters of the pages. */
  readonly bytes: number
}

function pagesOf(items: readonly unknown[], size: number): string[] {
  const out: string[] = []
  for (let i = 0; i < items.length; i += size) out.push(JSON.stringify(items.slice(i, i + size)))
  return out
}

/**
 * Builds paged snapshots, one at a time, and reuses the last one for
 * `maxAgeMs` while the feed log still holds every event after it: a fleet of
 * gateways reconnecting at once costs one read of the store.
 */
export class SnapshotCache {
  private building: Promise<PagedSnapshot> | undefined
  private cached: { snap: PagedSnapshot; at: number } | undefined
  private timer: NodeJS.Timeout | undefined
  /** Snapshots built (for tests and metrics). */
  builds = 0

  constructor(private readonly deps: ControlPlaneDeps, private readonly log: FeedLog | null, private readonly maxAgeMs = 5_000) {}

  get(): Promise<PagedSnapshot> {
    const c = this.cached
    if (c && performance.now() - c.at < this.maxAgeMs && (this.log === null || c.snap.pos >= this.log.first - 1)) return Promise.resolve(c.snap)
    this.building ??= this.build().finally(() => { this.building = undefined })
    return this.building
  }

  private async build(): Promise<PagedSnapshot> {
    // Read before the store, so every event the store does not show yet is in the log after it.
    const pos = this.log?.last ?? 0
    const s = await buildFeedSnapshot(this.deps)
    const revocationPages = pagesOf(s.revocations, SNAPSHOT_PAGE_ENTRIES)
    const agentPages = pagesOf(s.agents, SNAPSHOT_PAGE_ENTRIES)
    const snap: PagedSnapshot = {
      pos,
      seq: s.seq,
      begin: JSON.stringify({ seq: s.seq, generatedAt: s.generatedAt, policies: s.policies, ...(s.keys ? { keys: s.keys } : {}), revocations: s.revocations.length, agents: s.agents.length }),
      revocationPages,
      agentPages,
      revocations: s.revocations.length,
      agents: s.agents.length,
      bytes: [...revocationPages, ...agentPages].reduce((n, p) => n + p.length, 0),
    }
    this.builds++
    this.cached = { snap, at: performance.now() }
    if (this.timer) clearTimeout(this.timer)
    // Let the pages go once nobody can reuse them.
    this.timer = setTimeout(() => { this.cached = undefined }, this.maxAgeMs)
    this.timer.unref()
    return snap
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.cached = undefined
  }
}
