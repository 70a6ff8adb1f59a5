/**
 * Live KPIs (`GET /admin/v1/kpis`, docs/reference.md "Audit"), cluster-wide: every
 * control plane counts what it sees (token issuances, revocations, gateway
 * reports of decisions, would-deny and replays) and adds it to counters in
 * the shared store (`kpi_counts`: per tenant, per 10-second slot and as
 * all-time totals), so whichever control plane a console or a gateway talks
 * to, every one of them answers the same figures. The token endpoint's hot
 * path only bumps an in-memory delta; deltas reach the store about once a
 * second, and at once before this control plane answers `GET /kpis` or
 * acknowledges a gateway report.
 */
import type { FastifyInstance } from 'fastify'
import type { ControlPlaneDeps } from '../deps.js'
import { InvalidRequest } from '../../errors.js'
import type { Clock } from '../../lib/clock.js'
import type { Logger } from '../../observability/logger.js'
import type { KpiCount, Store } from '../../store/types.js'
import { TAGS, allow, query, type JsonSchema } from './schemas.js'

/** Issuance TPS is the rate over the current 10-second slot and the five before it (50 to 60 s of tokens). */
export const TPS_WINDOW_SECONDS = 60
/** History resolution and depth: one hour of 10-second buckets (the console's charts). */
const HISTORY_BUCKET_MS = 10_000
const HISTORY_BUCKETS = 360
const TPS_SLOTS = TPS_WINDOW_SECONDS / (HISTORY_BUCKET_MS / 1000)
/** Decision kinds and would-deny keys answered: a bound on what gateway reports can add. */
const MAX_KINDS = 32
const KIND_RE = /^[a-z][a-z0-9_]{0,31}$/
const MAX_DELTA = 1_000_000_000
const TENANT_RE = /^[A-Za-z0-9._-]{1,128}$/
/** The rows' tenant for figures over every tenant (no tenant id is empty). */
const ALL = ''
/** Slot 0 holds the all-time totals. */
const TOTALS = 0
const FLUSH_MS = 1000
/** History older than this many slots (plus a margin) is pruned, once a minute. */
const PRUNE_EVERY_FLUSHES = 60
/** Bound on distinct rows waiting for the store (an outage of the store must not grow memory without end). */
const MAX_PENDING = 50_000

/** Metric names in `kpi_counts`. */
const M = {
  issued: 'issued',
  lifetime: 'lifetime_seconds',
  revocations: 'revocations',
  replays: 'replay_attempts',
  decision: 'decision.',
  wouldDeny: 'would_deny.',
} as const

/** The `history` member of `GET /admin/v1/kpis?history=1`: per-bucket series, oldest first, ending with the current bucket. */
export interface KpiHistory {
  bucket_seconds: number
  /** Epoch seconds of the first bucket's start (buckets start on whole seconds). */
  start_at: number
  issued: number[]
  /** Average lifetime of the tokens issued in each bucket (0 when none). */
  avg_token_lifetime_seconds: number[]
  revocations: number[]
  replay_attempts: number[]
  decisions: Record<string, number[]>
  would_deny: number[]
}

/** The `GET /admin/v1/kpis` body. */
export interface KpiSnapshot {
  issuance_tps: number
  issuance_tps_window_seconds: number
  avg_token_lifetime_seconds: number
  tokens_issued: number
  revocations: number
  replay_attempts: number
  decisions: Record<string, number>
  would_deny: Record<string, number>
  /** Pending, unexpired approval requests (from the store: the same on every control plane). */
  approvals_open: number
  history?: KpiHistory
}

/** Decision, would-deny and replay deltas (of one gateway, optionally of one tenant). */
export interface StatsDeltas {
  decisions: Record<string, number>
  would_deny: Record<string, number>
  replay_attempts: number
}

/**
 * What a gateway reports on `POST /admin/v1/gateways/stats` (deltas since its
 * previous report): totals, and optionally the same per tenant (so tenant
 * admins see their own tenant's KPIs).
 */
