/**
 * The gateway side of the decision log (docs/reference.md "Audit"): every gateway
 * audit event (decisions, shadow would-denies, refused and replayed tokens,
 * outages) is uploaded in gzip batches to the control plane's
 * `POST /admin/v1/decisions`, as OPA's decision-log plugin uploads to a log
 * service. The request path only appends to a bounded buffer; what does not
 * fit is dropped and counted (`aegis_decision_log_dropped_total`).
 */
import { randomBytes } from 'node:crypto'
import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { gzip, constants as zlibConstants } from 'node:zlib'
import { isSpanContextValid, trace } from '@opentelemetry/api'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../../observability/logger.js'
import { outgoingContext } from '../../observability/request-context.js'
import { sanitizeSampleParams } from '../candidate-reporter.js'
import type { DecisionSink, GatewayAuditEvent } from '../deps.js'

/** What the uploader needs from the control-plane client (control-plane-client.ts). */
export interface UploadTarget {
  url(path: string): string
  headers(extra?: Record<string, string>): Record<string, string>
}

/** Bounds and timing; the first three come from `decisionLog.*` in the config. */
export interface DecisionLogOptions {
  /** Events held (buffered and in the upload under way); past it new ones are dropped and counted. */
  bufferSize: number
  /** Events per upload (the control plane takes at most 1000). */
  batchSize: number
  /** Longest wait before a partial batch is uploaded (ms). */
  flushIntervalMs: number
  /** Backoff after a failed upload (ms), doubled up to `backoffMaxMs`, with jitter; default 250 ms to 5 s. */
  backoffInitialMs?: number
  backoffMaxMs?: number
  /** Per-upload timeout (ms); default 10 s. */
  timeoutMs?: number
}

const UPLOAD_PATH = '/admin/v1/decisions'
/** Uncompressed JSON per upload: below the control plane's decompressed bound (8 MiB) and, even incompressible, its compressed one. */
const MAX_BATCH_JSON_BYTES = 4 * 1024 * 1024
/** A Retry-After longer than this is not believed (a misconfigured proxy would otherwise stall the log). */
const MAX_RETRY_AFTER_MS = 5 * 60_000
const TRACE_ID_RE = /^[0-9a-f]{32}$/
/** Records serialized between two turns of the event loop: a batch never holds up the calls being decided for more than a fraction of a millisecond. */
const RECORDS_PER_SLICE = 128

/** One upload, built once so that every retry sends the same records with the same ids. */
interface Batch {
  body: Buffer
  count: number
}

/** Counters on the gateway's registry (reused when a registry already has them: one per process). */
function counter(registry: Registry, name: string, help: string, labelNames: readonly string[]): Counter<string> {
  const existing = registry.getSingleMetric(name)
  if (existing instanceof Counter) return existing as Counter<string>
  return new Counter({ name, help, labelNames, registers: [registry] })
}

/** `v` cut to `max` characters; absent (left out of the JSON) when null. */
function cut(v: string | null | undefined, max: number): string | undefined {
  if (v === null || v === undefined) return undefined
  return v.length > max ? v.slice(0, max) : v
}

/** `list` cut to `maxItems` strings of at most `maxLength`; the list itself when it is within both (the usual case: no copy). */
function bounded(list: readonly string[], maxItems: number, maxLength: number): readonly string[] {
  let within = list.length <= maxItems
  for (let i = 0; within && i < list.length; i++) within = list[i]!.length <= maxLength
  return within ? list : list.slice(0, maxItems).map((s) => (s.length > maxLength ? s.slice(0, maxLength) : s))
}

/**
 * The decision-log record of an event (wire fields as `POST /admin/v1/decisions` takes them), bounded to the control plane's schema.
 * A field with no value is left out (the control plane stores it as null): a fifth fewer bytes to serialize, compress and parse.
 */
function toWire(e: GatewayAuditEvent, params: Readonly<Record<string, unknown>> | undefined, id: string, traceId: string | null): Record<string, unknown> {
  const decision =
    e.type === 'decision' ? (e.decision ?? 'unknown') : e.type === 'token.refused' ? 'refused' : e.type === 'token.replayed' ? 'replayed' : 'unavailable'
  // Every field in every record, undefined when absent: one object shape, which JSON.stringify skips over.
  return {
    id,
    ts_ms: e.ts,
    type: e.type,
    mode: e.mode,
    decision,
    tenant: e.tenant ?? undefined,
    agent_id: e.agent_id ?? undefined,
    client_id: cut(e.client_id, 256),
    jti: cut(e.jti, 256),
    tool: cut(e.tool, 256),
    resource: cut(e.resource, 1024),
    enforced: e.enforced ?? undefined,
    reasons: e.reasons === undefined ? [] : bounded(e.reasons, 32, 1024),
    policy_version: cut(e.policy_version, 128),
    policy_ids: e.policy_ids === undefined ? undefined : bounded(e.policy_ids, 64, 256),
    risk: e.risk ?? undefined,
    degraded: e.degraded ?? undefined,
    error: cut(e.error, 1024),
    latency_ms: e.latency_ms === undefined ? undefined : Math.min(Math.max(e.latency_ms, 0), 3_600_000),
    trace_id: traceId ?? undefined,
    // Already sanitized by the pipeline; cut to about 1 KiB so a record never carries a document.
    params: params === undefined ? undefined : sanitizeSampleParams(params, []),
  }
}

