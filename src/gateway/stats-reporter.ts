/**
 * Decision sinks that make gateway decisions visible outside the gateway:
 * `GatewayStatsReporter` sends decision, would-deny and replay deltas to the
 * control plane's KPIs (`POST /admin/v1/gateways/stats`) about once a
 * second; `DecisionSpanSink` turns every decision into an `aegis.decision`
 * OpenTelemetry span.
 */
import { context, SpanStatusCode } from '@opentelemetry/api'
import type { Logger } from '../observability/logger.js'
import { adoptSpan } from '../observability/request-context.js'
import { tracer } from '../observability/tracing.js'
import type { DecisionSink, GatewayAuditEvent } from './deps.js'

/** What `GatewayStatsReporter` needs from the control-plane client. */
export interface StatsPoster {
  postJson(path: string, body: unknown): Promise<unknown>
}

/** Decisions that let the call through; every other shadow decision is a would-deny. */
const PASSING = new Set(['allow', 'sanitize'])
/** Bound on distinct decision kinds per report (the control plane refuses more). */
const MAX_KINDS = 32

interface Deltas {
  decisions: Record<string, number>
  would_deny: Record<string, number>
  replay_attempts: number
}

function empty(): Deltas {
  return { decisions: {}, would_deny: {}, replay_attempts: 0 }
}

function add(into: Record<string, number>, key: string, n: number): void {
  if (!(key in into) && Object.keys(into).length >= MAX_KINDS) return
  into[key] = (into[key] ?? 0) + n
}

/**
 * Counts decisions in memory (O(1), never blocks the hot path) and posts the
 * deltas every `intervalMs`. A failed post keeps its deltas for the next one,
 * so the control plane's totals catch up after an outage.
 *
 * Counted: `decision` events by decision (`allow`, `deny`, `approval_needed`,
 * `sanitize`), shadow (enforced: false) decisions that would have refused
 * the call under `would_deny`, refused tokens as `refused`, and replays.
 */
export class GatewayStatsReporter implements DecisionSink {
  private pending = empty()
  private dirty = false
  private readonly timer: NodeJS.Timeout
  private inFlight: Promise<void> | null = null

  constructor(private readonly client: StatsPoster, private readonly gatewayId: string, private readonly logger: Logger, intervalMs = 1000) {
    this.timer = setInterval(() => { void this.flush() }, intervalMs)
    this.timer.unref()
  }

  record(event: GatewayAuditEvent): void {
    const p = this.pending
    if (event.type === 'decision' && event.decision !== undefined) {
      add(p.decisions, event.decision, 1)
      if (event.enforced === false && !PASSING.has(event.decision)) add(p.would_deny, event.decision, 1)
    } else if (event.type === 'token.refused') {
      add(p.decisions, 'refused', 1)
    } else if (event.type === 'token.replayed') {
      p.replay_attempts += 1
    } else {
      return
    }
    this.dirty = true
  }

  /** Posts what was counted since the last successful post (no-op when nothing was). */
  async flush(): Promise<void> {
    if (this.inFlight) return this.inFlight
    if (!this.dirty) return
    const batch = this.pending
    this.pending = empty()
    this.dirty = false
    this.inFlight = (async () => {
      try {
        await this.client.postJson('/admin/v1/gateways/stats', { gateway_id: this.gatewayId, ...batch })
      } catch (err) {
        this.logger.debug({ err: (err as Error).message }, 'gateway stats report failed; kept for the next one')
        for (const [k, n] of Object.entries(batch.decisions)) add(this.pending.decisions, k, n)
        for (const [k, n] of Object.entries(batch.would_deny)) add(this.pending.would_deny, k, n)
        this.pending.replay_attempts += batch.replay_attempts
        this.dirty = true
      } finally {
        this.inFlight = null
      }
    })()
    return this.inFlight
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.flush()
  }
}

/**
 * One `aegis.decision` span per gateway audit event, child of the active
 * context (the request's `traceparent`, see observability/request-context);
 * the reverse proxy passes the decision span on as the upstream's parent.
 * Attributes: gateway, entry mode, tenant, agent, client, tool, decision,
 * enforced, policy ids and version, risk, latency. Never the token, the
 * parameters or the resource (they may carry what a sanitize rule covers).
 */
export class DecisionSpanSink implements DecisionSink {
  record(e: GatewayAuditEvent): void {
    // Back-dated by the pipeline's latency, so the span covers the decision rather than this call.
    const startTime = e.latency_ms !== undefined ? Date.now() - e.latency_ms : undefined
    const span = tracer().startSpan('aegis.decision', { startTime, attributes: {
      'aegis.event': e.type,
      'aegis.gateway_id': e.gateway_id,
      'aegis.mode': e.mode,
      ...(e.tenant !== null ? { 'aegis.tenant': e.tenant } : {}),
      ...(e.agent_id !== null ? { 'aegis.agent': e.agent_id } : {}),
      ...(e.client_id !== null ? { 'aegis.client_id': e.client_id } : {}),
      ...(e.tool !== null ? { 'aegis.tool': e.tool } : {}),
      'aegis.decision': e.type === 'decision' ? e.decision ?? 'unknown' : e.type === 'token.replayed' ? 'replayed' : 'refused',
      ...(e.enforced !== undefined ? { 'aegis.enforced': e.enforced } : {}),
      ...(e.policy_ids !== undefined ? { 'aegis.policy_ids': e.policy_ids } : {}),
      ...(e.policy_version !== undefined ? { 'aegis.policy_version': e.policy_version } : {}),
      ...(e.risk !== undefined ? { 'aegis.risk': e.risk } : {}),
      ...(e.degraded !== undefined ? { 'aegis.degraded': e.degraded } : {}),
      ...(e.latency_ms !== undefined ? { 'aegis.latency_ms': e.latency_ms } : {}),
    } }, context.active())
    if (e.type !== 'decision') span.setStatus({ code: SpanStatusCode.ERROR, message: e.error ?? e.type })
    span.end()
    // A proxied call continues the trace under its decision.
    if (e.type === 'decision') adoptSpan(span)
  }
}