export interface GatewayStatsReport extends StatsDeltas {
  gateway_id: string
  tenants?: Record<string, StatsDeltas>
}

/** Bound on the tenants per report. */
const MAX_REPORT_TENANTS = 1_000

/**
 * One control plane's side of the cluster-wide KPIs: records into pending
 * deltas, flushes them to the store (single flight; a failed flush keeps its
 * deltas for the next one), and reads the cluster's figures back. Times in
 * epoch ms from the control plane's clock.
 */
export class KpiBook {
  private pending = new Map<string, KpiCount>()
  /** Per tenant: the current slot's keys into `pending`, per metric (keysOf). */
  private readonly keys = new Map<string, { slot: number; byMetric: Map<string, readonly [string, string]> }>()
  private flushing: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private flushes = 0
  private closed = false

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger?: Logger,
  ) {}

  private add(tenant: string | undefined, now: number, metric: string, n: number): void {
    if (n <= 0 || this.closed) return
    const slot = Math.floor(now / HISTORY_BUCKET_MS)
    this.count(ALL, slot, metric, n)
    if (tenant !== undefined) this.count(tenant, slot, metric, n)
    this.timer ??= setInterval(() => {
      void this.tick()
    }, FLUSH_MS).unref()
  }

  /** Adds `n` to one tenant's all-time total and its count in `slot`. */
  private count(tenant: string, slot: number, metric: string, n: number): void {
    const [totalKey, slotKey] = this.keysOf(tenant, slot, metric)
    this.bump(totalKey, tenant, TOTALS, metric, n)
    this.bump(slotKey, tenant, slot, metric, n)
  }

  private bump(key: string, tenant: string, slot: number, metric: string, n: number): void {
    const c = this.pending.get(key)
    if (c !== undefined) c.n += n
    else if (this.pending.size < MAX_PENDING) this.pending.set(key, { tenant, slot, metric, n })
  }

  /**
   * The pending map's keys of a tenant's metric (all-time, and in `slot`),
   * built once per slot: building them per token (eight strings, hashed
   * afresh at each lookup) was about 1 µs of every token issued.
   */
  private keysOf(tenant: string, slot: number, metric: string): readonly [string, string] {
    let slotKeys = this.keys.get(tenant)
    if (slotKeys === undefined || slotKeys.slot !== slot) {
      if (slotKeys === undefined && this.keys.size >= MAX_PENDING) this.keys.clear()
      slotKeys = { slot, byMetric: new Map() }
      this.keys.set(tenant, slotKeys)
    }
    let pair = slotKeys.byMetric.get(metric)
    if (pair === undefined) {
      pair = [`${tenant}\n${TOTALS}\n${metric}`, `${tenant}\n${slot}\n${metric}`]
      slotKeys.byMetric.set(metric, pair)
    }
    return pair
  }

  /** One access token issued with `lifetimeSeconds` (to `tenant`, when given: counted for it too). */
  recordIssued(now: number, lifetimeSeconds: number, tenant?: string): void {
    this.add(tenant, now, M.issued, 1)
    this.add(tenant, now, M.lifetime, Math.max(0, Math.round(lifetimeSeconds)))
  }

  /** One revocation accepted. */
  recordRevocation(now: number = this.clock.now(), tenant?: string): void {
    this.add(tenant, now, M.revocations, 1)
  }

  /**
   * Stores one gateway report (already validated by `parseGatewayStats`)
   * straight away, not through the pending deltas: when the write fails the
   * caller answers an error and the gateway keeps its deltas for its next
   * report, so nothing is counted twice. The report's totals go to every
   * tenant's figures, its per-tenant deltas to each tenant's.
   */
  async recordGatewayStats(report: GatewayStatsReport, now: number): Promise<void> {
    const slot = Math.floor(now / HISTORY_BUCKET_MS)
    const rows: KpiCount[] = []
    const put = (tenant: string, d: StatsDeltas): void => {
      const one = (metric: string, n: number): void => {
        if (n > 0) for (const s of [TOTALS, slot]) rows.push({ tenant, slot: s, metric, n })
      }
      for (const [k, n] of Object.entries(d.decisions)) one(M.decision + k, n)
      for (const [k, n] of Object.entries(d.would_deny)) one(M.wouldDeny + k, n)
      one(M.replays, d.replay_attempts)
    }
    put(ALL, report)
    for (const [t, d] of Object.entries(report.tenants ?? {})) put(t, d)
    await this.store.kpis.add(rows)
  }

  private async tick(): Promise<void> {
    await this.flush().catch((err: unknown) => this.logger?.warn({ err }, 'KPI counts not stored yet (kept for the next try)'))
    if (++this.flushes % PRUNE_EVERY_FLUSHES === 0) {
      const before = Math.floor(this.clock.now() / HISTORY_BUCKET_MS) - HISTORY_BUCKETS - TPS_SLOTS
      await this.store.kpis.prune(before).catch(() => {})
    }
  }

  /** Writes the pending deltas to the store; resolves once they (and any flush under way) are stored. */
  async flush(): Promise<void> {
    while (this.flushing !== null) await this.flushing.catch(() => {})
    if (this.pending.size === 0) return
    const batch = this.pending
    this.pending = new Map()
    const run = this.store.kpis
      .add([...batch.values()])
      .catch((err: unknown) => {
        // Kept for the next flush, merged with what was counted meanwhile.
        for (const [key, c] of batch) {
          const cur = this.pending.get(key)
          if (cur !== undefined) cur.n += c.n
          else if (this.pending.size < MAX_PENDING) this.pending.set(key, c)
        }
        throw err
      })
      .finally(() => {
        this.flushing = null
      })
    this.flushing = run
    await run
  }

  /** Stops the timer and stores what is pending. */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    await this.flush().catch((err: unknown) => this.logger?.warn({ err }, 'KPI counts lost at shutdown'))
    this.closed = true
  }

  /**
   * The cluster's figures, for every tenant (`tenant` null) or one tenant,
   * after storing this control plane's pending deltas; with the last hour as
   * 10-second buckets when `withHistory`.
   */
  async snapshot(tenant: string | null, withHistory = false): Promise<KpiSnapshot> {
    await this.flush().catch((err: unknown) => this.logger?.warn({ err }, 'KPI counts not stored yet (kept for the next try)'))
    const now = this.clock.now()
    const last = Math.floor(now / HISTORY_BUCKET_MS)
    const first = withHistory ? last - HISTORY_BUCKETS + 1 : last - TPS_SLOTS + 1
    const [rows, approvalsOpen] = await Promise.all([
      this.store.kpis.read(tenant ?? ALL, first),
      this.store.approvals.countOpen({ ...(tenant !== null ? { tenant } : {}), now }),
    ])
    const totals = new Map<string, number>()
    const bySlot = new Map<number, Map<string, number>>()
    for (const r of rows) {
      if (r.slot === TOTALS) totals.set(r.metric, r.n)
      else if (r.slot >= first && r.slot <= last) {
        let m = bySlot.get(r.slot)
        if (m === undefined) bySlot.set(r.slot, (m = new Map()))
        m.set(r.metric, r.n)
      }
    }
    const kinds = (prefix: string): Record<string, number> => {
      const entries = [...totals].filter(([k, n]) => k.startsWith(prefix) && n > 0).map(([k, n]) => [k.slice(prefix.length), n] as const)
      entries.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      return Object.fromEntries(entries.slice(0, MAX_KINDS))
    }
    let recent = 0
    for (let s = last - TPS_SLOTS + 1; s <= last; s++) recent += bySlot.get(s)?.get(M.issued) ?? 0
    const spanSeconds = (now - (last - TPS_SLOTS + 1) * HISTORY_BUCKET_MS) / 1000
    const issued = totals.get(M.issued) ?? 0
    const out: KpiSnapshot = {
      issuance_tps: Math.round((recent / spanSeconds) * 1000) / 1000,
      issuance_tps_window_seconds: TPS_WINDOW_SECONDS,
      avg_token_lifetime_seconds: issued === 0 ? 0 : Math.round(((totals.get(M.lifetime) ?? 0) / issued) * 100) / 100,
      tokens_issued: issued,
      revocations: totals.get(M.revocations) ?? 0,
      replay_attempts: totals.get(M.replays) ?? 0,
      decisions: kinds(M.decision),
      would_deny: kinds(M.wouldDeny),
      approvals_open: approvalsOpen,
    }
    if (withHistory) {
      const h: KpiHistory = {
        bucket_seconds: HISTORY_BUCKET_MS / 1000,
        start_at: (first * HISTORY_BUCKET_MS) / 1000,
        issued: [],
        avg_token_lifetime_seconds: [],
        revocations: [],
        replay_attempts: [],
        decisions: {},
        would_deny: [],
      }
      for (const k of Object.keys(out.decisions)) h.decisions[k] = []
      for (let slot = first; slot <= last; slot++) {
        const b = bySlot.get(slot)
        const get = (metric: string): number => b?.get(metric) ?? 0
        const n = get(M.issued)
        h.issued.push(n)
        h.avg_token_lifetime_seconds.push(n > 0 ? Math.round((get(M.lifetime) / n) * 100) / 100 : 0)
        h.revocations.push(get(M.revocations))
        h.replay_attempts.push(get(M.replays))
        let wd = 0
        if (b !== undefined) for (const [k, v] of b) if (k.startsWith(M.wouldDeny)) wd += v
        h.would_deny.push(wd)
        for (const k of Object.keys(h.decisions)) h.decisions[k]!.push(get(M.decision + k))
      }
      out.history = h
    }
    return out
  }
}

