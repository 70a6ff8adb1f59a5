import type { FeedLog } from '../feed/log.js'
import { agentTuple, revocationTuple, type AgentState, type FeedSnapshot, type FeedSummary, type KeysState, type PolicyState } from '../feed/events.js'
import type { PolicyBundle, Revocation } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'

/** Entries per snapshot page: about 180 KB of revocations or 100 KB of agents. */
export const SNAPSHOT_PAGE_ENTRIES = 1000

/**
 * Lets I/O and other requests run between pages. SQLite answers
 * synchronously, so without it the whole read is one chain of microtasks:
 * no page leaves the socket (HTTP uncorks on nextTick) and no other request
 * is served until the last one is read.
 */
const yieldToIo = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Opening record of a snapshot: what is small and read first. */
export interface SnapshotBegin {
  generatedAt: number
  policies: PolicyState[]
  keys?: KeysState
}

/**
 * Reads the feed state a (re)connecting gateway loads first, page by page:
 * the opening record (every tenant's active and candidate bundle, the
 * published key ids), then live revocations in seq order and every agent's
 * capability hash, SNAPSHOT_PAGE_ENTRIES at a time (keyset pages: no whole
 * table in memory, no whole agent rows). Resolves `seq`, the highest
 * revocation seq included, read before the entries so that every entry up
 * to it is included and later events deduplicate by seq.
 */
export async function readFeedSnapshot(
  deps: ControlPlaneDeps,
  sink: {
    begin(b: SnapshotBegin): void
    /** Without it no revocation is read (a FeedSummary): `seq` is then the highest assigned. */
    revocations?(page: Revocation[]): void | Promise<void>
    agents(page: AgentState[]): void | Promise<void>
  },
): Promise<{ seq: number; revocations: number; agents: number }> {
  const now = deps.clock.now()
  const lastSeq = await deps.store.revocations.lastSeq()
  const [tenants, active, candidates] = await Promise.all([deps.store.tenants.list(), deps.store.policies.listActive(), deps.store.policies.listCandidates()])
  const policies: PolicyState[] = []
  const activeByTenant = new Map(active.map((b) => [b.tenant, b]))
  const candidateByTenant = new Map<string, PolicyBundle>()
  // A tenant's oldest candidate, as its bundle list finds it first.
  for (const b of candidates) if (!candidateByTenant.has(b.tenant)) candidateByTenant.set(b.tenant, b)
  for (const t of tenants) {
    const a = activeByTenant.get(t.id)
    const c = candidateByTenant.get(t.id)
    if (!a && !c) continue
    policies.push({
      tenant: t.id,
      active: a ? { id: a.id, version: a.version, cedar: a.cedar, mode: a.mode } : null,
      candidate: c ? { id: c.id, version: c.version, cedar: c.cedar } : null,
    })
  }
  const keys = keysState(deps)
  sink.begin({ generatedAt: now, policies, ...(keys ? { keys } : {}) })
  let seq = lastSeq
  let revocations = 0
  for (let after = 0; sink.revocations !== undefined; ) {
    const page = await deps.store.revocations.listActivePage(now, after, SNAPSHOT_PAGE_ENTRIES)
    if (page.length === 0) break
    after = page[page.length - 1]!.seq
    if (after > seq) seq = after
    revocations += page.length
    await sink.revocations(page)
    await yieldToIo()
  }
  let agents = 0
  for (let after: { tenant: string; agentId: string } | null = null; ; ) {
    const page: AgentState[] = await deps.store.agents.listHashesPage(after, SNAPSHOT_PAGE_ENTRIES)
    if (page.length === 0) break
    after = page[page.length - 1]! as { tenant: string; agentId: string }
    agents += page.length
    await sink.agents(page)
    await yieldToIo()
  }
  return { seq, revocations, agents }
}

/** The snapshot read into memory; without its revocations when `withRevocations` is false (a summary). */
async function collectFeedSnapshot(deps: ControlPlaneDeps, withRevocations: boolean) {
  let begin: SnapshotBegin | undefined
  const revocations: Revocation[] = []
  const agents: AgentState[] = []
  const { seq } = await readFeedSnapshot(deps, {
    begin: (b) => {
      begin = b
    },
    ...(withRevocations
      ? {
          revocations: (p: Revocation[]) => {
            for (const r of p) revocations.push(r)
          },
        }
      : {}),
    agents: (p) => {
      for (const a of p) agents.push(a)
    },
  })
  return { seq, revocations, agents, begin: begin! }
}

/** The whole snapshot in one object (`GET /admin/v1/feed/snapshot`, the unpaged SSE stream). */
export async function buildFeedSnapshot(deps: ControlPlaneDeps): Promise<FeedSnapshot> {
  const { seq, revocations, agents, begin } = await collectFeedSnapshot(deps, true)
  return { seq, revocations, agents, policies: begin.policies, generatedAt: begin.generatedAt, ...(begin.keys ? { keys: begin.keys } : {}) }
}

/**
 * The snapshot without its revocations (FeedSummary), for a gateway's
 * periodic check: with 100,000 revocations in force, each check had read,
 * sent and parsed them all only to compare one seq.
 */
export async function buildFeedSummary(deps: ControlPlaneDeps): Promise<FeedSummary> {
  const { seq, agents, begin } = await collectFeedSnapshot(deps, false)
  return { seq, agents, policies: begin.policies, generatedAt: begin.generatedAt }
}

