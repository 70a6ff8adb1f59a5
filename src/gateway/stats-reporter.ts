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
import { tracer, tracingActive } from '../observability/tracing.js'
import type { DecisionSink, GatewayAuditEvent } from './deps.js'

/** What `GatewayStatsReporter` needs from the control-plane client. */
export interface StatsPoster {
  postJson(path: string, body: unknown): Promise<unknown>
}

/** Decisions that let the call through; every other shadow decision is a would-deny. */
const PASSING = new Set(['allow', 'sanitize'])
/** Bound on distinct decision kinds per report (the control plane refuses more). */
const MAX_KINDS = 32

/** Bound on tenants per report (the control plane refuses more); past it, only the totals count. */
const MAX_TENANTS = 1000

interface Deltas {
  decisions: Record<string, number>
  would_deny: Record<string, number>
  replay_attempts: number
}

interface Report extends Deltas {
  tenants: Record<string, Deltas>
}

function empty(): Report {
  return { decisions: {}, would_deny: {}, replay_attempts: 0, tenants: {} }
}

function blank(): Deltas {
  return { decisions: {}, would_deny: {}, replay_attempts: 0 }
}

function merge(into: Deltas, from: Deltas): void {
  for (const [k, n] of Object.entries(from.decisions)) add(into.decisions, k, n)
  for (const [k, n] of Object.entries(from.would_deny)) add(into.would_deny, k, n)
  into.replay_attempts += from.replay_attempts
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
 * the call under `would_deny`, refused tokens as `refused`, calls answered
 * 503 for an outage (`decision.unavailable`) as `unavailable`, and replays;
 * totals and the same per tenant.
 */
export class GatewayStatsReporter implements DecisionSink {
  private pending = empty()
  private dirty = false
  private readonly timer: NodeJS.Timeout
  private inFlight: Promise<void> | null = null

  constructor(
    private readonly client: StatsPoster,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    intervalMs = 1000,
  ) {
    this.timer = setInterval(() => {
      void this.flush()
    }, intervalMs)
    this.timer.unref()
  }

  record(event: GatewayAuditEvent): void {
    const p = this.pending
    let t: Deltas | undefined
    if (event.tenant !== null) {
      t = p.tenants[event.tenant]
      if (t === undefined && Object.keys(p.tenants).length < MAX_TENANTS) t = p.tenants[event.tenant] = blank()
    }
    for (const d of t === undefined ? [p] : [p, t]) {
      if (event.type === 'decision' && event.decision !== undefined) {
        add(d.decisions, event.decision, 1)
        if (event.enforced === false && !PASSING.has(event.decision)) add(d.would_deny, event.decision, 1)
      } else if (event.type === 'token.refused') {
        add(d.decisions, 'refused', 1)
      } else if (event.type === 'decision.unavailable') {
        add(d.decisions, 'unavailable', 1)
      } else if (event.type === 'token.replayed') {
        d.replay_attempts += 1
      } else {
        return
      }
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
        merge(this.pending, batch)
        for (const [id, d] of Object.entries(batch.tenants)) {
          const t = this.pending.tenants[id] ?? (Object.keys(this.pending.tenants).length < MAX_TENANTS ? (this.pending.tenants[id] = blank()) : undefined)
          if (t !== undefined) merge(t, d)
        }
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
    // Without a tracer provider (no OTLP endpoint) the span would be a no-op: not even created on the hot path
    // (a proxied call then carries the incoming trace context, which is what a no-op span would have carried).
    if (!tracingActive()) return
    // Back-dated by the pipeline's latency, so the span covers the decision rather than this call.
    const startTime = e.latency_ms !== undefined ? Date.now() - e.latency_ms : undefined
    const span = tracer().startSpan('aegis.decision', { startTime }, context.active())
    if (!span.isRecording()) return
    span.setAttributes({
      'aegis.event': e.type,
      'aegis.gateway_id': e.gateway_id,
      'aegis.mode': e.mode,
      ...(e.tenant !== null ? { 'aegis.tenant': e.tenant } : {}),
      ...(e.agent_id !== null ? { 'aegis.agent': e.agent_id } : {}),
      ...(e.client_id !== null ? { 'aegis.client_id': e.client_id } : {}),
      ...(e.tool !== null ? { 'aegis.tool': e.tool } : {}),
      'aegis.decision':
        e.type === 'decision'
          ? (e.decision ?? 'unknown')
          : e.type === 'token.replayed'
            ? 'replayed'
            : e.type === 'decision.unavailable'
              ? 'unavailable'
              : 'refused',
      ...(e.enforced !== undefined ? { 'aegis.enforced': e.enforced } : {}),
      ...(e.policy_ids !== undefined ? { 'aegis.policy_ids': e.policy_ids } : {}),
      ...(e.policy_version !== undefined ? { 'aegis.policy_version': e.policy_version } : {}),
      ...(e.risk !== undefined ? { 'aegis.risk': e.risk } : {}),
      ...(e.degraded !== undefined ? { 'aegis.degraded': e.degraded } : {}),
      ...(e.latency_ms !== undefined ? { 'aegis.latency_ms': e.latency_ms } : {}),
    })
    if (e.type !== 'decision') span.setStatus({ code: SpanStatusCode.ERROR, message: e.error ?? e.type })
    span.end()
    // A proxied call continues the trace under its decision.
    if (e.type === 'decision') adoptSpan(span)
  }
}
