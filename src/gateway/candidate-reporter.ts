/**
 * Side-by-side candidate samples (issue 4 item 5): every decision that was
 * also evaluated by the tenant's candidate bundle becomes a sample
 * `{active_decision, candidate_decision}` posted in batches to the control
 * plane's `POST /admin/v1/policy-diffs`, which folds them into
 * `GET /admin/v1/tenants/{t}/policies/{candidate}/diff`.
 */
import { applyObligations } from '../policy/sanitize.js'
import type { Decision, Obligation } from '../policy/types.js'
import type { Logger } from '../observability/logger.js'
import type { DecisionSink, GatewayAuditEvent } from './deps.js'

/** What `CandidateDiffReporter` needs from the control-plane client. */
export interface DiffPoster {
  postJson(path: string, body: unknown): Promise<unknown>
}

/** Bounds of `CandidateDiffReporter`; every field has a default. */
export interface CandidateDiffOptions {
  /** Time between two reports (ms); default 1000. */
  intervalMs?: number
  /** Samples held while waiting for a report (the rest are dropped and counted); default 5000. */
  maxQueue?: number
  /** Samples per report (the control plane accepts at most 500); default 500. */
  maxPerReport?: number
  /** Serialized report size bound (bytes), below the control plane's body limit (64 KiB by default); default 48 KiB. */
  maxReportBytes?: number
}

/** A sample as the control plane expects it (snake_case wire fields). */
interface WireSample {
  tenant: string
  candidate_version: string
  active_version: string
  agent_id: string
  tool: string
  resource?: string
  params?: Record<string, unknown>
  active_decision: Decision
  candidate_decision: Decision
  ts: number
}

/** Sample calls with parameters kept per (tenant, agent, tool, from, to) per report: the control plane keeps 5. */
const PARAM_SAMPLES_PER_CHANGE = 5
const MAX_CHANGE_KEYS = 10_000
const MAX_STRING = 128
const MAX_PARAMS_BYTES = 1024
const AGENT_RE = /^[A-Za-z0-9._-]{1,64}$/
const VERSION_RE = /^[A-Za-z0-9._:+-]{1,64}$/

/** Cuts long strings, wide objects and deep nesting, so a sample never carries a document or a secret-sized blob. */
function truncate(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return v.length > MAX_STRING ? `${v.slice(0, 32)}…(${v.length} chars)` : v
  if (v === null || typeof v !== 'object') return v
  if (depth > 8) return '…'
  if (Array.isArray(v)) return v.slice(0, 20).map((e) => truncate(e, depth + 1))
  // No prototype: a parameter named __proto__ is a plain key (as with defineProperty, which cost 1 % of a gateway's CPU at full load).
  const out = Object.create(null) as Record<string, unknown>
  for (const [k, e] of Object.entries(v as Record<string, unknown>).slice(0, 50))
    out[k.length > MAX_STRING ? k.slice(0, MAX_STRING) : k] = truncate(e, depth + 1)
  return out
}

/**
 * Sanitizes a sample call's parameters before they leave the gateway: the
 * redactions either bundle's decision applied (`sanitize` obligations), then
 * long strings cut and the whole bounded (`{_truncated: true}` past 1 KiB).
 * The control plane redacts again with every pointer both bundles name.
 */
export function sanitizeSampleParams(params: Record<string, unknown>, obligations: readonly Obligation[]): Record<string, unknown> {
  const redacted = obligations.length > 0 ? applyObligations({ params }, obligations).params : params
  const out = truncate(redacted) as Record<string, unknown>
  return JSON.stringify(out).length > MAX_PARAMS_BYTES ? { _truncated: true } : out
}

/**
 * A decision sink that turns candidate evaluations into diff samples and
 * posts them about once per `intervalMs` (so at most `maxPerReport` samples
 * per interval). `record` is O(1) for unchanged decisions and never blocks;
 * parameters are kept (sanitized) only for changed decisions, at most five
 * per change and report, as the control plane keeps no more. The queue is
 * bounded: past `maxQueue` samples are dropped and counted in `dropped`.
 * A failed post (control plane unreachable) puts its samples back while
 * there is room; a refused one (4xx) drops them. Never the token or its jti.
 */