const books = new WeakMap<ControlPlaneDeps, KpiBook>()

/** The one KpiBook of a control plane (keyed by its deps object). */
export function kpiBook(deps: ControlPlaneDeps): KpiBook {
  let b = books.get(deps)
  if (!b) {
    b = new KpiBook(deps.store, deps.clock, deps.logger)
    books.set(deps, b)
  }
  return b
}

function counts(v: unknown, name: string): Record<string, number> {
  if (v === undefined) return {}
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequest(`${name} must be an object of counts`)
  const entries = Object.entries(v as Record<string, unknown>)
  if (entries.length > MAX_KINDS) throw new InvalidRequest(`${name} has more than ${MAX_KINDS} keys`)
  const out: Record<string, number> = {}
  for (const [k, n] of entries) {
    if (!KIND_RE.test(k)) throw new InvalidRequest(`${name} keys must be decision kinds such as allow`)
    if (!Number.isSafeInteger(n) || (n as number) < 0 || (n as number) > MAX_DELTA) throw new InvalidRequest(`${name}.${k} must be a non-negative integer`)
    out[k] = n as number
  }
  return out
}

/** Validates a `POST /admin/v1/gateways/stats` body; throws `invalid_request` and changes nothing on bad input. */
export function parseGatewayStats(body: unknown): GatewayStatsReport {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidRequest('body must be a JSON object')
  const b = body as Record<string, unknown>
  for (const k of Object.keys(b)) {
    if (!['gateway_id', 'decisions', 'would_deny', 'replay_attempts', 'tenants'].includes(k)) throw new InvalidRequest(`unknown field ${k}`)
  }
  if (typeof b.gateway_id !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(b.gateway_id))
    throw new InvalidRequest('gateway_id must be 1 to 128 printable ASCII characters')
  const out: GatewayStatsReport = { gateway_id: b.gateway_id, ...deltas(b, '') }
  if (b.tenants !== undefined) {
    if (b.tenants === null || typeof b.tenants !== 'object' || Array.isArray(b.tenants))
      throw new InvalidRequest('tenants must be an object of tenant id → counts')
    const entries = Object.entries(b.tenants as Record<string, unknown>)
    if (entries.length > MAX_REPORT_TENANTS) throw new InvalidRequest(`tenants has more than ${MAX_REPORT_TENANTS} entries`)
    out.tenants = {}
    for (const [t, v] of entries) {
      if (!TENANT_RE.test(t)) throw new InvalidRequest('tenants keys must be tenant ids')
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequest(`tenants.${t} must be an object`)
      for (const k of Object.keys(v))
        if (!['decisions', 'would_deny', 'replay_attempts'].includes(k)) throw new InvalidRequest(`unknown field tenants.${t}.${k}`)
      out.tenants[t] = deltas(v as Record<string, unknown>, `tenants.${t}.`)
    }
  }
  return out
}

