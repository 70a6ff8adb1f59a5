/**
 * Live KPIs (`GET /admin/v1/kpis`, DESIGN.md "Audit"): in-memory counters of
 * this control plane, fed by the token endpoint and the revocation routes;
 * replay attempts, decisions and would-deny counts are added by whoever
 * receives gateway reports (`recordReplay`, `recordDecision`).
 */
import type { FastifyInstance } from 'fastify'
import type { ControlPlaneDeps } from '../deps.js'
import { InvalidRequest } from '../../errors.js'
import { TAGS, allow, query, type JsonSchema } from './schemas.js'

const WINDOW_SECONDS = 10
/** History resolution and depth: one hour of 10-second buckets (the console's charts). */
const HISTORY_BUCKET_MS = 10_000
const HISTORY_BUCKETS = 360
/** Decision kinds and would-deny keys kept per book: a bound on what gateway reports can add. */
const MAX_KINDS = 32
const KIND_RE = /^[a-z][a-z0-9_]{0,31}$/
const MAX_DELTA = 1_000_000_000
const TENANT_RE = /^[A-Za-z0-9._-]{1,128}$/

/** One history bucket of `KpiHistory`. */
interface HistoryBucket {
  issued: number
  lifetimeSum: number
  revocations: number
  replayAttempts: number
  decisions: Record<string, number>
  wouldDeny: number
}

/** The `history` member of `GET /admin/v1/kpis?history=1`: per-bucket series, oldest first, ending with the current bucket. */
export interface KpiHistory {
  bucket_seconds: number
  /** Epoch ms of the first bucket's start. */
  start: number
  issued: number[]
  /** Average lifetime of the tokens issued in each bucket (0 when none). */
  avg_token_lifetime_seconds: number[]
  revocations: number[]
  replay_attempts: number[]
  decisions: Record<string, number[]>
  would_deny: number[]
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

/** Bound on the tenants tracked per book and per report. */
const MAX_TENANTS = 10_000
const MAX_REPORT_TENANTS = 1_000

/** In-memory KPI counters of one control plane. All times in epoch ms. */
export class KpiBook {
  // Issuances per second over the last WINDOW_SECONDS, as a ring of one-second buckets.
  private readonly buckets = new Float64Array(WINDOW_SECONDS)
  private readonly bucketSecond = new Float64Array(WINDOW_SECONDS).fill(-1)
  private lifetimeSum = 0
  private issued = 0
  revocations = 0
  replayAttempts = 0
  readonly decisions: Record<string, number> = {}
  readonly wouldDeny: Record<string, number> = {}
  private readonly history: Array<{ slot: number; b: HistoryBucket } | undefined> = new Array(HISTORY_BUCKETS)
  /** Latest report time (epoch ms) per gateway id, bounded. */
  readonly gateways = new Map<string, number>()
  private readonly tenants = new Map<string, KpiBook>()

  /** The book of one tenant (created on first use; past MAX_TENANTS a throwaway one, so a flood cannot grow memory). */
  tenant(id: string): KpiBook {
    let b = this.tenants.get(id)
    if (b === undefined) {
      b = new KpiBook()
      if (this.tenants.size < MAX_TENANTS) this.tenants.set(id, b)
    }
    return b
  }

  /** The book of a tenant if it has one. */
  tenantIfAny(id: string): KpiBook | undefined {
    return this.tenants.get(id)
  }

  private bucket(now: number): HistoryBucket {
    const slot = Math.floor(now / HISTORY_BUCKET_MS)
    const i = slot % HISTORY_BUCKETS
    let h = this.history[i]
    if (h === undefined || h.slot !== slot) {
      h = { slot, b: { issued: 0, lifetimeSum: 0, revocations: 0, replayAttempts: 0, decisions: {}, wouldDeny: 0 } }
      this.history[i] = h
    }
    return h.b
  }

  /** One access token issued with `lifetimeSeconds` (to `tenant`, when given: counted in its book too). */
  recordIssued(now: number, lifetimeSeconds: number, tenant?: string): void {
    if (tenant !== undefined) this.tenant(tenant).recordIssued(now, lifetimeSeconds)
    const s = Math.floor(now / 1000)
    const i = s % WINDOW_SECONDS
    if (this.bucketSecond[i] !== s) {
      this.bucketSecond[i] = s
      this.buckets[i] = 0
    }
    this.buckets[i]! += 1
    this.issued += 1
    this.lifetimeSum += lifetimeSeconds
    const h = this.bucket(now)
    h.issued += 1
    h.lifetimeSum += lifetimeSeconds
  }