function retryAfterMs(header: string | null): number | null {
  if (header === null) return null
  const s = header.trim()
  if (/^\d{1,9}$/.test(s)) return Math.min(Number(s) * 1000, MAX_RETRY_AFTER_MS)
  const at = Date.parse(s)
  return Number.isFinite(at) ? Math.min(Math.max(at - Date.now(), 0), MAX_RETRY_AFTER_MS) : null
}

/**
 * A decision sink that uploads every event to the decision log. `record`
 * is O(1) and never waits: it appends the event to a buffer bounded by
 * `bufferSize` (counting the upload under way), or drops and counts it
 * (`reason="buffer_full"`). One upload at a time: a full batch goes at
 * once, a partial one after `flushIntervalMs`. A failed upload (network,
 * 408, 429, 5xx) is retried with the same body, after exponential backoff
 * with jitter or the answer's `Retry-After`, until it is acknowledged (the
 * control plane skips records it already stored, so a retry never
 * duplicates); a refused one (another 4xx) is dropped and counted
 * (`reason="rejected"`). Never uploads a token or an override token: only
 * what the audit event carries, parameters sanitized.
 */
export class DecisionLogUploader implements DecisionSink {
  private events: GatewayAuditEvent[] = []
  private traces: Array<string | null> = []
  private params: Array<Readonly<Record<string, unknown>> | undefined> = []
  /** Built batches, oldest first: the first is the upload under way (or being retried), the next one was built meanwhile. */
  private ready: Batch[] = []
  private readyCount = 0
  /** The build under way, and how many events it took from the buffer. */
  private building: Promise<void> | null = null
  private inBuild = 0
  private busy = false
  private scheduled = false
  private closed = false
  private backoffMs: number
  private wake: (() => void) | null = null
  private readonly timer: NodeJS.Timeout
  private readonly idPrefix = randomBytes(8).toString('hex')
  private seq = 0
  /** Size of the last batch's JSON: the next one's buffer starts at twice that. */
  private lastBatchBytes = 0
  private readonly dropped: Counter<string>
  private readonly uploaded: Counter<string>
  private readonly backoffInitialMs: number
  private readonly backoffMaxMs: number
  private readonly timeoutMs: number
  private lastWarn = 0
  /** One kept-alive connection for the uploads (made at the first, for the target's scheme). */
  private agent: HttpAgent | null = null

  constructor(
    private readonly target: UploadTarget,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    registry: Registry,
    private readonly opts: DecisionLogOptions,
  ) {
    this.backoffInitialMs = opts.backoffInitialMs ?? 250
    this.backoffMaxMs = opts.backoffMaxMs ?? 5_000
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.backoffMs = this.backoffInitialMs
    this.dropped = counter(
      registry,
      'aegis_decision_log_dropped_total',
      'Decision-log events this gateway dropped: buffer_full (the control plane could not keep up or was unreachable), rejected (an upload refused), shutdown',
      ['reason'],
    )
    this.uploaded = counter(registry, 'aegis_decision_log_uploaded_total', 'Decision-log events the control plane acknowledged', [])
    this.timer = setInterval(() => {
      void this.pump()
    }, opts.flushIntervalMs)
    this.timer.unref()
  }

  /** Events held now: buffered, being built into a batch, and in built batches (the upload under way among them). */
  get held(): number {
    return this.events.length + this.inBuild + this.readyCount
  }

  record(event: GatewayAuditEvent, params?: Readonly<Record<string, unknown>>): void {
    if (this.closed || this.held >= this.opts.bufferSize) {
      this.dropped.inc({ reason: this.closed ? 'shutdown' : 'buffer_full' })
      return
    }
    this.events.push(event)
    this.traces.push(currentTraceId())
    this.params.push(params)
    if (this.events.length >= this.opts.batchSize && !this.scheduled && (!this.busy || this.canBuildAhead())) {
      this.scheduled = true
      setImmediate(() => {
        this.scheduled = false
        if (!this.busy) void this.pump()
        else if (this.canBuildAhead()) void this.buildNext()
      })
    }
  }