function deltas(b: Record<string, unknown>, prefix: string): StatsDeltas {
  const replay = b.replay_attempts ?? 0
  if (!Number.isSafeInteger(replay) || (replay as number) < 0 || (replay as number) > MAX_DELTA)
    throw new InvalidRequest(`${prefix}replay_attempts must be a non-negative integer`)
  return { decisions: counts(b.decisions, `${prefix}decisions`), would_deny: counts(b.would_deny, `${prefix}would_deny`), replay_attempts: replay as number }
}

const KpiQuery = query({ history: { type: 'string', description: '`1` adds the last hour as 10-second buckets' } })
const Counts: JsonSchema = {
  type: 'object',
  maxProperties: MAX_KINDS,
  propertyNames: { type: 'string', pattern: KIND_RE.source },
  additionalProperties: { type: 'integer', minimum: 0, maximum: MAX_DELTA },
}
const Deltas: Record<string, JsonSchema> = { decisions: Counts, would_deny: Counts, replay_attempts: { type: 'integer', minimum: 0, maximum: MAX_DELTA } }
const StatsBody: JsonSchema = {
  type: 'object',
  required: ['gateway_id'],
  additionalProperties: false,
  properties: {
    gateway_id: { type: 'string', pattern: '^[\\x21-\\x7e]{1,128}$' },
    ...Deltas,
    tenants: {
      type: 'object',
      maxProperties: MAX_REPORT_TENANTS,
      propertyNames: { type: 'string', pattern: TENANT_RE.source },
      additionalProperties: { type: 'object', additionalProperties: false, properties: Deltas },
    },
  },
}

