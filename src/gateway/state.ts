import type { Clock } from '../lib/clock.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { DenyList } from '../store/deny-list.js'
import type { Revocation } from '../store/types.js'
import type { AgentState, FeedEvent, FeedSnapshot, FeedSummary, KeysState, PolicyState } from '../control-plane/index.js'
import type { PolicyCompiler, PolicyEngine, PolicyRequest, PolicyResult } from '../policy/types.js'

/** A tenant's compiled policy, swapped as a whole (a decision never sees a half-loaded bundle). */
export interface TenantPolicy {
  readonly bundleId: string
  readonly version: string
  readonly mode: 'enforce' | 'shadow'
  readonly engine: PolicyEngine
  readonly candidate: { readonly version: string; readonly engine: PolicyEngine } | null
  /** Sources, to skip recompiling an unchanged bundle after a resnapshot. */
  readonly source: string
  readonly candidateSource: string | null
}

// Separator for composite keys: a NUL cannot occur in a tenant or agent id.
const SEP = '\u0000'

/** Map key for an agent. */
export function agentKey(tenant: string, agentId: string): string {
  return tenant + SEP + agentId
}

/** Used when a tenant's first bundle fails to compile: there is nothing known-good to fall back on, so deny. */
class UncompilableBundleEngine implements PolicyEngine {
  constructor(private readonly version: string) {}
  evaluate(_request: PolicyRequest): PolicyResult {
    return {
      decision: 'deny',
      reasons: ["policy:unavailable (the tenant's policy bundle failed to compile on this gateway)"],
      policyIds: [],
      obligations: [],
      risk: 'normal',
      policyVersion: this.version,
      mode: 'enforce',
    }
  }
}

export interface GatewayStateOptions {
  denyList: DenyList
  compiler: PolicyCompiler
  logger: Logger
  metrics: Metrics
  clock: Clock
  /** Called after revocations were applied, with the highest applied seq (acks). */
  onRevocationsApplied?: (seq: number) => void
  /** Called with each agent's new capability hash (manifest prefetch). */
  onAgentHash?: (hash: string) => void
  /** Called when the feed announces the key set (a `keys` event, a snapshot's keys): JWKS refetch. */
  onKeys?: (keys: KeysState) => void
}

/**
 * A snapshot whose entries were already indexed as its pages arrived (a
 * deny list and an agent map of its own, taken over whole by applySnapshot).
 */
export interface PreparedSnapshot extends FeedSnapshot {
  prepared: { denyList: DenyList; agents: Map<string, string | null> }
}

/**
 * What the feed tells a gateway: the deny list (held by `denyList`), each
 * agent's current capability hash, each tenant's compiled policy, and
 * whether the feed is connected. Feed transports (SSE, Redis) only call
 * `applySnapshot`, `applyEvent`, `feedConnected` and `feedDisconnected`.
 */
export class GatewayState {
  private agents = new Map<string, string | null>()
  private readonly policies = new Map<string, TenantPolicy>()
  private loaded = false
  private connected = false
  private disconnectedAt: number
  private lastHeardAt: number
  /** When a full snapshot was last applied (epoch ms), also while the feed is down (Redis feed polling the control plane). */
  private snapshotAt = 0

  constructor(private readonly opts: GatewayStateOptions) {
    this.disconnectedAt = opts.clock.now()
    this.lastHeardAt = this.disconnectedAt
  }

  /** True once a full snapshot (revocations, agents, policies) was applied. */
  get snapshotLoaded(): boolean {
    return this.loaded
  }

  /** Highest revocation seq applied. */
  get appliedSeq(): number {
    return this.opts.denyList.lastSeq
  }

  get feedIsConnected(): boolean {
    return this.connected
  }

  /**
   * The agent's current capability hash: a string, null when the agent was
   * deleted, undefined when the feed never mentioned it.
   */
  agentHash(key: string): string | null | undefined {
    return this.agents.get(key)
  }

  /** The tenant's compiled policy, or undefined (strict engine only). */
  policyFor(tenant: string): TenantPolicy | undefined {
    return this.policies.get(tenant)
  }