  /** One revocation accepted; `now` (epoch ms) places it in the history. */
  recordRevocation(now: number = Date.now(), tenant?: string): void {
    if (tenant !== undefined) this.tenant(tenant).recordRevocation(now)
    this.revocations += 1
    this.bucket(now).revocations += 1
  }

  recordReplay(n = 1, now: number = Date.now()): void {
    this.replayAttempts += n
    this.bucket(now).replayAttempts += n
  }

  /** A gateway decision (`allow`, `deny`, …); `wouldDeny` for shadow-mode denials, keyed by decision or tenant as the reporter chooses. */
  recordDecision(decision: string, n = 1, wouldDenyKey?: string, now: number = Date.now()): void {
    if (!(decision in this.decisions) && Object.keys(this.decisions).length >= MAX_KINDS) return
    this.decisions[decision] = (this.decisions[decision] ?? 0) + n
    const h = this.bucket(now)
    h.decisions[decision] = (h.decisions[decision] ?? 0) + n
    if (wouldDenyKey !== undefined) this.recordWouldDeny(wouldDenyKey, n, now)
  }

  /** Shadow-mode decisions that would have refused the call, keyed by decision kind. */
  recordWouldDeny(key: string, n = 1, now: number = Date.now()): void {
    if (!(key in this.wouldDeny) && Object.keys(this.wouldDeny).length >= MAX_KINDS) return
    this.wouldDeny[key] = (this.wouldDeny[key] ?? 0) + n
    this.bucket(now).wouldDeny += n
  }

  /** Adds one gateway report (already validated by `parseGatewayStats`). */
  recordGatewayStats(report: GatewayStatsReport, now: number): void {
    this.addDeltas(report, now)
    for (const [t, d] of Object.entries(report.tenants ?? {})) this.tenant(t).addDeltas(d, now)
    if (this.gateways.has(report.gateway_id) || this.gateways.size < 1000) this.gateways.set(report.gateway_id, now)
  }

  private addDeltas(d: StatsDeltas, now: number): void {
    for (const [k, n] of Object.entries(d.decisions)) if (n > 0) this.recordDecision(k, n, undefined, now)
    for (const [k, n] of Object.entries(d.would_deny)) if (n > 0) this.recordWouldDeny(k, n, now)
    if (d.replay_attempts > 0) this.recordReplay(d.replay_attempts, now)
  }

  /** The last hour as 10-second buckets, oldest first. */
  historySnapshot(now: number): KpiHistory {
    const last = Math.floor(now / HISTORY_BUCKET_MS)
    const first = last - HISTORY_BUCKETS + 1
    const out: KpiHistory = { bucket_seconds: HISTORY_BUCKET_MS / 1000, start: first * HISTORY_BUCKET_MS, issued: [], avg_token_lifetime_seconds: [], revocations: [], replay_attempts: [], decisions: {}, would_deny: [] }
    for (const k of Object.keys(this.decisions)) out.decisions[k] = []
    for (let slot = first; slot <= last; slot++) {
      const h = this.history[slot % HISTORY_BUCKETS]
      const b = h !== undefined && h.slot === slot ? h.b : undefined
      out.issued.push(b?.issued ?? 0)
      out.avg_token_lifetime_seconds.push(b && b.issued > 0 ? Math.round((b.lifetimeSum / b.issued) * 100) / 100 : 0)
      out.revocations.push(b?.revocations ?? 0)
      out.replay_attempts.push(b?.replayAttempts ?? 0)
      out.would_deny.push(b?.wouldDeny ?? 0)
      for (const k of Object.keys(out.decisions)) out.decisions[k]!.push(b?.decisions[k] ?? 0)
    }
    return out
  }

  /** Tokens issued in the last 10 s (excluding the current partial second's future) / 10. */
  issuanceTps(now: number): number {
    const s = Math.floor(now / 1000)
    let n = 0
    for (let i = 0; i < WINDOW_SECONDS; i++) {
      const b = this.bucketSecond[i]!
      if (b > s - WINDOW_SECONDS && b <= s) n += this.buckets[i]!
    }
    return n / WINDOW_SECONDS
  }