/**
 * `GET /admin/v1/kpis` (role admin; a tenant admin gets its tenant's
 * numbers; `?history=1` adds the last hour as 10-second buckets) and
 * `POST /admin/v1/gateways/stats` (global gateway or admin token, as gateways
 * authenticate with either: decision, would-deny and replay deltas, answered
 * 204). Register under the
 * `/admin/v1` prefix.
 */
export async function kpiRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const book = kpiBook(deps)
  app.addHook('onClose', async () => {
    await book.close()
  })
  app.get(
    '/kpis',
    {
      config: allow(['admin']),
      schema: {
        tags: [TAGS.kpis],
        summary: "Issuance TPS, token lifetime, revocations, replay attempts, decisions, open approvals: the cluster's figures (a tenant admin: its tenant)",
        querystring: KpiQuery,
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      const q = (request.query ?? {}) as Record<string, unknown>
      // A tenant admin sees its own tenant's KPIs, never the global ones.
      return book.snapshot(request.adminPrincipal!.tenant, q.history === '1')
    },
  )
  // No console session: only gateways (or automation with a global token) report stats.
  app.post(
    '/gateways/stats',
    {
      config: allow(['gateway', 'admin'], { sessions: false, globalOnly: 'gateway stats need a global gateway token' }),
      schema: {
        tags: [TAGS.kpis],
        summary: 'A gateway reports decision, would-deny and replay deltas (stored before the answer: every control plane counts them)',
        body: StatsBody,
      },
    },
    async (request, reply) => {
      const report = parseGatewayStats(request.body)
      // Stored before the 204: a failed write is a 503 and the gateway keeps its deltas for its next report.
      await book.recordGatewayStats(report, deps.clock.now())
      return reply.code(204).send()
    },
  )
}