  /** Events in built batches (the upload under way and the one built while it is in flight). */
  get built(): number {
    return this.readyCount
  }

  /** Whether the next full batch may be built now, while an upload is in flight: at most one built ahead. */
  private canBuildAhead(): boolean {
    return !this.closed && this.building === null && this.ready.length < 2 && this.events.length >= this.opts.batchSize
  }

  /**
   * Uploads until the buffer holds less than a batch, or an upload fails (then backs off and goes on).
   * While one batch is in flight the next full one is serialized and compressed, so the gateway's share
   * of an upload's round trip is only the send: one upload at a time keeps up with a faster gateway.
   */
  private async pump(): Promise<void> {
    // Once closed, close() alone sends what is left: a second sender would take its batches from under it.
    if (this.busy || this.closed) return
    this.busy = true
    try {
      for (;;) {
        if (this.ready.length === 0) {
          if (this.events.length === 0 && this.building === null) return
          await this.buildNext()
          if (this.ready.length === 0) return
        }
        const batch = this.ready[0]!
        const sending = this.send(batch)
        if (this.canBuildAhead()) void this.buildNext()
        const outcome = await sending
        if (outcome === 'ok' || outcome === 'rejected') {
          if (outcome === 'ok') this.uploaded.inc(batch.count)
          else this.dropped.inc({ reason: 'rejected' }, batch.count)
          this.ready.shift()
          this.readyCount -= batch.count
          this.backoffMs = this.backoffInitialMs
          // A partial batch waits for the timer; a full one (or one built meanwhile) goes now.
          if (this.closed || (this.ready.length === 0 && this.building === null && this.events.length < this.opts.batchSize)) return
          continue
        }
        if (this.closed) return
        await this.sleep(outcome.retryAfterMs ?? this.backoffMs * (0.5 + Math.random() / 2))
        this.backoffMs = Math.min(this.backoffMs * 2, this.backoffMaxMs)
        if (this.closed) return
      }
    } finally {
      this.busy = false
    }
  }

  /** Builds the next batch into `ready` (or waits for the build under way); a failed build's events are counted as dropped. */
  private buildNext(): Promise<void> {
    this.building ??= this.build()
      .then(
        (batch) => {
          this.ready.push(batch)
          this.readyCount += batch.count
        },
        (err: unknown) => {
          // Not expected (gzip of a string); the events taken are lost, so they are counted.
          this.logger.error({ err }, 'decision log batch could not be built')
          this.dropped.inc({ reason: 'rejected' }, this.inBuild)
        },
      )
      .finally(() => {
        this.building = null
        this.inBuild = 0
      })
    return this.building
  }

  /** Takes up to a batch of buffered events, assigns their ids and compresses them (gzip in libuv's pool). */
  private async build(): Promise<Batch> {
    const take = Math.min(this.events.length, this.opts.batchSize)
    const events = this.events.splice(0, take)
    const traces = this.traces.splice(0, take)
    const params = this.params.splice(0, take)
    this.inBuild = take
    // Each record is stringified alone and its bytes written straight into one buffer. JSON.stringify of the
    // whole batch gives a rope that must be flattened (copied) before it can be encoded, and joining the
    // records as strings cost as much as serializing them (profiles, issue 20).
    let out = Buffer.allocUnsafe(Math.max(64 * 1024, this.lastBatchBytes * 2))
    let len = out.write(`{"gateway_id":${JSON.stringify(this.gatewayId)},"records":[`, 0)
    let count = 0
    for (; count < events.length; count++) {
      if (count > 0 && count % RECORDS_PER_SLICE === 0) await new Promise<void>((resolve) => setImmediate(resolve))
      const json = JSON.stringify(toWire(events[count]!, params[count], this.nextId(), traces[count] ?? null))
      // Room for the record at 3 bytes per UTF-16 unit (the UTF-8 worst case), its comma and the closing "]}".
      const need = len + 1 + json.length * 3 + 2
      if (need > out.length) {
        const bigger = Buffer.allocUnsafe(Math.max(need, out.length * 2))
        out.copy(bigger, 0, 0, len)
        out = bigger
      }
      const start = len
      if (count > 0) out[len++] = 0x2c
      len += out.write(json, len)
      // A batch over 4 MiB of JSON (records near their own bounds, rare): what fits goes now, the rest first in the next batch.
      if (len + 2 > MAX_BATCH_JSON_BYTES && count > 0) {
        len = start
        break
      }
    }
    len += out.write(']}', len)
    if (count < events.length) {
      // Their ids are taken again next time (an id skipped is harmless; one reused would not be).
      this.events.unshift(...events.slice(count))
      this.traces.unshift(...traces.slice(count))
      this.params.unshift(...params.slice(count))
      this.inBuild = count
    }
    this.lastBatchBytes = len
    const json = out.subarray(0, len)
    const body = await new Promise<Buffer>((resolve, reject) => {
      gzip(json, { level: zlibConstants.Z_BEST_SPEED }, (err, out) => (err ? reject(err) : resolve(out)))
    })
    return { body, count }
  }