  avgTokenLifetimeSeconds(): number {
    return this.issued === 0 ? 0 : this.lifetimeSum / this.issued
  }

  /** The `GET /admin/v1/kpis` body. */
  snapshot(now: number): { issuance_tps: number; avg_token_lifetime_seconds: number; tokens_issued: number; revocations: number; replay_attempts: number; decisions: Record<string, number>; would_deny: Record<string, number> } {
    return {
      issuance_tps: this.issuanceTps(now),
      avg_token_lifetime_seconds: Math.round(this.avgTokenLifetimeSeconds() * 100) / 100,
      tokens_issued: this.issued,
      revocations: this.revocations,
      replay_attempts: this.replayAttempts,
      decisions: { ...this.decisions },
      would_deny: { ...this.wouldDeny },
    }
  }
}

const books = new WeakMap<ControlPlaneDeps, KpiBook>()

/** The one KpiBook of a control plane (keyed by its deps object). */
export function kpiBook(deps: ControlPlaneDeps): KpiBook {
  let b = books.get(deps)
  if (!b) {
    b = new KpiBook()
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
  if (typeof b.gateway_id !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(b.gateway_id)) throw new InvalidRequest('gateway_id must be 1 to 128 printable ASCII characters')
  const out: GatewayStatsReport = { gateway_id: b.gateway_id, ...deltas(b, '') }
  if (b.tenants !== undefined) {
    if (b.tenants === null || typeof b.tenants !== 'object' || Array.isArray(b.tenants)) throw new InvalidRequest('tenants must be an object of tenant id → counts')
    const entries = Object.entries(b.tenants as Record<string, unknown>)
    if (entries.length > MAX_REPORT_TENANTS) throw new InvalidRequest(`tenants has more than ${MAX_REPORT_TENANTS} entries`)
    out.tenants = {}
    for (const [t, v] of entries) {
      if (!TENANT_RE.test(t)) throw new InvalidRequest('tenants keys must be tenant ids')
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequest(`tenants.${t} must be an object`)
      for (const k of Object.keys(v)) if (!['decisions', 'would_deny', 'replay_attempts'].includes(k)) throw new InvalidRequest(`unknown field tenants.${t}.${k}`)
      out.tenants[t] = deltas(v as Record<string, unknown>, `tenants.${t}.`)
    }
  }
  return out
}

function deltas(b: Record<string, unknown>, prefix: string): StatsDeltas {
  const replay = b.replay_attempts ?? 0
  if (!Number.isSafeInteger(replay) || (replay as number) < 0 || (replay as number) > MAX_DELTA) throw new InvalidRequest(`${prefix}replay_attempts must be a non-negative integer`)
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
 * numbers; `?history=1` adds the last hour as 10-second buckets) and `POST /admin/v1/gateways/stats` (global gateway or admin token, as gateways authenticate with either:
 * decision, would-deny and replay deltas, answered 204). Register under the
 * `/admin/v1` prefix.
 */
export async function kpiRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const book = kpiBook(deps)
  app.get('/kpis', { config: allow(['admin']), schema: { tags: [TAGS.kpis], summary: 'Issuance TPS, token lifetime, revocations, replay attempts, decisions (a tenant admin: its tenant)', querystring: KpiQuery } }, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const now = deps.clock.now()
    const q = (request.query ?? {}) as Record<string, unknown>
    // A tenant admin sees its own tenant's KPIs, never the global ones.
    const t = request.adminPrincipal!.tenant
    const b = t === null ? book : book.tenantIfAny(t) ?? new KpiBook()
    if (q.history === '1') return { ...b.snapshot(now), history: b.historySnapshot(now) }
    return b.snapshot(now)
  })
  // No console session: only gateways (or automation with a global token) report stats.
  app.post('/gateways/stats', { config: allow(['gateway', 'admin'], { sessions: false, globalOnly: 'gateway stats need a global gateway token' }), schema: { tags: [TAGS.kpis], summary: 'A gateway reports decision, would-deny and replay deltas', body: StatsBody } }, async (request, reply) => {
    const report = parseGatewayStats(request.body)
    book.recordGatewayStats(report, deps.clock.now())
    return reply.code(204).send()
  })
}