export class CandidateDiffReporter implements DecisionSink {
  private queue: WireSample[] = []
  private readonly timer: NodeJS.Timeout
  private inFlight: Promise<void> | null = null
  private paramBudget = new Map<string, number>()
  private readonly maxQueue: number
  private readonly maxPerReport: number
  private readonly maxReportBytes: number
  /** Samples dropped because the queue was full or the control plane refused them. */
  dropped = 0
  /** Samples the control plane accepted (202). */
  sent = 0

  constructor(
    private readonly client: DiffPoster,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    opts: CandidateDiffOptions = {},
  ) {
    this.maxQueue = opts.maxQueue ?? 5000
    this.maxPerReport = Math.min(opts.maxPerReport ?? 500, 500)
    this.maxReportBytes = opts.maxReportBytes ?? 48 * 1024
    this.timer = setInterval(() => {
      void this.flush()
    }, opts.intervalMs ?? 1000)
    this.timer.unref()
  }

  record(e: GatewayAuditEvent): void {
    const c = e.candidate
    if (e.type !== 'decision' || c === undefined || c.sample === undefined) return
    if (e.tenant === null || e.agent_id === null || e.tool === null || e.policy_version === undefined) return
    // The control plane would refuse the whole report for one malformed field.
    if (!AGENT_RE.test(e.agent_id) || !VERSION_RE.test(c.version) || !VERSION_RE.test(e.policy_version) || e.tool.length > 128) return
    if (this.queue.length >= this.maxQueue) {
      this.dropped++
      return
    }
    const from = c.sample.activeDecision
    const s: WireSample = {
      tenant: e.tenant,
      candidate_version: c.version,
      active_version: e.policy_version,
      agent_id: e.agent_id,
      tool: e.tool,
      active_decision: from,
      candidate_decision: c.decision,
      ts: e.ts,
    }
    if (e.resource !== null && e.resource.length <= 512) s.resource = e.resource
    if (from !== c.decision) {
      const key = `${e.tenant}\u0000${e.agent_id}\u0000${e.tool}\u0000${from}\u0000${c.decision}`
      const n = this.paramBudget.get(key) ?? 0
      if (n < PARAM_SAMPLES_PER_CHANGE) {
        // Bounded like everything else a caller can grow (agents × tools × decision pairs).
        if (n === 0 && this.paramBudget.size >= MAX_CHANGE_KEYS) this.paramBudget.clear()
        this.paramBudget.set(key, n + 1)
        s.params = sanitizeSampleParams(c.sample.params, c.sample.obligations)
      }
    }
    this.queue.push(s)
  }

  /** Posts the queued samples, one report after another, up to one report's bounds (no-op when the queue is empty). */
  async flush(): Promise<void> {
    if (this.inFlight) return this.inFlight
    if (this.queue.length === 0) return
    let bytes = 64
    let n = 0
    while (n < this.queue.length && n < this.maxPerReport) {
      bytes += JSON.stringify(this.queue[n]).length + 1
      if (bytes > this.maxReportBytes && n > 0) break
      n++
    }
    const batch = this.queue.splice(0, n)
    if (this.queue.length === 0) this.paramBudget = new Map()
    this.inFlight = (async () => {
      try {
        await this.client.postJson('/admin/v1/policy-diffs', { gateway_id: this.gatewayId, samples: batch })
        this.sent += batch.length
      } catch (err) {
        const status = (err as { upstreamStatus?: number }).upstreamStatus
        if (status !== undefined && status >= 400 && status < 500) {
          this.dropped += batch.length
          this.logger.warn({ status, samples: batch.length }, 'control plane refused candidate diff samples; dropped')
        } else {
          const room = Math.max(0, this.maxQueue - this.queue.length)
          this.dropped += Math.max(0, batch.length - room)
          this.queue.unshift(...batch.slice(0, room))
          this.logger.debug({ err: (err as Error).message }, 'candidate diff report failed; kept for the next one')
        }
      } finally {
        this.inFlight = null
      }
    })()
    return this.inFlight
  }

  /** Stops the timer and posts what is queued (until empty or a report fails). */
  async close(): Promise<void> {
    clearInterval(this.timer)
    for (let i = 0; i < 100 && this.queue.length > 0; i++) {
      const before = this.sent + this.dropped
      await this.flush()
      if (this.sent + this.dropped === before) break
    }
  }
}