/** The published kids and the signing one, as the `keys` feed event carries them. */
function keysState(deps: ControlPlaneDeps): KeysState | undefined {
  try {
    return {
      current: deps.keys.currentKid(),
      kids: deps.keys
        .list()
        .filter((k) => k.state !== 'retired')
        .map((k) => k.kid),
      revoked: [],
    }
  } catch {
    return undefined // no signing key yet: gateways find keys on their own
  }
}

/** How a snapshot's page entries are written: objects (`?v=2`) or tuples (`?v=3`, src/control-plane/feed/events.ts). */
export type SnapshotFormat = 'objects' | 'tuples'

/**
 * A feed snapshot being read page by page and serialized once, shared by
 * every subscriber that loads it (issue 14: 100,000 revocations are about
 * 18 MB): subscribers write the pages already read while the rest is read,
 * each at its own socket's pace.
 */
export class PagedSnapshot {
  /** Feed-log position read right before the store (-1 until the read starts): events after it are replayed on top. */
  pos = -1
  /** JSON of the opening record (SnapshotBegin); set before the first page. */
  begin = ''
  /** Pages read so far, in order: JSON arrays of Revocation, then of AgentState. */
  readonly pages: Array<{ kind: 'revocations' | 'agents'; json: string }> = []
  /** JSON of the closing record `{seq, revocations, agents}`, once every page is read. */
  end: string | undefined
  failed: Error | undefined
  bytes = 0
  private waiters: Array<() => void> = []

  constructor(
    readonly createdAt: number,
    readonly format: SnapshotFormat,
  ) {}

  /** Resolves once there is more than `have` pages, or the end, or a failure. */
  more(have: number): Promise<void> {
    if (this.pages.length > have || this.end !== undefined || this.failed) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Resolves once the opening record is there (so `pos` is set), or the read failed. */
  async opened(): Promise<void> {
    while (this.begin === '' && !this.failed && this.end === undefined) await this.more(this.pages.length)
  }

  notify(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** How long fresh() gathers requests into one read of the store. */
const GATHER_MS = 20

/**
 * Reads paged snapshots and shares them:
 * - get() (the SSE stream, which replays the feed log after the snapshot's
 *   position) reuses the last snapshot for `maxAgeMs` while the log still
 *   holds every event after it: a fleet of gateways reconnecting at once
 *   costs one read of the store;
 * - fresh() (the NDJSON snapshot, which a Redis gateway merges with what it
 *   heard on Redis since it subscribed, so the read must start after the
 *   request came) gathers the requests of the next 20 ms into one read that
 *   starts after all of them.
 */
export class SnapshotCache {
  private readonly current = new Map<SnapshotFormat, PagedSnapshot>()
  private readonly gathering = new Map<SnapshotFormat, PagedSnapshot>()
  private readonly timers = new Map<SnapshotFormat, NodeJS.Timeout>()
  /** Snapshots read (tests, metrics). */
  builds = 0

  constructor(
    private readonly deps: ControlPlaneDeps,
    private readonly log: FeedLog | null,
    private readonly maxAgeMs = 5_000,
  ) {}

  get(format: SnapshotFormat = 'objects'): PagedSnapshot {
    const c = this.current.get(format)
    if (c && !c.failed && performance.now() - c.createdAt < this.maxAgeMs && (c.pos === -1 || this.log === null || c.pos >= this.log.first - 1)) return c
    const snap = new PagedSnapshot(performance.now(), format)
    this.start(snap)
    return snap
  }

  fresh(format: SnapshotFormat = 'objects'): PagedSnapshot {
    const g = this.gathering.get(format)
    if (g) return g
    const snap = new PagedSnapshot(performance.now(), format)
    this.gathering.set(format, snap)
    this.current.set(format, snap)
    setTimeout(() => {
      this.gathering.delete(format)
      this.start(snap)
    }, GATHER_MS)
    return snap
  }

  private start(snap: PagedSnapshot): void {
    const format = snap.format
    this.current.set(format, snap)
    this.builds++
    // Read before the store, so every event the store does not show yet is in the log after it.
    snap.pos = this.log?.last ?? 0
    const push = (kind: 'revocations' | 'agents', json: string): void => {
      snap.pages.push({ kind, json })
      snap.bytes += json.length
      snap.notify()
    }
    const tuples = format === 'tuples'
    readFeedSnapshot(this.deps, {
      begin: (b) => {
        snap.begin = JSON.stringify(b)
        snap.notify()
      },
      revocations: (p) => push('revocations', JSON.stringify(tuples ? p.map(revocationTuple) : p)),
      agents: (p) => push('agents', JSON.stringify(tuples ? p.map(agentTuple) : p)),
    }).then(
      (r) => {
        snap.end = JSON.stringify(r)
        snap.notify()
      },
      (err: unknown) => {
        snap.failed = err instanceof Error ? err : new Error(String(err))
        this.deps.logger.error({ err }, 'feed snapshot read failed')
        snap.notify()
      },
    )
    const old = this.timers.get(format)
    if (old) clearTimeout(old)
    // Let the pages go once nobody can reuse them (subscribers still writing keep their own reference).
    const timer = setTimeout(() => {
      if (this.current.get(format) === snap) this.current.delete(format)
    }, this.maxAgeMs)
    timer.unref()
    this.timers.set(format, timer)
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    this.current.clear()
  }
}