  /**
   * True when the deny list may be older than `staleMs`: the feed has been
   * down that long and no full snapshot was applied meanwhile (a Redis feed
   * polls the control plane's snapshot while Redis is down, which keeps the
   * list fresh). High-risk actions then fail closed.
   */
  feedStale(nowMs: number, staleMs: number): boolean {
    return !this.connected && nowMs - Math.max(this.disconnectedAt, this.snapshotAt) > staleMs
  }

  /** Seconds since the feed was last heard from (0 while connected). */
  lagSeconds(nowMs: number): number {
    return this.connected ? 0 : Math.max(0, (nowMs - this.lastHeardAt) / 1000)
  }

  /**
   * True when a snapshot says something this state does not hold: a newer
   * revocation seq, another capability hash for some agent, or another
   * active/candidate bundle for some tenant (a missed feed event).
   */
  differsFrom(snapshot: FeedSummary): boolean {
    if (snapshot.seq > this.opts.denyList.lastSeq) return true
    if (snapshot.agents.length !== this.agents.size) return true
    for (const a of snapshot.agents) if (this.agents.get(agentKey(a.tenant, a.agentId)) !== a.capabilityHash) return true
    let withActive = 0
    for (const p of snapshot.policies) {
      const held = this.policies.get(p.tenant)
      if (!p.active) {
        if (held) return true
        continue
      }
      withActive++
      if (!held || held.bundleId !== p.active.id || held.mode !== p.active.mode || held.source !== p.active.cedar) return true
      if ((held.candidateSource ?? null) !== (p.candidate?.cedar ?? null)) return true
    }
    return withActive !== this.policies.size
  }

  feedConnected(): void {
    if (!this.connected) this.opts.logger.info('feed connected')
    this.connected = true
    this.lastHeardAt = this.opts.clock.now()
  }

  feedDisconnected(reason: string): void {
    if (this.connected) {
      this.connected = false
      this.disconnectedAt = this.opts.clock.now()
      this.opts.logger.warn({ reason }, 'feed disconnected; keeping the last deny list')
    }
  }

  /** Any sign of life from the feed (events, pings). */
  heard(): void {
    this.lastHeardAt = this.opts.clock.now()
  }

  /**
   * Replaces everything with a full snapshot. `extraRevocations` (the Redis
   * hash) are merged by seq. Then `pending` events that arrived while the
   * snapshot loaded are applied on top.
   */
  applySnapshot(snapshot: FeedSnapshot | PreparedSnapshot, extraRevocations: Revocation[] = [], pending: FeedEvent[] = []): void {
    const prepared = 'prepared' in snapshot ? snapshot.prepared : undefined
    if (prepared) {
      // Indexed while it loaded (src/gateway/feed/parse.ts SnapshotAssembler): only the extras are left to add.
      let lastSeq = snapshot.seq
      for (const r of extraRevocations) {
        prepared.denyList.apply(r)
        if (r.seq > lastSeq) lastSeq = r.seq
      }
      this.opts.denyList.replaceWith(prepared.denyList, lastSeq)
      this.agents = prepared.agents
    } else {
      const revocations = mergeBySeq(snapshot.revocations, extraRevocations)
      let lastSeq = snapshot.seq
      for (const r of revocations) if (r.seq > lastSeq) lastSeq = r.seq
      this.opts.denyList.reset(revocations, lastSeq)
      const agents = new Map<string, string | null>()
      for (const a of snapshot.agents) agents.set(agentKey(a.tenant, a.agentId), a.capabilityHash)
      this.agents = agents
    }
    this.opts.denyList.prune(this.opts.clock.now())
    const seen = new Set<string>()
    for (const p of snapshot.policies) {
      seen.add(p.tenant)
      this.applyPolicy(p)
    }
    for (const tenant of [...this.policies.keys()]) if (!seen.has(tenant)) this.policies.delete(tenant)
    this.loaded = true
    this.snapshotAt = this.opts.clock.now()
    if (snapshot.keys) this.opts.onKeys?.(snapshot.keys)
    for (const e of pending) this.applyEvent(e, false)
    this.revocationsChanged()
  }

  /** Revocations only (Redis hash while the control plane is unreachable); agents and policies stay as they were. */
  applyRevocationList(revocations: Revocation[], pending: FeedEvent[] = []): void {
    let lastSeq = this.opts.denyList.lastSeq
    for (const r of revocations) if (r.seq > lastSeq) lastSeq = r.seq
    // Merge rather than reset: what we already hold stays enforced.
    for (const r of revocations) this.opts.denyList.apply(r)
    for (const e of pending) this.applyEvent(e, false)
    this.revocationsChanged()
  }

