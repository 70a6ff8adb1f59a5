import client, { Registry } from 'prom-client'
import { flushPending, LeanHistogram, PendingCount } from './lean-metrics.js'

export interface MetricsOptions {
  /** Label metrics with tenant ids (config metrics.tenantLabels); default false, so `/metrics` names no tenant. */
  tenantLabels?: boolean
}

/**
 * Prometheus metrics of one process. Each role creates one `Metrics` and
 * serves `registry` on `GET /metrics`. Names as docs/reference.md fixes them.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly tenantLabels: boolean
  /** Labelled `grant`, plus `tenant` when tenantLabels; counted through {@link countIssued}, read through the registry (collect adds what is pending). */
  readonly tokensIssued: client.Counter<'tenant' | 'grant'>
  readonly tokenLifetime = new LeanHistogram(
    'aegis_token_lifetime_seconds',
    'Lifetime of issued access tokens',
    [30, 60, 120, 300, 600, 900, 1800, 3600],
    this.registry,
  )
  readonly authFailures = new client.Counter({
    name: 'aegis_auth_failures_total',
    help: 'Failed client authentications at the token endpoint',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  /** Counted through {@link decisionCount} on the hot path; read it through the registry (its collect adds what is pending). */
  readonly decisions = new client.Counter({
    name: 'aegis_decisions_total',
    help: 'Gateway decisions',
    labelNames: ['decision', 'enforced'] as const,
    registers: [this.registry],
    collect: () => flushPending(this.pendingDecisions.values()),
  })
  private readonly pendingDecisions = new Map<string, PendingCount>()
  readonly decisionDuration = new LeanHistogram(
    'aegis_decision_duration_seconds',
    'Decision pipeline latency',
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
    this.registry,
  )
  readonly replayAttempts = new client.Counter({ name: 'aegis_replay_attempts_total', help: 'Refused replays of single-use jtis', registers: [this.registry] })
  readonly revocations = new client.Counter({
    name: 'aegis_revocations_total',
    help: 'Revocations accepted (control plane) or applied (gateway)',
    labelNames: ['type'] as const,
    registers: [this.registry],
  })
  readonly jwksFetches = new client.Counter({
    name: 'aegis_jwks_fetches_total',
    help: 'JWKS fetches by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  readonly approvalsOpened = new client.Counter({ name: 'aegis_approvals_opened_total', help: 'Approval requests opened', registers: [this.registry] })
  readonly approvalsDecided = new client.Counter({
    name: 'aegis_approvals_decided_total',
    help: 'Approval requests decided',
    labelNames: ['status'] as const,
    registers: [this.registry],
  })
  /**
   * Where `aegis_approvals_open` reads its value at each scrape; the control plane sets it to a count in its store,
   * so every replica sharing the store answers the cluster's number.
   */
  approvalsOpenSource: (() => Promise<number>) | null = null
  readonly approvalsOpen: client.Gauge = new client.Gauge({
    name: 'aegis_approvals_open',
    help: 'Approval requests pending (in the shared store: the same on every control plane)',
    registers: [this.registry],
    collect: async () => {
      if (this.approvalsOpenSource === null) return
      try {
        this.approvalsOpen.set(await this.approvalsOpenSource())
      } catch {
        /* store unreachable: the last value stays */
      }
    },
  })
  /** Read when the gauges below are collected (a scrape, or the primary of a multi-worker gateway asking this worker). */
  private feedSampler: (() => { denyListSize: number; lagSeconds: number; appliedSeq: number }) | undefined
  // Aggregated across the workers of one gateway: every worker holds the whole list (max), the slowest worker is the gateway's lag and seq.
  readonly denyListSize = new client.Gauge({
    name: 'aegis_deny_list_size',
    help: 'Deny-list entries held by this gateway',
    registers: [this.registry],
    aggregator: 'max',
    collect: () => this.sampleFeed((s) => this.denyListSize.set(s.denyListSize)),
  })
  readonly feedLag = new client.Gauge({
    name: 'aegis_feed_lag_seconds',
    help: 'Seconds since this gateway last heard from its feed',
    registers: [this.registry],
    aggregator: 'max',
    collect: () => this.sampleFeed((s) => this.feedLag.set(s.lagSeconds)),
  })
  readonly feedSeq = new client.Gauge({
    name: 'aegis_feed_applied_seq',
    help: 'Last revocation sequence applied by this gateway',
    registers: [this.registry],
    aggregator: 'min',
    collect: () => this.sampleFeed((s) => this.feedSeq.set(s.appliedSeq)),
  })
  readonly feedLoads = new client.Counter({
    name: 'aegis_feed_loads_total',
    help:
      'Feed loads of this gateway: kind="snapshot" a full state at a (re)connect, kind="resume" caught up from its cursor without one, ' +
      'kind="poll" a full state polled while Redis is down',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  })
  readonly degraded = new client.Counter({
    name: 'aegis_degraded_decisions_total',
    help: 'Decisions taken while a shared backend was unreachable',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  constructor(opts: MetricsOptions = {}) {
    this.tenantLabels = opts.tenantLabels ?? false
    // Tenant ids are business data: an unauthenticated scrape must not list them unless the operator chose so.
    this.tokensIssued = new client.Counter({
      name: 'aegis_tokens_issued_total',
      help: 'Access tokens issued',
      labelNames: this.tenantLabels ? ['tenant', 'grant'] : ['grant'],
      registers: [this.registry],
      collect: () => flushPending(this.pendingIssued.values()),
    })
  }

  private readonly pendingIssued = new Map<string, PendingCount>()

  /** The decision count for one label pair: add to its `n` (read at the next scrape). */
  decisionCount(decision: string, enforced: boolean): PendingCount {
    const key = enforced ? decision : `${decision}:shadow`
    let p = this.pendingDecisions.get(key)
    if (p === undefined) {
      p = new PendingCount(this.decisions.labels({ decision, enforced: enforced ? 'true' : 'false' }))
      this.pendingDecisions.set(key, p)
    }
    return p
  }

  /** A gateway's deny list and feed, read by the feed gauges whenever they are collected. */
  setFeedSampler(sample: () => { denyListSize: number; lagSeconds: number; appliedSeq: number }): void {
    this.feedSampler = sample
  }

  private sampleFeed(apply: (s: { denyListSize: number; lagSeconds: number; appliedSeq: number }) => void): void {
    if (this.feedSampler) apply(this.feedSampler())
  }

  private expose: () => Promise<string> = () => this.registry.metrics()

  /** The text `GET /metrics` answers: this registry, or every worker's aggregated in a multi-worker gateway. */
  exposition(): Promise<string> {
    return this.expose()
  }

  /** Replaces what {@link exposition} answers (a gateway worker asks its primary for the aggregate of all workers). */
  setExposition(expose: () => Promise<string>): void {
    this.expose = expose
  }

  /**
   * Counts one issued token for a tenant and grant (the tenant is dropped
   * unless tenantLabels), read at the next scrape. At most 10,000 label sets
   * are held pending; past that a count goes to prom-client at once.
   */
  countIssued(tenant: string, grant: string): void {
    const key = this.tenantLabels ? `${tenant}\u0000${grant}` : grant
    let p = this.pendingIssued.get(key)
    if (p === undefined) {
      const child = this.tokensIssued.labels(this.tenantLabels ? { tenant, grant } : { grant })
      if (this.pendingIssued.size >= 10_000) return void child.inc()
      p = new PendingCount(child)
      this.pendingIssued.set(key, p)
    }
    p.n += 1
  }
}
