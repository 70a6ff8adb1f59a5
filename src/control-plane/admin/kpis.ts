/**
 * Live KPIs (`GET /admin/v1/kpis`, DESIGN.md "Audit"): in-memory counters of
 * this control plane, fed by the token endpoint and the revocation routes;
 * replay attempts, decisions and would-deny counts are added by whoever
 * receives gateway reports (`recordReplay`, `recordDecision`).
 */
import type { FastifyInstance } from 'fastify'
import type { ControlPlaneDeps } from '../deps.js'
import { requireRole } from '../../http/admin-auth.js'

const WINDOW_SECONDS = 10

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

  /** One access token issued with `lifetimeSeconds`. */
  recordIssued(now: number, lifetimeSeconds: number): void {
    const s = Math.floor(now / 1000)
    const i = s % WINDOW_SECONDS
    if (this.bucketSecond[i] !== s) {
      this.bucketSecond[i] = s
      this.buckets[i] = 0
    }
    this.buckets[i]! += 1
    this.issued += 1
    this.lifetimeSum += lifetimeSeconds
  }

  recordRevocation(): void {
    this.revocations += 1
  }

  recordReplay(n = 1): void {
    this.replayAttempts += n
  }

  /** A gateway decision (`allow`, `deny`, …); `wouldDeny` for shadow-mode denials, keyed by decision or tenant as the reporter chooses. */
  recordDecision(decision: string, n = 1, wouldDenyKey?: string): void {
    this.decisions[decision] = (this.decisions[decision] ?? 0) + n
    if (wouldDenyKey !== undefined) this.wouldDeny[wouldDenyKey] = (this.wouldDeny[wouldDenyKey] ?? 0) + n
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

/** `GET /admin/v1/kpis` (role admin). Register under the `/admin/v1` prefix. */
export async function kpiRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const book = kpiBook(deps)
  app.get('/kpis', { preHandler: requireRole(deps.store, ['admin'], deps.sessions) }, async (_req, reply) => {
    reply.header('cache-control', 'no-store')
    return book.snapshot(deps.clock.now())
  })
}