  /** Applies one feed event. */
  applyEvent(event: FeedEvent, notify = true): void {
    this.lastHeardAt = this.opts.clock.now()
    switch (event.kind) {
      case 'revocation':
        this.opts.denyList.apply(event.revocation)
        this.opts.metrics.revocations.inc({ type: event.revocation.type })
        if (notify) this.revocationsChanged()
        break
      case 'revocation_lifted':
        this.opts.denyList.lift(event.revocation.seq, event.seq)
        if (notify) this.revocationsChanged()
        break
      case 'agent':
        this.applyAgent(event.agent)
        break
      case 'policy':
        this.applyPolicy(event.policy)
        break
      case 'keys':
        this.opts.onKeys?.(event.keys)
        break
    }
  }

  /** Drops deny-list entries no token can still match. */
  prune(): void {
    this.opts.denyList.prune(this.opts.clock.now())
    this.opts.metrics.denyListSize.set(this.opts.denyList.size)
  }

  private revocationsChanged(): void {
    this.opts.metrics.denyListSize.set(this.opts.denyList.size)
    this.opts.metrics.feedSeq.set(this.opts.denyList.lastSeq)
    this.opts.onRevocationsApplied?.(this.opts.denyList.lastSeq)
  }

  private applyAgent(a: AgentState): void {
    const agents = this.agents
    agents.set(agentKey(a.tenant, a.agentId), a.capabilityHash)
    if (a.capabilityHash) this.opts.onAgentHash?.(a.capabilityHash)
  }

  private applyPolicy(p: PolicyState): void {
    if (!p.active) {
      this.policies.delete(p.tenant)
      return
    }
    const prev = this.policies.get(p.tenant)
    const active = p.active
    const candidate = p.candidate
    if (prev && prev.bundleId === active.id && prev.mode === active.mode && prev.source === active.cedar && prev.candidateSource === (candidate?.cedar ?? null))
      return
    let engine: PolicyEngine
    try {
      engine =
        prev && prev.bundleId === active.id && prev.source === active.cedar
          ? prev.engine
          : this.opts.compiler.compile({ id: active.id, tenant: p.tenant, version: active.version, cedar: active.cedar, mode: active.mode })
    } catch (err) {
      this.opts.logger.error(
        { err, tenant: p.tenant, bundle: active.id, version: active.version },
        prev
          ? 'policy bundle failed to compile; keeping the previous one'
          : 'policy bundle failed to compile; denying for this tenant until a good one arrives',
      )
      if (!prev) {
        this.policies.set(p.tenant, {
          bundleId: active.id,
          version: active.version,
          mode: 'enforce',
          engine: new UncompilableBundleEngine(active.version),
          candidate: null,
          source: active.cedar,
          candidateSource: null,
        })
      }
      return
    }
    let cand: TenantPolicy['candidate'] = null
    if (candidate) {
      try {
        cand =
          prev?.candidate && prev.candidateSource === candidate.cedar
            ? prev.candidate
            : {
                version: candidate.version,
                engine: this.opts.compiler.compile({ id: candidate.id, tenant: p.tenant, version: candidate.version, cedar: candidate.cedar, mode: 'shadow' }),
              }
      } catch (err) {
        this.opts.logger.error({ err, tenant: p.tenant, bundle: candidate.id }, 'candidate policy bundle failed to compile; not evaluating it')
      }
    }
    // One assignment: readers see either the old policy or the new one, whole.
    this.policies.set(p.tenant, {
      bundleId: active.id,
      version: active.version,
      mode: active.mode,
      engine,
      candidate: cand,
      source: active.cedar,
      candidateSource: cand ? candidate!.cedar : null,
    })
  }
}

function mergeBySeq(a: Revocation[], b: Revocation[]): Revocation[] {
  if (b.length === 0) return a
  const bySeq = new Map<number, Revocation>()
  for (const r of a) bySeq.set(r.seq, r)
  for (const r of b) if (!bySeq.has(r.seq)) bySeq.set(r.seq, r)
  return [...bySeq.values()].sort((x, y) => x.seq - y.seq)
}