  private nextId(): string {
    return this.idPrefix + (this.seq++).toString(16).padStart(16, '0')
  }

  private async send(batch: Batch): Promise<'ok' | 'rejected' | { retryAfterMs: number | null }> {
    let res: IncomingMessage
    try {
      res = await this.post(batch.body)
    } catch (err) {
      this.warn('decision log upload failed; retrying', { err: (err as Error).message, held: this.held })
      return { retryAfterMs: null }
    }
    const status = res.statusCode ?? 0
    if (status >= 200 && status < 300) return 'ok'
    if (status === 408 || status === 429 || status >= 500) {
      this.warn('decision log upload refused for now; retrying', { status, held: this.held })
      const retryAfter = res.headers['retry-after']
      return { retryAfterMs: retryAfterMs(typeof retryAfter === 'string' ? retryAfter : null) }
    }
    this.warn('decision log upload rejected; its events are dropped', { status, events: batch.count })
    return 'rejected'
  }

  /**
   * One upload over a kept-alive node:http(s) connection, resolved once the answer's body has been read (and
   * discarded). Not fetch: called a few times a second, undici's fetch ran mostly unoptimized and its web
   * streams cost the gateway about 2 % of its CPU at full load (perf, issue 20); node:http is a few calls.
   */
  private post(body: Buffer): Promise<IncomingMessage> {
    const url = new URL(this.target.url(UPLOAD_PATH))
    const https = url.protocol === 'https:'
    this.agent ??= https ? new HttpsAgent({ keepAlive: true, maxSockets: 1 }) : new HttpAgent({ keepAlive: true, maxSockets: 1 })
    const headers = this.target.headers({
      'content-type': 'application/json',
      'content-encoding': 'gzip',
      accept: 'application/json',
      'content-length': String(body.length),
    })
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(
        url,
        { method: 'POST', headers, agent: this.agent!, signal: AbortSignal.timeout(this.timeoutMs) },
        (res) => {
          res.on('error', reject)
          res.on('end', () => resolve(res))
          res.on('close', () => {
            if (!res.complete) reject(new Error('the answer was cut short'))
          })
          res.resume()
        },
      )
      req.on('error', reject)
      req.end(body)
    })
  }

  private warn(msg: string, fields: Record<string, unknown>): void {
    // One line per 10 s: an outage would otherwise log every retry.
    const now = Date.now()
    if (now - this.lastWarn < 10_000) return
    this.lastWarn = now
    this.logger.warn(fields, msg)
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null
        resolve()
      }, ms)
      t.unref()
      this.wake = () => {
        clearTimeout(t)
        this.wake = null
        resolve()
      }
    })
  }

  /**
   * Stops the timer and makes one last attempt at each remaining batch;
   * what still cannot be uploaded is counted as dropped (`shutdown`).
   */
  async close(): Promise<void> {
    clearInterval(this.timer)
    this.closed = true
    this.wake?.()
    while (this.busy) await new Promise((r) => setTimeout(r, 5))
    await this.building
    while (this.ready.length > 0 || this.events.length > 0) {
      if (this.ready.length === 0) {
        await this.buildNext()
        continue
      }
      const batch = this.ready[0]!
      const outcome = await this.send(batch)
      if (outcome === 'ok') {
        this.uploaded.inc(batch.count)
        this.ready.shift()
        this.readyCount -= batch.count
        continue
      }
      this.dropped.inc({ reason: outcome === 'rejected' ? 'rejected' : 'shutdown' }, this.held)
      this.ready = []
      this.readyCount = 0
      this.events = []
      this.traces = []
      this.params = []
    }
    this.agent?.destroy()
    this.agent = null
  }
}

/** The W3C trace id of the call being decided, when it continues a trace. */
function currentTraceId(): string | null {
  const sc = trace.getSpanContext(outgoingContext())
  return sc !== undefined && isSpanContextValid(sc) && TRACE_ID_RE.test(sc.traceId) ? sc.traceId : null
}
