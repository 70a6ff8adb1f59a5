/**
 * Short-lived caches of what the token endpoint looks up on every request
 * (agents, tenants, bootstrap credentials, active policy versions), so the
 * issuance path does one store round trip at most. Admin changes invalidate
 * at once in this process (the admin routes call `invalidate*`, and agent /
 * policy feed events arrive from every control plane when Redis carries the
 * feed); a short TTL bounds staleness between control planes otherwise.
 */
import { LRUCache } from 'lru-cache'
import type { ControlPlaneDeps } from '../deps.js'
import type { Agent, BootstrapCredential, Tenant } from '../../store/types.js'
import { isFeedHub } from '../feed/publisher-sse.js'
import type { FeedEvent } from '../feed/events.js'
import { StandingRevocations } from '../revocation/standing.js'

export interface DirectoryOptions {
  /** How long a looked-up record is trusted (ms). */
  ttlMs?: number
  /** How often active policy versions are reloaded from the store (ms). */
  policyRefreshMs?: number
  /** How often the revocation sequence is polled for changes the feed did not bring (ms). */
  revocationRefreshMs?: number
  max?: number
}

type Boxed<T> = { value: T }

export class Directory {
  private readonly agents: LRUCache<string, Boxed<Agent | null>>
  private readonly tenants: LRUCache<string, Boxed<Tenant | null>>
  private readonly credentials: LRUCache<string, BootstrapCredential>
  private policyVersions = new Map<string, string>()
  private policyLoaded: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private revocationTimer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  /** The agent, client and tenant revocations in force (issuance is refused for them). */
  readonly standing: StandingRevocations

  constructor(
    private readonly deps: ControlPlaneDeps,
    private readonly opts: DirectoryOptions = {},
  ) {
    const ttl = opts.ttlMs ?? 5000
    const max = opts.max ?? 50_000
    // Negative results are cached too (bounded by max), so unknown ids cost one lookup per TTL.
    this.agents = new LRUCache({ max, ttl })
    this.tenants = new LRUCache({ max: 10_000, ttl })
    this.credentials = new LRUCache({ max, ttl })
    this.standing = new StandingRevocations(deps.store.revocations, () => deps.clock.now())
  }

  /** Loads policy versions and standing revocations, follows the feed and refreshes periodically. */
  async start(): Promise<void> {
    await this.reloadPolicies()
    await this.standing.ready()
    if (isFeedHub(this.deps.feed)) this.unsubscribe = this.deps.feed.subscribe((e) => this.onFeedEvent(e))
    this.timer = setInterval(() => {
      this.reloadPolicies().catch((err: unknown) => this.deps.logger.warn({ err }, 'policy version refresh failed'))
    }, this.opts.policyRefreshMs ?? 5000)
    this.timer.unref()
    // A cheap poll (one sequence read): without Redis between control planes, or after a lost pub/sub message,
    // a peer's revocation still holds here within this period.
    this.revocationTimer = setInterval(() => {
      this.standing.refresh().catch((err: unknown) => this.deps.logger.warn({ err }, 'standing revocation refresh failed'))
    }, this.opts.revocationRefreshMs ?? 1000)
    this.revocationTimer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    if (this.revocationTimer) clearInterval(this.revocationTimer)
    this.revocationTimer = null
    this.unsubscribe?.()
    this.unsubscribe = null
  }

  private async reloadPolicies(): Promise<void> {
    const active = await this.deps.store.policies.listActive()
    const next = new Map<string, string>()
    for (const b of active) next.set(b.tenant, b.version)
    this.policyVersions = next
  }

  /** Applies a feed event from any control plane. */
  onFeedEvent(e: FeedEvent): void {
    if (e.kind === 'revocation' || e.kind === 'revocation_lifted') this.standing.onFeedEvent(e)
    else if (e.kind === 'agent') this.invalidateAgent(e.agent.tenant, e.agent.agentId)
    else if (e.kind === 'policy') {
      if (e.policy.active) this.policyVersions.set(e.policy.tenant, e.policy.active.version)
      else this.policyVersions.delete(e.policy.tenant)
    }
  }

  /** Version of the tenant's active policy bundle, or "none". Synchronous: refreshed in the background. */
  policyVersion(tenant: string): string {
    return this.policyVersions.get(tenant) ?? 'none'
  }

  /** Ensures the policy versions were loaded once (for callers before start()). */
  async ready(): Promise<void> {
    this.policyLoaded ??= this.reloadPolicies()
    await this.policyLoaded
  }

  peekAgent(tenant: string, agentId: string): Boxed<Agent | null> | undefined {
    return this.agents.get(`${tenant}\u0000${agentId}`)
  }

  async agent(tenant: string, agentId: string): Promise<Agent | null> {
    const hit = this.peekAgent(tenant, agentId)
    if (hit) return hit.value
    const a = await this.deps.store.agents.get(tenant, agentId)
    this.agents.set(`${tenant}\u0000${agentId}`, { value: a })
    return a
  }

  peekTenant(id: string): Boxed<Tenant | null> | undefined {
    return this.tenants.get(id)
  }

  async tenant(id: string): Promise<Tenant | null> {
    const hit = this.tenants.get(id)
    if (hit) return hit.value
    const t = await this.deps.store.tenants.get(id)
    this.tenants.set(id, { value: t })
    return t
  }

  /**
   * A bootstrap credential by client id. Reusable credentials are cached;
   * single-use ones are always read from the store (their `usedAt` matters).
   */
  async credential(clientId: string): Promise<BootstrapCredential | null> {
    const hit = this.credentials.get(clientId)
    if (hit) return hit
    const c = await this.deps.store.credentials.get(clientId)
    if (c && !c.singleUse) this.credentials.set(clientId, c)
    return c
  }

  invalidateAgent(tenant: string, agentId: string): void {
    this.agents.delete(`${tenant}\u0000${agentId}`)
    // Credentials are keyed by client id; agent changes are rare, so drop them all.
    this.credentials.clear()
  }

  invalidateTenant(id: string): void {
    this.tenants.delete(id)
    this.agents.clear()
    this.credentials.clear()
  }
}

const directories = new WeakMap<ControlPlaneDeps, Directory>()

/** The one Directory of a control plane (keyed by its deps object). */
export function directoryFor(deps: ControlPlaneDeps): Directory {
  let d = directories.get(deps)
  if (!d) {
    d = new Directory(deps)
    directories.set(deps, d)
  }
  return d
}
